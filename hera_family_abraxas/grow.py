"""Growing an abraxas agent: a larger sheet that keeps what it learned.

Every old neuron keeps its (layer, y, x, cell) coordinates in the larger
grid, every input channel its number; weights, thresholds and dynamic state
move with them, and everything new starts at zero (input rates of new
channels at the idle rate, as in a built agent). A synapse is identified by
its source neuron and its slot's (projection, offset, target cell), so its
weight moves to the same synapse in the grown tables. Spikes in flight keep
their arrival times: the delay ring is re-laid by absolute step. Growing the
dendrite only opens new synapses (at zero weight); growing the axon
lengthens the delays of the farthest synapses for spikes emitted from now
on. Nothing may shrink.
"""

from __future__ import annotations

from typing import Any

import torch

from hera.errors import DefinitionError
from hera.hooks.types import DynamicState, Snapshot
from hera_family_abraxas import connectivity, layouts


def grown_definition(definition: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``definition`` with ``changes`` applied, refusing shrinking and
    anything that is not geometry."""
    for key, value in changes.items():
        if key not in layouts.GEOMETRY:
            raise DefinitionError(f"abraxas grows only {', '.join(layouts.GEOMETRY)}; "
                                  f"{key!r} is not one of them")
        if type(value) is not int:
            raise DefinitionError(f"abraxas parameter {key!r} must be a whole number, not {value!r}")
        if value < definition[key]:
            raise DefinitionError(
                f"abraxas cannot shrink {key} from {definition[key]} to {value}: the "
                "neurons and synapses it would drop hold what the agent learned")
    grown = {**definition, **changes}
    layouts.check_definition(grown)
    return grown


def neuron_map(old: dict[str, Any], new: dict[str, Any]) -> torch.Tensor:
    """For each old neuron, its index in the grown sheet."""
    n = torch.arange(layouts.neuron_count(old))
    return connectivity.neuron_index(new, *connectivity.coordinates(old, n))


def source_map(old: dict[str, Any], new: dict[str, Any]) -> torch.Tensor:
    """For each old source (input channels, then neurons), its new index."""
    return torch.cat([torch.arange(old["inputs"]), new["inputs"] + neuron_map(old, new)])


def slot_map(old: dict[str, Any], new: dict[str, Any]) -> torch.Tensor:
    """For each old outgoing slot, the slot of the same projection, offset
    and target cell in the grown rows."""
    s = connectivity.slots(old)
    r, span = new["dendrite"], 2 * new["dendrite"] + 1
    return ((s.projection * span + s.dy + r) * span + s.dx + r) * new["cells"] + s.cell


def grow(definition: dict[str, Any], tensors: dict[str, torch.Tensor],
         state: DynamicState | None, changes: dict[str, Any]) -> Snapshot:
    """The grown agent (see the module docstring)."""
    new = grown_definition(definition, changes)
    old = definition
    neurons = neuron_map(old, new)
    sources = source_map(old, new)
    n_new, s_new = layouts.neuron_count(new), layouts.source_count(new)

    def place(tensor: torch.Tensor, index: torch.Tensor, size: int, fill: float = 0) -> torch.Tensor:
        out = torch.full((size,), fill, dtype=tensor.dtype)
        out[index] = tensor
        return out

    weights = torch.zeros(n_new, layouts.slots_per_row(new), dtype=tensors["weights"].dtype)
    weights[neurons[:, None], slot_map(old, new)[None, :]] = tensors["weights"]
    # The first layer keeps its numbering at the start of the grown sheet.
    first_old = layouts.first_layer_size(old)
    input_weights = torch.zeros(new["inputs"], layouts.first_layer_size(new),
                                dtype=tensors["input_weights"].dtype)
    input_weights[:old["inputs"], neurons[:first_old]] = tensors["input_weights"]
    learned = {"input_weights": input_weights, "weights": weights,
               "thresholds": place(tensors["thresholds"], neurons, n_new)}
    if state is None:
        return Snapshot(new, learned, None)

    t = state.values["t"]
    old_ring = state.tensors["ring"]
    length_old, length_new = old["axon"] + 1, new["axon"] + 1
    ring = torch.zeros(length_new, n_new, dtype=old_ring.dtype)
    for ahead in range(length_old):  # the current due at step t + ahead stays due then
        ring[(t + ahead) % length_new, neurons] = old_ring[(t + ahead) % length_old]
    rates = place(state.tensors["input_rates"], torch.arange(old["inputs"]), new["inputs"],
                  fill=float(new["input_rate"]))
    out_old = (old["depth"] - 1) * old["width"] * old["height"] * old["cells"]
    out_new = (new["depth"] - 1) * new["width"] * new["height"] * new["cells"]
    counts = torch.zeros(n_new - out_new, dtype=state.tensors["output_counts"].dtype)
    if new["depth"] == old["depth"]:  # the output area is the same layer, only larger
        counts[neurons[out_old:] - out_new] = state.tensors["output_counts"]
    grown_state = {
        "membrane": place(state.tensors["membrane"], neurons, n_new),
        "refractory": place(state.tensors["refractory"], neurons, n_new),
        "pre_trace": place(state.tensors["pre_trace"], sources, s_new),
        "post_trace": place(state.tensors["post_trace"], neurons, n_new),
        "ring": ring,
        "input_rates": rates,
        "output_counts": counts,
        # spikes given for the next step stay given on their channels
        "input_spikes": place(state.tensors["input_spikes"], torch.arange(old["inputs"]),
                              new["inputs"]),
    }
    return Snapshot(new, learned, DynamicState(grown_state, dict(state.values)))
