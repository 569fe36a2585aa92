"""abraxas: hera's reference family, a sheet of cortical columns.

A 2-D grid of columns, each with ``depth`` layers of leaky integrate-and-fire
neurons; spikes travel with conduction delays (spikes in flight are state),
compete inside each layer of a column (winner-take-all), and drive always-on
spike-timing dependent plasticity with homeostatic thresholds. Instances are
built with zero weights (input weights at the layout's ``initial_weight``)
and learn from their input.

This module only holds the hook implementations, each for abraxas's agents
alone (hera calls a family's own hooks only); it imports torch inside the
hooks that need it, so ``hera families`` and ``hera layouts`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hera.family import FamilyInfo, LayoutInfo, ResourceReport, hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from hera_family_abraxas.model import Sheet

NAME = "abraxas"
__version__ = "0.6.0"
#: Version of the tensor layout inside instance files (see docs/abraxas.md).
DATA_FORMAT = 6


@hookimpl
def hera_family() -> FamilyInfo:
    from hera_family_abraxas.upgrade import READS

    return FamilyInfo(name=NAME, version=__version__, data_format=DATA_FORMAT,
                      upgrades_from=READS,
                      summary="cortical columns with delays, competition and STDP")


@hookimpl
def hera_layouts() -> list[LayoutInfo]:
    from hera_family_abraxas import backends, layouts

    backend = backends.planned("cpu")
    found = []
    for name, (summary, _) in layouts.LAYOUTS.items():
        d = layouts.definition_for(name, {})
        found.append(LayoutInfo(name=name, summary=summary, parameters=d,
                                neurons=layouts.neuron_count(d), synapses=layouts.synapse_count(d),
                                bytes=sum(layouts.memory_by_class(d, backend).values())))
    return found


@hookimpl
def hera_build(layout: str, overrides: dict[str, Any], seed: int):
    import sys

    from hera.family import Built
    from hera_family_abraxas import layouts, model

    if layout in layouts.RENAMED:
        print(f"abraxas: layout {layout!r} is now called {layouts.RENAMED[layout]!r} "
              "(same geometry)", file=sys.stderr)
    definition = layouts.definition_for(layout, overrides)
    return Built(definition=definition, tensors=model.built_parameters(definition))


@hookimpl
def hera_simulate(definition: dict[str, Any], device: str) -> ResourceReport:
    from hera_family_abraxas import backends, layouts

    layouts.check_definition(definition)
    # what the sheet will step on: the torch references gather, the others work in place
    classes = layouts.memory_by_class(definition, backends.planned(device))
    return ResourceReport(device=device, tensors=classes, dominant="width x height x depth x cells",
                          snapshot=layouts.snapshot_bytes(definition))


@hookimpl
def hera_grow(definition: dict[str, Any], tensors: dict, state: Any,
              changes: dict[str, Any]):
    from hera_family_abraxas.grow import grow

    return grow(definition, tensors, state, changes)


@hookimpl
def hera_upgrade(data_format: int, definition: dict[str, Any], tensors: dict,
                 state: Any):
    from hera_family_abraxas.upgrade import upgrade

    return upgrade(data_format, definition, tensors, state)


@hookimpl
def hera_load(definition: dict[str, Any], tensors: dict, state: Any, device: str,
              seed: int):
    from hera.family import LoadedAgent
    from hera_family_abraxas.model import Sheet

    sheet = Sheet(definition, tensors, state, device, seed)
    return LoadedAgent(handle=sheet, device=str(sheet.device), backend=sheet.backend)


@hookimpl
def hera_load_shard(definition: dict[str, Any], tensors: Any, state: Any, device: str,
                    seed: int, shard: Any):
    from hera.family import LoadedAgent
    from hera_family_abraxas.sharded import ShardedSheet

    sheet = ShardedSheet(definition, tensors, state, device, seed, shard)
    return LoadedAgent(handle=sheet, device=str(sheet.device), backend=sheet.backend)


@hookimpl
def hera_step(agent: Sheet, steps: int) -> int:
    agent.run(steps)
    return steps


@hookimpl
def hera_serialize(agent: Sheet):
    return agent.snapshot()


@hookimpl
def hera_encode_input(agent: Sheet, line: str) -> bool:
    from hera_family_abraxas.codec import FREEZE, line_to_values, reward_level, spike_channels

    word = line.strip().lower()
    if word in FREEZE:  # "freeze" / "unfreeze": all adaptation stops or goes on
        agent.set_frozen(FREEZE[word])
        return True
    channels = spike_channels(line)
    if channels is not None:  # "spikes 3 17 42": these channels spike at the next step
        agent.give_input_spikes(channels)
        return True
    level = reward_level(line)
    if level is not None:
        agent.set_modulator(level)  # "reward X": the neuromodulator gating plasticity
    else:
        agent.set_input(line_to_values(line))
    return True


@hookimpl
def hera_decode_output(agent: Sheet) -> str:
    from hera_family_abraxas.codec import counts_to_line

    counts = agent.take_output()  # None on a rank other than 0 (hera_load_shard)
    return None if counts is None else counts_to_line(counts)


@hookimpl
def hera_feed_array(agent: Sheet, values: Any, spikes: Any) -> bool:
    agent.feed_arrays(values, spikes)
    return True


@hookimpl
def hera_output_array(agent: Sheet) -> Any:
    return agent.take_output_array()


@hookimpl
def hera_freeze(agent: Sheet, frozen: bool) -> bool:
    agent.set_frozen(frozen)
    return True


@hookimpl
def hera_activity(agent: Sheet) -> dict:
    return agent.activity_counts()


@hookimpl
def hera_probe(agent: Sheet, variable: str, neurons: Any) -> Any:
    return agent.probe(variable, neurons)
