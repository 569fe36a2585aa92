"""Shell completion through argcomplete, as bash asks for it: commands,
options, and the names hera knows (installed agents, families, layouts,
signals)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _complete(world, line: str) -> list[str]:
    """What ``hera`` offers for ``line`` with the cursor at its end."""
    out = world.root / "completions"
    env = {**world.env, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
           "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
    proc = subprocess.run([sys.executable, "-m", "hera"], cwd=world.workdir, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # a single offer ends with a space (the word is complete)
    return sorted(w.strip() for w in out.read_text().split("\n") if w.strip())


@pytest.mark.parametrize("line, offered", [
    ("hera sig", ["signal"]),
    ("hera ag", ["agents"]),
    ("hera up --ste", ["--steps"]),
    ("hera signal SIGT", ["SIGTERM", "SIGTSTP", "SIGTTIN", "SIGTTOU"]),
    ("hera --family ab", ["abraxas"]),
    ("hera --layout s", ["small"]),
])
def test_commands_options_and_names_complete(world, line, offered):
    assert _complete(world, line) == offered


def test_installed_agents_complete_by_callsign_and_id(world):
    agent_id, path = world.build("--name", "brave-otter")
    assert _complete(world, "hera --callsign br") == []  # not installed yet
    world.run("install", path.name)
    assert _complete(world, "hera --callsign br") == ["brave-otter"]
    assert _complete(world, f"hera --uuid {agent_id[:4]}") == [agent_id]
    assert _complete(world, f"hera up {path.name[:5]}") == [path.name]  # files as usual
