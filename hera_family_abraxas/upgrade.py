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
target, the rule of format 3) and the input weights it was built with (0).
Format 4 (abraxas 0.4) lacks two parameters of format 5: the decay of the
post traces (``tau_depression`` 0: that of the pre traces, as format 4 had
it) and the lowest threshold a target rate may reach (``min_threshold`` =
``threshold``: thresholds never fell below it in format 4). Format 5
(abraxas 0.5) lacks ``trace_offset`` (0: potentiation by the whole trace,
its rule). Every format from 2 on continues with the dynamics it had. Format 1 (dense weights,
abraxas 0.1) cannot be read.
"""

from __future__ import annotations

from typing import Any

from hera.errors import InstanceFileError
from hera.hooks.types import DynamicState, Snapshot
from hera_family_abraxas import layouts

#: The older data formats ``upgrade`` reads.
READS = (2, 3, 4, 5)


def upgrade(data_format: int, definition: dict[str, Any], tensors: dict[str, Any],
            state: DynamicState | None) -> Snapshot:
    """The content of a format-``data_format`` file in the current format.

    :raises InstanceFileError: for a format this family cannot read (as
        ``hera_upgrade``'s spec asks).
    """
    if data_format not in READS:
        raise InstanceFileError(f"abraxas cannot read data format {data_format}")
    definition = {**definition, "trace_offset": 0.0}
    if data_format < 5:
        definition.update(tau_depression=0.0, min_threshold=definition.get("threshold"))
    if data_format < 4:
        definition.update(target_rate=0.0, initial_weight=0.0)
    layouts.check_definition(definition)
    if state is None or data_format >= 4:
        return Snapshot(definition, dict(tensors), state)
    import torch

    kept = {name: tensor for name, tensor in state.tensors.items() if name != "rng"}
    values = {name: value for name, value in state.values.items() if name != "rng_device"}
    kept["input_spikes"] = torch.zeros(int(definition["inputs"]), dtype=torch.uint8)
    values["frozen"] = False
    return Snapshot(definition, dict(tensors), DynamicState(kept, values))
