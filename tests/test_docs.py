"""The docs stay true: every hook is documented with its exact parameters,
every command is in the command reference, and the guide's complete family
works through the real command."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hera.cli import COMMANDS
from hera.hooks import specs
from hera.instance import InstanceFile
from tests.conftest import make_world

DOCS = Path(__file__).resolve().parent.parent / "docs"
GUIDE = (DOCS / "writing-a-family.md").read_text()
HOOKS = sorted(n for n in dir(specs) if n.startswith("hera_"))


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented_with_its_parameters(name):
    headings = re.findall(rf"^### `{name}\((.*?)\)", GUIDE, flags=re.M)
    assert headings, f"{name} has no section in writing-a-family.md"
    flat = re.sub(r"\[[^\]]*\]", "", headings[0])  # drop type arguments and their commas
    documented = [p.split(":")[0].strip() for p in flat.split(",") if p.strip()]
    # a family leaves out ``family``: hera routes each hook to the agent's family
    assert documented == [p for p in inspect.signature(getattr(specs, name)).parameters
                          if p != "family" or name == "hera_family"]
    assert getattr(specs, name).__doc__, f"{name} has no docstring"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_in_the_reference(name):
    assert re.search(rf"^#+ .*\b{name}\b", (DOCS / "commands.md").read_text(), flags=re.M)


def _first_example(section: str) -> str:
    """The first Python block of the guide's section ``section``."""
    text = GUIDE.split(f"## {section}", 1)[1]
    return re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)


def _python_blocks(section: str) -> list[str]:
    """The Python blocks of the guide's section ``section``, in order."""
    text = GUIDE.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _write_guides_family(world) -> None:
    """The guide's complete family, cloned into the working directory."""
    package = world.workdir / "hera_family_leaky"
    package.mkdir()
    (package / "__init__.py").write_text(_first_example("A complete family in one file"))


def test_the_guides_complete_family_works(world):
    _write_guides_family(world)
    assert "leaky" in world.run("families").stdout
    proc = world.run("--family", "leaky", "--layout", "example", "build")
    agent_id = proc.stdout.split()[1]
    world.run("up", f"{agent_id}.json", "--steps", "100")
    world.run("--uuid", agent_id[:8], "up", "--steps", "50")
    world.run("--uuid", agent_id[:8], "grow", "size=12")
    shrink = world.run("--uuid", agent_id[:8], "grow", "size=4", check=False)
    assert shrink.returncode == 1 and "shrink" in shrink.stderr
    [row] = world.agents()
    assert (row["family"], row["steps"]) == ("leaky", 150)


def test_the_guides_check_family_example_passes_on_the_guides_family(world):
    _write_guides_family(world)
    example = _python_blocks("Testing your family")[1]
    out = world.run_python(example + "\ntest_leaky_keeps_the_contract()\nprint('kept')\n")
    assert out.stdout.strip() == "kept"


def _first_block(section: str, language: str) -> str:
    """The first ``language`` block of the guide's section ``section``."""
    text = GUIDE.split(f"## {section}", 1)[1]
    return re.search(rf"```{language}\n(.*?)```", text, flags=re.S).group(1)


def test_the_guides_family_ships_as_a_wheel_that_installs_and_resumes_exactly(
        world, tmp_path):
    """The guide's complete family and its pyproject.toml, built into a
    wheel, installed (into a directory of its own, found through
    PYTHONPATH) and run through the real command: found by its entry point
    with its distribution named, and 60 + 40 steps give the bits of 100."""
    source = tmp_path / "hera-family-leaky"
    (source / "hera_family_leaky").mkdir(parents=True)
    (source / "hera_family_leaky" / "__init__.py").write_text(
        _first_example("A complete family in one file"))
    (source / "pyproject.toml").write_text(_first_block("Shipping on PyPI", "toml"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp_path / "wheels"), str(source)], check=True, timeout=300)
    [wheel] = (tmp_path / "wheels").glob("hera_family_leaky-0.1.0-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, timeout=300)
    twin = make_world(tmp_path / "twin")  # another machine, where the same file runs
    for each in (world, twin):
        each.env["PYTHONPATH"] = str(site)
    families = {f["name"]: f for f in json.loads(world.run("families", "--json").stdout)}
    assert families["leaky"]["found"] == "entry point"
    assert families["leaky"]["distribution"] == "hera-family-leaky 0.1.0"
    agent_id, path = world.build(family="leaky")
    shutil.copy(path, twin.workdir / path.name)
    world.run("up", path.name, "--steps", "60")
    world.run("--uuid", agent_id, "up", "--steps", "40")
    twin.run("up", path.name, "--steps", "100")
    split, whole = (InstanceFile.read(w.agents_dir / f"{agent_id}.json") for w in (world, twin))
    assert split.steps == whole.steps == 100
    for name, tensor in whole.tensors().items():
        assert torch.equal(split.tensors()[name], tensor), name
    assert whole.tensors()["weights"].abs().sum() > 0  # it learned on the way
    for name, tensor in whole.state().tensors.items():
        assert torch.equal(split.state().tensors[name], tensor), name
    assert split.state().values == whole.state().values


def test_the_guides_conformance_line_passes_on_the_guides_family(world):
    """The guide's one-line conformance suite, run by pytest on the guide's
    family (cloned into the working directory, where the suite's runs of the
    hera command find it too)."""
    _write_guides_family(world)
    (world.workdir / "test_leaky.py").write_text(_python_blocks("Testing your family")[0])
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_leaky.py"], cwd=world.workdir, env=world.env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "7 passed" in proc.stdout, proc.stdout[-2000:]


def test_every_control_command_is_in_the_protocol_reference():
    from hera.agent_commands import CONTROL

    rows = re.findall(r"^\| `(\w+)` \|", (DOCS / "control.md").read_text(), flags=re.M)
    assert set(CONTROL) <= set(rows), set(CONTROL) - set(rows)
    table = rows[rows.index("status"):rows.index("io") + 1]  # the table of commands
    assert sorted(table) == sorted(CONTROL)
