"""The docs stay true: every hook is documented with its exact parameters,
every command is in the command reference, and the guide's complete family
works through the real command."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from hera.cli import COMMANDS
from hera.hooks import specs

DOCS = Path(__file__).resolve().parent.parent / "docs"
GUIDE = (DOCS / "writing-a-family.md").read_text()
HOOKS = sorted(n for n in dir(specs) if n.startswith("hera_"))


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented_with_its_parameters(name):
    headings = re.findall(rf"^### `{name}\((.*?)\)", GUIDE, flags=re.M)
    assert headings, f"{name} has no section in writing-a-family.md"
    flat = re.sub(r"\[[^\]]*\]", "", headings[0])  # drop type arguments and their commas
    documented = [p.split(":")[0].strip() for p in flat.split(",") if p.strip()]
    assert documented == list(inspect.signature(getattr(specs, name)).parameters)
    assert getattr(specs, name).__doc__, f"{name} has no docstring"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_in_the_reference(name):
    assert re.search(rf"^#+ .*\b{name}\b", (DOCS / "commands.md").read_text(), flags=re.M)


def _first_example(section: str) -> str:
    """The first Python block of the guide's section ``section``."""
    text = GUIDE.split(f"## {section}", 1)[1]
    return re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)


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
    example = _first_example("Testing your family")
    out = world.run_python(example + "\ntest_leaky_keeps_the_contract()\nprint('kept')\n")
    assert out.stdout.strip() == "kept"
