"""Agents written in an older data format of their family: refused unless the
family upgrades from that format; upgraded where they are loaded (``up``,
``grow``), with the store's original kept beside them; a failed upgrade is
one line and changes nothing. The tally test family writes data format 1;
set to format 2, it upgrades format-1 files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hera import manager, runner
from hera.errors import InstanceFileError
from hera.instance import InstanceFile
from hera.places import Scope
from hera.store import AgentStore
from tests import tally_family

TALLY_SOURCE = Path(tally_family.__file__).read_text()
FORMAT_1, FORMAT_2 = "DATA_FORMAT = 1\n", "DATA_FORMAT = 2\n"
UPGRADE_LINE = 'counts = tensors["counts"].round().to(torch.int64)  # format 1 -> 2: whole counters'


def _edited(*edits: tuple[str, str]) -> str:
    """The tally family's source with each ``(old, new)`` replaced once."""
    source = TALLY_SOURCE
    for old, new in edits:
        assert old in source, old
        source = source.replace(old, new, 1)
    return source


def _put_tally(world, source: str) -> None:
    """(Re)write the working directory's tally family."""
    package = world.workdir / "hera_family_tally"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(source)


def _tally_world(world):
    """Tally at data format 1 in the working directory. The family is
    rewritten between commands with a source of the same size, perhaps
    within the same second, so no bytecode cache may be trusted."""
    world.env["PYTHONDONTWRITEBYTECODE"] = "1"
    _put_tally(world, TALLY_SOURCE)
    return world


def _build_and_run(world, steps: int) -> tuple[str, Path]:
    """A tally agent installed by its first up; its id and store file."""
    agent_id = world.run("--family", "tally", "--layout", "example", "build").stdout.split()[1]
    world.run("up", f"{agent_id}.json", "--steps", str(steps))
    return agent_id, world.agents_dir / f"{agent_id}.json"


# -- check_family -------------------------------------------------------------------


def test_check_family_accepts_a_format_the_family_upgrades_from(places, tally, monkeypatch):
    _, built = manager.build(tally, "tally", "example", {}, None)
    monkeypatch.setattr(tally_family, "DATA_FORMAT", 2)
    assert manager.check_family(tally, built).data_format == 2
    for unreadable in (0, 3):
        built.meta["family"]["data_format"] = unreadable
        with pytest.raises(InstanceFileError) as refused:
            manager.check_family(tally, built)
        assert refused.value.message == (
            f"agent {built.id} was written by tally data format {unreadable}, "
            "but the installed tally 0.0.2 reads formats 1 and 2")
    monkeypatch.setattr(tally_family, "DATA_FORMAT", 1)
    built.meta["family"]["data_format"] = 2
    with pytest.raises(InstanceFileError, match="the installed tally 0.0.1 reads format 1$"):
        manager.check_family(tally, built)


def test_install_keeps_an_old_format_file_as_it_is(places, tally, monkeypatch):
    path, built = manager.build(tally, "tally", "example", {}, None)
    monkeypatch.setattr(tally_family, "DATA_FORMAT", 2)
    manager.install(tally, AgentStore(Scope("user")), path)
    stored = AgentStore(Scope("user")).load(built.id)
    assert stored.meta["family"]["data_format"] == 1
    assert stored.tensors()["counts"].dtype == torch.float64


# -- the original kept -------------------------------------------------------------


def test_the_older_format_copy_is_written_once(places, tally):
    _, built = manager.build(tally, "tally", "example", {}, None)
    store = AgentStore(Scope("user"))
    store.save(built)
    kept = store.keep_older_format(built.id, 1)
    assert kept == store.dir / f"{built.id}.format1.json"
    assert kept.read_bytes() == store.path(built.id).read_bytes()
    kept.write_bytes(b"the first copy")
    assert store.keep_older_format(built.id, 1) == kept
    assert kept.read_bytes() == b"the first copy"
    assert [h.id for h in store.headers()] == [built.id], "a kept copy is not an agent"


# -- up and grow upgrade ------------------------------------------------------------


def test_up_upgrades_an_old_format_agent_and_keeps_the_original(world):
    _tally_world(world)
    agent_id, cached = _build_and_run(world, 4)
    original = cached.read_bytes()
    fresh_id = world.run("--family", "tally", "--layout", "example", "build").stdout.split()[1]
    _put_tally(world, _edited((FORMAT_1, FORMAT_2)))
    [tally] = [f for f in json.loads(world.run("families", "--json").stdout) if f["name"] == "tally"]
    assert (tally["data_format"], tally["upgrades_from"]) == (2, [1])

    proc = world.run("--uuid", agent_id, "up", "--steps", "3")
    kept = world.agents_dir / f"{agent_id}.format1.json"
    assert f"from tally data format 1 to 2; the older file is kept as {kept}" in proc.stdout
    saved = InstanceFile.read(cached)
    assert saved.meta["family"] == {"name": "tally", "version": "0.0.2", "data_format": 2}
    assert saved.steps == 7
    assert saved.tensors()["counts"].dtype == torch.int64
    assert saved.tensors()["counts"].tolist() == [7, 7, 7, 7]
    assert kept.read_bytes() == original
    world.run("--uuid", agent_id, "up", "--steps", "1")
    assert kept.read_bytes() == original
    assert [(r["id"], r["steps"]) for r in world.agents()] == [(agent_id, 8)]

    world.run("install", f"{fresh_id}.json")  # install only checks: the file stays format 1
    assert InstanceFile.read(world.agents_dir / f"{fresh_id}.json").meta["family"]["data_format"] == 1


def test_a_first_up_of_an_old_format_file_installs_it_upgraded(places, tally, monkeypatch):
    path, built = manager.build(tally, "tally", "example", {}, None)
    written = path.read_bytes()
    monkeypatch.setattr(tally_family, "DATA_FORMAT", 2)
    store = AgentStore(Scope("user"))
    target = manager.select_target(store, str(path), None, None, allow_uninstalled=True)
    said = []
    runner.up(tally, target, runner.UpOptions(steps=2), say=said.append)
    assert f"upgraded {built.id} ({built.callsign}) from tally data format 1 to 2" in said
    saved = store.load(built.id)
    assert saved.meta["family"]["data_format"] == 2 and saved.tensors()["counts"].tolist() == [2] * 4
    assert path.read_bytes() == written, "the working-directory file is the original"
    assert not store.older_format_path(built.id, 1).exists()


def test_grow_upgrades_an_old_format_agent(places, tally, monkeypatch):
    path, built = manager.build(tally, "tally", "example", {}, None)
    store = AgentStore(Scope("user"))
    target = manager.select_target(store, str(path), None, None, allow_uninstalled=True)
    runner.up(tally, target, runner.UpOptions(steps=3), say=lambda _: None)
    original = store.path(built.id).read_bytes()
    acc = store.load(built.id).state().tensors["acc"]
    monkeypatch.setattr(tally_family, "DATA_FORMAT", 2)
    grown = manager.grow(tally, manager.select_target(store, None, built.id[:8], None), {"size": 6})
    saved = store.load(built.id)
    assert saved.meta["family"]["data_format"] == 2 and saved.meta["grown"] == 1
    assert saved.tensors()["counts"].tolist() == [3, 3, 3, 3, 0, 0]
    assert saved.tensors()["counts"].dtype == torch.int64
    assert torch.equal(saved.state().tensors["acc"], torch.cat([acc, torch.zeros(2, dtype=acc.dtype)]))
    assert grown.definition["size"] == 6
    assert store.older_format_path(built.id, 1).read_bytes() == original


# -- a failing upgrade --------------------------------------------------------------

FAILURES = {
    "raises": ("raise RuntimeError('counters unreadable')", "RuntimeError: counters unreadable"),
    "gives nothing": ("return None", "it lists that format in upgrades_from, but its hera_upgrade "
                      "gave nothing"),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failing_upgrade_is_one_line_and_changes_nothing(world, failure):
    _tally_world(world)
    agent_id, cached = _build_and_run(world, 4)
    original = cached.read_bytes()
    line, reason = FAILURES[failure]
    _put_tally(world, _edited((FORMAT_1, FORMAT_2), (UPGRADE_LINE, line)))
    for command in (["up", "--steps", "1"], ["grow", "size=6"]):
        proc = world.run("--uuid", agent_id, *command, check=False)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"hera: error: tally 0.0.2 could not upgrade agent {agent_id} from data format 1: "
            f"{reason}"], proc.stderr
        assert cached.read_bytes() == original
        assert not (world.agents_dir / f"{agent_id}.format1.json").exists()
