"""Growing an abraxas agent: a larger sheet that keeps what it learned.

Every old neuron keeps its (layer, y, x, cell) coordinates in the larger
grid, every input channel its number; weights, thresholds and dynamic state
move with them, and everything new starts at zero (input rates of new
channels at the idle rate, as in a built agent). Spikes in flight keep their
arrival times: the delay ring is re-laid by absolute step. Growing the
dendrite only opens new synapses (at zero weight); growing the axon
lengthens the delays of the farthest synapses. Nothing may shrink.
"""

from __future__ import annotations

from typing import Any

import torch

from hera.errors import DefinitionError
from hera.hooks.types import DynamicState, Snapshot
from hera_family_abraxas import layouts


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
    cells, width, height = old["cells"], old["width"], old["height"]
    cell = n % cells
    x = (n // cells) % width
    y = (n // (cells * width)) % height
    layer = n // (cells * width * height)
    return ((layer * new["height"] + y) * new["width"] + x) * new["cells"] + cell


def source_map(old: dict[str, Any], new: dict[str, Any]) -> torch.Tensor:
    """For each old source (input channels, then neurons), its new index."""
    return torch.cat([torch.arange(old["inputs"]), new["inputs"] + neuron_map(old, new)])


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

    weights = torch.zeros(s_new, n_new, dtype=tensors["weights"].dtype)
    weights[sources[:, None], neurons[None, :]] = tensors["weights"]
    learned = {"weights": weights, "thresholds": place(tensors["thresholds"], neurons, n_new)}
    if state is None:
        return Snapshot(new, learned, None)

    t = state.values["t"]
    old_ring, new_axon = state.tensors["history"], new["axon"]
    history = torch.zeros(new_axon, s_new, dtype=old_ring.dtype)
    for delay in range(1, old["axon"] + 1):  # the spikes of step t - delay keep arriving on time
        history[(t - delay) % new_axon, sources] = old_ring[(t - delay) % old["axon"]]
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
        "history": history,
        "input_rates": rates,
        "output_counts": counts,
        "rng": state.tensors["rng"].clone(),
    }
    return Snapshot(new, learned, DynamicState(grown_state, dict(state.values)))
