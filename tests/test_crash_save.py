"""A writer SIGKILLed at random moments while it saves, over and over, one
of two states to the same file: the file always reads back as exactly one
of them, and remove_leftovers clears what the dead writer left."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

import hera
from hera import atomic
from hera.hooks.types import DynamicState
from hera.instance import InstanceFile

REPO = Path(hera.__file__).resolve().parents[1]
KILLS = 25

# Reads states A and B once (no torch needed), writes A, says "ready", then
# alternates B, A, B, ... until killed.
WRITER = """
import sys
from hera.instance import InstanceFile
a, b = InstanceFile.read(sys.argv[1]), InstanceFile.read(sys.argv[2])
target = sys.argv[3]
a.write(target)
print("ready", flush=True)
while True:
    b.write(target)
    a.write(target)
"""


def make_state(seed: int, steps: int, alive: bool) -> InstanceFile:
    """About 2.5 MB on disk: incompressible weights, so a write takes a while."""
    generator = torch.Generator().manual_seed(seed)
    meta = {
        "id": "5f0c9a8e-0000-4000-8000-00000000c4a5", "callsign": "crash-test",
        "family": {"name": "abraxas", "version": "1.0", "data_format": 1},
        "layout": "example", "created": "2024-01-01T00:00:00Z", "seed": seed,
        "steps": steps, "incarnation": 1, "hera_version": hera.__version__,
    }
    instance = InstanceFile(meta, {"neurons": 1024}, {})
    state = DynamicState({"v": torch.randn(1024, generator=generator)}, {"clock": steps}) \
        if alive else None
    instance.set_tensors({"w": torch.randn(1 << 19, generator=generator)}, state)
    return instance


def test_killed_writer_leaves_one_whole_state(tmp_path):
    sources, agents = tmp_path / "sources", tmp_path / "agents"
    sources.mkdir()
    agents.mkdir()
    states = {"A": make_state(1, steps=100, alive=False), "B": make_state(2, steps=200, alive=True)}
    for name, state in states.items():
        state.write(sources / f"{name}.json")
    assert os.path.getsize(sources / "A.json") > 2_000_000
    expected = {name: (s.checksum(), s.steps) for name, s in states.items()}
    assert expected["A"] != expected["B"]

    target = agents / "agent.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    rng = random.Random(20240101)
    seen, kills_mid_write = [], 0
    for attempt in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(sources / "A.json"), str(sources / "B.json"),
             str(target)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            ready = proc.stdout.readline()
            assert ready == b"ready\n", (ready, proc.stderr.read() if proc.poll() else b"")
            # A write takes ~10-40 ms here: this lands anywhere in the
            # first few writes, mostly in the middle of one.
            time.sleep(rng.uniform(0, 0.12))
            assert proc.poll() is None, proc.stderr.read()
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()

        read = InstanceFile.read(target)
        got = (read.checksum(), read.steps)
        assert got in expected.values(), f"kill {attempt}: neither A nor B"
        name = "A" if got == expected["A"] else "B"
        assert read.digests == states[name].digests
        assert read.alive == states[name].alive
        seen.append(name)

        leftovers = atomic.remove_leftovers(target)
        kills_mid_write += bool(leftovers)
        assert sorted(p.name for p in agents.iterdir()) == ["agent.json"], f"kill {attempt}"

    # The kills really hit writes in progress, and both states were on disk
    # at some kill (the writer alternates; the chance of one only is ~2**-24).
    assert kills_mid_write > 0, seen
    assert set(seen) == {"A", "B"}, seen

