"""Precedence: built-in < ~/.herarc < ./hera.json < command line, for layout
parameters and option defaults alike."""

from __future__ import annotations

import json

from hera.instance import InstanceFile


def _build(world, *args: str) -> InstanceFile:
    """Run ``hera [ARGS] build`` with no family/layout flags unless given."""
    words = world.run(*args).stdout.split()
    return InstanceFile.read(world.workdir / f"{words[1]}.json")


def _built_width(world, *flags: str) -> int:
    return _build(world, "build", *flags).definition["width"]


def test_each_level_overrides_the_one_below_for_layout_parameters(world):
    assert _built_width(world) == 3  # the example layout's own value
    (world.home / ".herarc").write_text("[definition]\nwidth = 4\n")
    assert _built_width(world) == 4
    (world.workdir / "hera.json").write_text(json.dumps({"definition": {"width": 5}}))
    assert _built_width(world) == 5
    assert _built_width(world, "--set", "width=6") == 6


def test_each_level_overrides_the_one_below_for_options(world):
    (world.home / ".herarc").write_text('[options]\nlayout = "small"\nsteps = 7\n')
    assert _build(world, "build").layout == "small"

    (world.workdir / "hera.json").write_text(json.dumps({"options": {"layout": "example", "steps": 3}}))
    built = _build(world, "build")
    assert built.layout == "example"
    agent_id = built.id
    world.run("up", f"{agent_id}.json")
    assert [r["steps"] for r in world.agents() if r["id"] == agent_id] == [3]

    world.run("--uuid", agent_id, "up", "--steps", "2")
    assert [r["steps"] for r in world.agents() if r["id"] == agent_id] == [5]

    (world.workdir / "hera.json").unlink()
    assert _build(world, "--layout", "example", "build").layout == "example"  # flags beat files


def test_herarc_location_can_be_overridden(world):
    rc = world.root / "elsewhere.toml"
    rc.write_text("[definition]\ncells = 5\n")
    world.env["HERA_RC"] = str(rc)
    assert _build(world, "build").definition["cells"] == 5


def test_silent_option_from_config(world):
    (world.workdir / "hera.json").write_text(json.dumps({"options": {"silent": True}}))
    _, path = world.build()
    assert world.run("up", path.name, "--steps", "2").stdout == ""
    assert "at step 2" in world.run("up", path.name, "--steps", "2", "--no-silent").stdout
