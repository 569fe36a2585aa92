"""abraxas reads its data formats 2 (a torch.Generator's state for its
random numbers), 3 (no given input spikes, no freezing), 4 (no
``tau_depression`` or ``min_threshold``) and 5 (no ``trace_offset``) and
continues from them exactly as from format 6: the upgrade drops the
generator state, which format 3 no longer needed, adds no given spikes and
no freezing, and keeps the rules the older format had (post traces with the
pre traces' decay, thresholds that never fall below ``threshold``,
potentiation by the whole trace)."""

from __future__ import annotations

import shutil

import pytest
import torch

from hera.errors import InstanceFileError
from hera.hooks.types import DynamicState
from hera.instance import InstanceFile
from hera_family_abraxas import DATA_FORMAT, layouts, model
from hera_family_abraxas.upgrade import upgrade
from tests.conftest import make_world

#: Parameters each older format lacks.
ADDED = {2: ("tau_depression", "min_threshold", "trace_offset"),
         3: ("tau_depression", "min_threshold", "trace_offset"),
         4: ("tau_depression", "min_threshold", "trace_offset"), 5: ("trace_offset",)}
OLDER = sorted(ADDED)


def _as_format(data_format: int, state: DynamicState) -> DynamicState:
    """What abraxas 0.2, 0.3 or 0.4 saved of the same state: 0.2 and 0.3
    had no given spikes and no freezing; 0.2 kept its generator's state
    beside it."""
    if data_format >= 4:
        return state
    tensors = {k: v for k, v in state.tensors.items() if k != "input_spikes"}
    values = {k: v for k, v in state.values.items() if k != "frozen"}
    if data_format == 2:
        tensors["rng"] = torch.Generator().manual_seed(3).get_state()
        values["rng_device"] = "cpu"
    return DynamicState(tensors, values)


def _older_definition(data_format: int, definition: dict) -> dict:
    return {k: v for k, v in definition.items() if k not in ADDED[data_format]}


def _continuing(data_format: int) -> dict:
    """A definition an older format can express: the format-4 one has a
    target rate, whose thresholds format 4 held at or above ``threshold``;
    the format-5 one its own depression window and threshold floor."""
    extra = {"target_rate": 0.05, "theta_plus": 0.5} if data_format >= 4 else {}
    d = layouts.definition_for("example", {"noise": 1.0, "input_rate": 0.2, **extra})
    if data_format == 5:
        return {**d, "tau_depression": 30.0, "min_threshold": 0.4}
    return {**d, "tau_depression": 0.0, "min_threshold": d["threshold"]}


@pytest.mark.parametrize("data_format", OLDER)
def test_an_older_state_continues_as_the_current_format_does(data_format):
    d = _continuing(data_format)
    sheet = model.Sheet(d, model.zero_parameters(d), None, "cpu", seed=9, backend="torch")
    sheet.run(20)
    snap = sheet.snapshot()
    sheet.run(20)
    end = sheet.snapshot()

    old = upgrade(data_format, _older_definition(data_format, snap.definition), snap.tensors,
                  _as_format(data_format, snap.state))
    assert old.definition == snap.definition and set(old.state.tensors) == set(model.STATE)
    assert old.state.values == snap.state.values
    resumed = model.Sheet(old.definition, old.tensors, old.state, "cpu", seed=9, backend="torch")
    resumed.run(20)
    again = resumed.snapshot()
    for name in model.LEARNED:
        assert torch.equal(again.tensors[name], end.tensors[name]), name
    for name in model.STATE:
        assert torch.equal(again.state.tensors[name], end.state.tensors[name]), name
    assert end.tensors["weights"].any()
    if data_format == 4:  # the target rate pulled thresholds down to the old floor
        assert (end.tensors["thresholds"] == 0).any()


@pytest.mark.parametrize("data_format", OLDER)
def test_an_older_built_file_needs_nothing_but_its_format(data_format):
    d = layouts.definition_for("example", {})
    built = upgrade(data_format, _older_definition(data_format, d), model.zero_parameters(d),
                    None)
    assert built.state is None and set(built.tensors) == set(model.LEARNED)
    assert built.definition["trace_offset"] == 0.0
    kept = data_format == 5
    assert built.definition["min_threshold"] == (d["min_threshold"] if kept else d["threshold"])
    assert built.definition["tau_depression"] == (d["tau_depression"] if kept else 0.0)


def test_format_1_is_not_read():
    d = layouts.definition_for("example", {})
    with pytest.raises(InstanceFileError, match="abraxas cannot read data format 1"):
        upgrade(1, d, model.zero_parameters(d), None)


@pytest.mark.parametrize("data_format", OLDER)
def test_up_upgrades_an_installed_older_agent_and_keeps_the_original(world, tmp_path,
                                                                      data_format):
    """Through the real command: an agent that abraxas 0.2, 0.3 or 0.4
    saved runs on under the current format exactly as the same agent saved
    in it does, and the older file stays beside it."""
    agent_id, path = world.build("--set", f"min_threshold={layouts.DEFAULTS['threshold']}")
    world.run("up", path.name, "--steps", "60", "--silent")
    stored = world.agents_dir / f"{agent_id}.json"
    control = make_world(tmp_path / "control")
    control.agents_dir.mkdir(parents=True)
    shutil.copy(stored, control.agents_dir / stored.name)

    instance = InstanceFile.read(stored)
    instance.meta["family"] = {"name": "abraxas", "version": f"0.{data_format}.0",
                               "data_format": data_format}
    instance.set_tensors(instance.tensors(), _as_format(data_format, instance.state()))
    instance.definition = _older_definition(data_format, instance.definition)
    instance.write(stored)
    original = stored.read_bytes()

    proc = world.run("--uuid", agent_id, "up", "--steps", "60")
    assert f"from abraxas data format {data_format} to {DATA_FORMAT}" in proc.stdout + proc.stderr
    control.run("--uuid", agent_id, "up", "--steps", "60", "--silent")

    upgraded, expected = InstanceFile.read(stored), InstanceFile.read(control.agents_dir /
                                                                      stored.name)
    assert upgraded.meta["family"]["data_format"] == DATA_FORMAT and upgraded.steps == 120
    assert upgraded.stored_state.keys() == expected.stored_state.keys()
    assert upgraded.digests == expected.digests
    assert (world.agents_dir / f"{agent_id}.format{data_format}.json").read_bytes() == original
    assert [row["id"] for row in world.agents()] == [agent_id]


def test_a_format_1_agent_is_refused_with_the_formats_read(world):
    agent_id, path = world.build()
    instance = InstanceFile.read(world.workdir / path.name)
    instance.meta["family"]["data_format"] = 1
    instance.write(world.workdir / path.name)
    before = (world.workdir / path.name).read_bytes()
    proc = world.run("up", path.name, "--steps", "5", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "data format 1" in line and f"reads formats 2, 3, 4, 5 and {DATA_FORMAT}" in line, line
    assert (world.workdir / path.name).read_bytes() == before
