"""A tiny family defined by the tests, to show that hera's core needs no
abraxas: one vector of counters (learned), an accumulator of random draws
and the generator's state (dynamic). Tests write this source into a
``hera_family_tally`` package or register the module directly.

Its data format 1 stores the counters as float64; format 2 stores them as
int64 and upgrades format-1 files. It writes format 1 unless a test sets
``DATA_FORMAT = 2`` (in the module, or in the source it writes out)."""

from __future__ import annotations

from hera.errors import DefinitionError
from hera.hooks import (Built, DynamicState, FamilyInfo, LayoutInfo, LoadedAgent,
                        ResourceReport, Snapshot, hookimpl)

NAME = "tally"
DATA_FORMAT = 1


def _counts_dtype():
    import torch

    return torch.float64 if DATA_FORMAT == 1 else torch.int64


@hookimpl
def hera_family():
    return FamilyInfo(name=NAME, version=f"0.0.{DATA_FORMAT}", data_format=DATA_FORMAT,
                      summary="counters for tests", upgrades_from=tuple(range(1, DATA_FORMAT)))


@hookimpl
def hera_layouts():
    return [LayoutInfo("example", "four counters", {"size": 4}, 4, 0, 64)]


@hookimpl
def hera_build(layout, overrides, seed):
    import torch

    if layout != "example":
        raise DefinitionError(f"tally has no layout {layout!r}")
    definition = {"size": 4, **overrides}
    return Built(definition, {"counts": torch.zeros(definition["size"], dtype=_counts_dtype())})


@hookimpl
def hera_simulate(definition, device):
    return ResourceReport(device, {"counters": definition["size"] * 16}, "size")


@hookimpl
def hera_grow(definition, tensors, state, changes):
    import torch

    size = changes.get("size", definition["size"])
    if size < definition["size"]:
        raise DefinitionError(f"tally cannot shrink size {definition['size']} to {size}")
    pad = size - definition["size"]
    counts = tensors["counts"]
    grown = {"counts": torch.cat([counts, torch.zeros(pad, dtype=counts.dtype)])}
    if state is not None:
        acc = torch.cat([state.tensors["acc"], torch.zeros(pad, dtype=torch.float64)])
        state = DynamicState({"acc": acc, "rng": state.tensors["rng"]}, dict(state.values))
    return Snapshot({**definition, "size": size}, grown, state)


@hookimpl
def hera_upgrade(data_format, definition, tensors, state):
    import torch

    counts = tensors["counts"].round().to(torch.int64)  # format 1 -> 2: whole counters
    return Snapshot(dict(definition), {"counts": counts}, state)


class Counter:
    def __init__(self, definition, tensors, state, seed):
        import torch

        self.definition = definition
        self.counts = tensors["counts"].clone()
        self.generator = torch.Generator()
        if state is None:
            self.generator.manual_seed(seed)
            self.acc = torch.zeros(definition["size"], dtype=torch.float64)
            self.inputs = []
        else:
            self.generator.set_state(state.tensors["rng"])
            self.acc = state.tensors["acc"].clone()
            self.inputs = list(state.values["inputs"])

    def run(self, steps):
        import torch

        for _ in range(steps):
            self.acc += torch.rand(self.definition["size"], generator=self.generator,
                                   dtype=torch.float64)
            self.counts += 1


@hookimpl
def hera_load(definition, tensors, state, device, seed):
    return LoadedAgent(Counter(definition, tensors, state, seed), "cpu", "torch")


@hookimpl
def hera_step(agent, steps):
    agent.run(steps)
    return steps


@hookimpl
def hera_serialize(agent):
    state = DynamicState({"acc": agent.acc.clone(), "rng": agent.generator.get_state()},
                         {"inputs": list(agent.inputs)})
    return Snapshot(dict(agent.definition), {"counts": agent.counts.clone()}, state)


@hookimpl
def hera_encode_input(agent, line):
    agent.inputs.append(line)
    return True


@hookimpl
def hera_decode_output(agent):
    return " ".join(f"{c:.0f}" for c in agent.counts.tolist())
