"""Reading instance files of abraxas's older data formats.

Format 2 (abraxas 0.2) kept a ``torch.Generator``'s state (the ``rng``
tensor, and ``rng_device``) for its noise and input spikes; format 3 draws
counter-based random numbers from the instance seed and the step counter,
so the upgrade drops that state and keeps everything else: learned weights,
thresholds, spikes in flight, traces and the step counter. The upgraded
agent's random draws are not those its old generator would have made; what
it learned is untouched. Format 3 (abraxas 0.3) lacks three things that
format 4 keeps: the input spikes given for the next step (none), whether
adaptation is frozen (it is not), the thresholds' target rate (0: no
target, the rule of format 3) and the input weights it was built with (0). Format 1 (dense weights, abraxas 0.1)
cannot be read.
"""

from __future__ import annotations

from typing import Any

from hera.hooks.types import DynamicState, Snapshot
from hera_family_abraxas import layouts

#: The older data formats ``upgrade`` reads.
READS = (2, 3)


def upgrade(data_format: int, definition: dict[str, Any], tensors: dict[str, Any],
            state: DynamicState | None) -> Snapshot:
    """The content of a format-``data_format`` file in the current format.

    :raises ValueError: for a format this family cannot read.
    """
    if data_format not in READS:
        raise ValueError(f"abraxas cannot read data format {data_format}")
    definition = {**definition, "target_rate": 0.0, "initial_weight": 0.0}
    layouts.check_definition(definition)
    if state is None:
        return Snapshot(definition, dict(tensors), None)
    import torch

    kept = {name: tensor for name, tensor in state.tensors.items() if name != "rng"}
    values = {name: value for name, value in state.values.items() if name != "rng_device"}
    kept["input_spikes"] = torch.zeros(int(definition["inputs"]), dtype=torch.uint8)
    values["frozen"] = False
    return Snapshot(definition, dict(tensors), DynamicState(kept, values))
