"""Growing abraxas agents: what was learned stays where it was, new parts
start at zero, a then b equals a + b, and the result round-trips."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hera.errors import DefinitionError
from hera.instance import InstanceFile
from hera_family_abraxas import DATA_FORMAT, layouts, model
from hera_family_abraxas.grow import grow, neuron_map, slot_map, source_map

geometry = st.fixed_dictionaries({
    "width": st.integers(1, 3), "height": st.integers(1, 3), "depth": st.integers(1, 3),
    "cells": st.integers(1, 4), "inputs": st.integers(1, 5), "dendrite": st.integers(0, 2),
    "axon": st.integers(1, 4),
})
increments = st.fixed_dictionaries({k: st.integers(0, 2) for k in layouts.GEOMETRY})


def _lived(overrides: dict, steps: int, seed: int = 4):
    """A snapshot of a sheet that has run (noisy, so state is non-zero)."""
    d = layouts.definition_for("example", {**overrides, "noise": 2.0})
    sheet = model.Sheet(d, model.zero_parameters(d), None, "cpu", seed)
    sheet.set_input([1.0, 0.5])
    sheet.run(steps)
    return sheet.snapshot()


def _changes(d: dict, more: dict) -> dict:
    return {k: d[k] + v for k, v in more.items()}


@settings(max_examples=30, deadline=None)
@given(geometry, increments, st.integers(1, 40))
def test_growing_keeps_the_old_region_exactly(old, more, steps):
    snap = _lived(old, steps)
    d = snap.definition
    grown = grow(d, snap.tensors, snap.state, _changes(d, more))
    new = grown.definition
    neurons, sources = neuron_map(d, new), source_map(d, new)

    weights = grown.tensors["weights"]
    slots = slot_map(d, new)
    assert torch.equal(weights[neurons[:, None], slots[None, :]], snap.tensors["weights"])
    assert int((weights != 0).sum()) == int((snap.tensors["weights"] != 0).sum())
    feed = grown.tensors["input_weights"]
    first = layouts.first_layer_size(d)
    assert torch.equal(feed[:d["inputs"], neurons[:first]], snap.tensors["input_weights"])
    assert int((feed != 0).sum()) == int((snap.tensors["input_weights"] != 0).sum())
    thresholds = grown.tensors["thresholds"]
    assert torch.equal(thresholds[neurons], snap.tensors["thresholds"])
    assert int((thresholds != 0).sum()) == int((snap.tensors["thresholds"] != 0).sum())

    old_state, new_state = snap.state.tensors, grown.state.tensors
    for name in ("membrane", "refractory", "post_trace"):
        assert torch.equal(new_state[name][neurons], old_state[name]), name
        assert int((new_state[name] != 0).sum()) == int((old_state[name] != 0).sum()), name
    assert torch.equal(new_state["pre_trace"][sources], old_state["pre_trace"])
    t = snap.state.values["t"]
    for ahead in range(d["axon"] + 1):  # spikes in flight arrive when they would have
        assert torch.equal(new_state["ring"][(t + ahead) % (new["axon"] + 1), neurons],
                           old_state["ring"][(t + ahead) % (d["axon"] + 1)])
    assert int((new_state["ring"] != 0).sum()) == int((old_state["ring"] != 0).sum())
    assert set(new_state) == set(old_state) and grown.state.values == snap.state.values


@settings(max_examples=20, deadline=None)
@given(geometry, increments, increments, st.integers(1, 30))
def test_growing_by_a_then_b_equals_growing_by_a_plus_b(old, a, b, steps):
    snap = _lived(old, steps)
    d = snap.definition
    once = grow(d, snap.tensors, snap.state, _changes(d, {k: a[k] + b[k] for k in a}))
    first = grow(d, snap.tensors, snap.state, _changes(d, a))
    twice = grow(first.definition, first.tensors, first.state, _changes(first.definition, b))
    assert once.definition == twice.definition
    for name in once.tensors:
        assert torch.equal(once.tensors[name], twice.tensors[name]), name
    for name in once.state.tensors:
        assert torch.equal(once.state.tensors[name], twice.state.tensors[name]), name


@settings(max_examples=10, deadline=None)
@given(geometry, increments)
def test_grow_serialize_load_round_trips_and_runs(tmp_path_factory, old, more):
    snap = _lived(old, 15)
    grown = grow(snap.definition, snap.tensors, snap.state, _changes(snap.definition, more))
    instance = InstanceFile(
        meta={"id": "00000000-0000-4000-8000-000000000001", "callsign": "grown",
              "family": {"name": "abraxas", "version": "0", "data_format": DATA_FORMAT},
              "layout": "example", "created": "", "seed": 1, "steps": 15, "incarnation": 1,
              "hera_version": ""},
        definition=grown.definition)
    instance.set_tensors(grown.tensors, grown.state)
    path = tmp_path_factory.mktemp("grow") / "agent.json"
    instance.write(path)
    back = InstanceFile.read(path)
    sheet = model.Sheet(back.definition, back.tensors(), back.state(), "cpu", seed=1)
    sheet.run(5)
    assert sheet.t == grown.state.values["t"] + 5


def test_a_dead_instance_grows_too():
    d = layouts.definition_for("example", {})
    grown = grow(d, model.zero_parameters(d), None, {"cells": 8})
    assert grown.state is None and grown.tensors["weights"].shape == (3 * 3 * 2 * 8, 3 * 9 * 8)
    assert grown.tensors["input_weights"].shape == (16, 3 * 3 * 8)


@pytest.mark.parametrize("changes,message", [
    ({"width": 2}, "cannot shrink width from 3 to 2"),
    ({"axon": 1}, "cannot shrink axon"),
    ({"noise": 1.0}, "grows only"),
    ({"cells": 7.5}, "whole number"),
])
def test_what_cannot_grow_is_refused_with_the_reason(changes, message):
    d = layouts.definition_for("example", {})
    with pytest.raises(DefinitionError, match=message):
        grow(d, model.zero_parameters(d), None, changes)


def test_grow_through_the_command(world):
    agent_id, path = world.build()
    world.run("up", path.name, "--steps", "50")
    world.run("--uuid", agent_id, "grow", "width=4", "axon=5")
    grown = InstanceFile.read(world.agents_dir / f"{agent_id}.json")
    assert grown.definition["width"] == 4 and grown.definition["axon"] == 5
    assert grown.meta["grown"] == 1 and grown.steps == 50
    world.run("--uuid", agent_id, "up", "--steps", "20")
    assert world.row(agent_id)["steps"] == 70
    refused = world.run("--uuid", agent_id, "grow", "width=3", check=False)
    assert refused.returncode == 1 and "cannot shrink width from 4 to 3" in refused.stderr


def test_grow_with_nothing_to_grow_says_what_it_takes(world):
    agent_id, path = world.build()
    world.run("install", path.name)
    proc = world.run("--uuid", agent_id, "grow", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("hera: error: nothing to grow: give PARAM=VALUE pairs of the "
                                   "agent's layout parameters ('hera layouts --json' lists them)")
