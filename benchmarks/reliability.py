"""Reliability figures: kills survived, races run, files fuzzed, attacks refused.

Everything runs the real ``hera`` command (or, for the fuzzing, hera's own
instance-file reader) in a private temporary world on the ``example``
layout:

- kills: ``up --checkpoint 0.02`` is killed with SIGKILL at a random moment
  (while loading, stepping, checkpointing or saving); afterwards the stored
  agent must read back whole and the next ``up`` must resume from it;
- races: two ``up``s of one agent started together (exactly one may run),
  and two ``build``s to one file (exactly one may write it);
- fuzzing: random byte flips, cuts and splices of a real agent file read
  by :meth:`InstanceFile.parse`, which must either accept the file or
  raise a one-line :class:`InstanceFileError`;
- attacks: files and names that must be refused with one line and exit 1,
  leaving the agent as it was.

    python benchmarks/reliability.py [--kills N] [--races N] [--fuzz N] [--seed S]

The last line is the figure: ``reliability: K kills survived, R races run,
F files fuzzed, A attacks refused``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hera.errors import InstanceFileError
from hera.instance import InstanceFile

HERA = [sys.executable, "-m", "hera"]


class World:
    """A private HOME, data and runtime dir, and a way to run hera there."""

    def __init__(self, root: Path):
        self.root = root
        self.work = root / "work"
        self.work.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("HERA_", "XDG_"))}
        self.env.update(HOME=str(root), HERA_DATA_DIR=str(root / "data"),
                        HERA_RUNTIME_DIR=str(root / "run"))

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(HERA + list(args), cwd=self.work, env=self.env,
                              capture_output=True, text=True, timeout=300)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(HERA + list(args), cwd=self.work, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def build(self, name: str) -> str:
        proc = self.run("--family", "abraxas", "--layout", "example", "build", name)
        if proc.returncode:
            raise SystemExit(proc.stderr)
        return proc.stdout.split()[1]

    def stored(self, agent_id: str) -> Path:
        return self.root / "data" / "agents" / f"{agent_id}.json"


def kills(world: World, count: int, rng: random.Random) -> int:
    """Kill ``up`` at random moments; count the agents that survived."""
    survived = 0
    for i in range(count):
        agent_id = world.build(f"kill{i}.json")
        world.run("up", f"kill{i}.json", "--steps", "10")
        steps = InstanceFile.read(world.stored(agent_id)).steps
        up = world.popen("--uuid", agent_id, "up", "--checkpoint", "0.02", "--silent")
        time.sleep(rng.uniform(0.0, 3.0))
        up.send_signal(signal.SIGKILL)
        up.wait()
        try:
            after = InstanceFile.read(world.stored(agent_id))
        except InstanceFileError as exc:
            print(f"kill {i}: the stored agent is damaged: {exc}")
            continue
        resumed = world.run("--uuid", agent_id, "up", "--steps", "1")
        ok = after.steps >= steps and resumed.returncode == 0 and \
            InstanceFile.read(world.stored(agent_id)).steps == after.steps + 1
        survived += ok
        if not ok:
            print(f"kill {i}: did not resume: {resumed.stderr.strip()}")
    return survived


def races(world: World, count: int) -> int:
    """Two ups of one agent, and two builds to one file, started together."""
    run = 0
    for i in range(count):
        agent_id = world.build(f"race{i}.json")
        world.run("install", f"race{i}.json")
        ups = [world.popen("--uuid", agent_id, "up", "--steps", "200000") for _ in range(2)]
        codes = sorted(p.wait() for p in ups)
        if codes != [0, 1]:
            print(f"up race {i}: exit codes {codes}, expected one run and one refusal")
        else:
            run += 1
        builds = [subprocess.Popen(HERA + ["build", f"same{i}.json"], cwd=world.work,
                                   env=world.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL) for _ in range(2)]
        codes = sorted(p.wait() for p in builds)
        if codes != [0, 1]:
            print(f"build race {i}: exit codes {codes}, expected one build and one refusal")
        else:
            run += 1
    return run


def fuzz(world: World, count: int, rng: random.Random) -> int:
    """Mutated agent files through the reader; count those handled properly."""
    agent_id = world.build("fuzz.json")
    world.run("up", "fuzz.json", "--steps", "5")
    original = world.stored(agent_id).read_bytes()
    handled = 0
    for i in range(count):
        data = bytearray(original)
        kind = rng.choice(("flip", "cut", "splice", "nan"))
        if kind == "flip":
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == "cut":
            del data[rng.randrange(len(data)):]
        elif kind == "splice":
            at, other = rng.randrange(len(data)), rng.randrange(len(data))
            data[at:at] = original[other:other + rng.randint(1, 64)]
        else:
            data = data.replace(b'"steps":', b'"steps":NaN,"x":', 1)
        try:
            InstanceFile.parse(bytes(data), f"fuzz{i}")
            handled += 1
        except InstanceFileError as exc:
            handled += "\n" not in exc.message
        except Exception as exc:  # noqa: BLE001 - the figure counts these as failures
            print(f"fuzz {i} ({kind}): {type(exc).__name__}: {exc}")
    return handled


def attacks(world: World) -> tuple[int, int]:
    """Inputs that must be refused with one line; (refused, tried)."""
    agent_id = world.build("victim.json")
    world.run("up", "victim.json", "--steps", "5")
    before = world.stored(agent_id).read_bytes()
    fifo = world.work / "fifo.json"
    os.mkfifo(fifo)
    bomb = world.work / "bomb.json"
    text = world.stored(agent_id).read_text()
    bomb.write_text(text.replace('"shape":[', '"shape":[1000000000,', 1))
    long_name = "x" * 300 + ".json"
    link_dir = world.root / "linked-run"
    tried = [
        ("install", "/dev/zero"), ("up", "/dev/zero"), ("install", str(fifo)),
        ("up", str(fifo)), ("install", str(bomb)), ("up", long_name),
        ("install", "--user", "../..", "victim.json"),
        ("build", "--set", "width=NaN", "x.json"),
        ("build", "--set", "width=100000000", "y.json"),
        ("--uuid", agent_id, "uninstall", "--output", "missing/"),
    ]
    refused = 0
    for args in tried:
        proc = world.run(*args)
        lines = proc.stderr.strip().splitlines()
        ok = proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("hera: error:")
        refused += ok
        if not ok:
            print(f"attack {' '.join(args)[:60]}: exit {proc.returncode}: {proc.stderr[:200]}")
    # A runtime dir that is a link to a directory of ours.
    link_dir.symlink_to(world.root)
    env, world.env = world.env, {**world.env, "HERA_RUNTIME_DIR": str(link_dir)}
    proc = world.run("--uuid", agent_id, "up", "--steps", "1")
    world.env = env
    refused += proc.returncode == 1 and "symbolic link" in proc.stderr
    intact = world.stored(agent_id).read_bytes() == before
    return refused if intact else 0, len(tried) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--races", type=int, default=10)
    parser.add_argument("--fuzz", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="hera-reliability-") as tmp:
        world = World(Path(tmp))
        world.run("build", "warm.json")  # the compiled step, built once before timing kills
        world.run("up", "warm.json", "--steps", "1")
        survived = kills(world, args.kills, rng)
        print(f"kills: {survived} of {args.kills} agents intact and resumed")
        run = races(world, args.races)
        print(f"races: {run} of {2 * args.races} settled with exactly one winner")
        handled = fuzz(world, args.fuzz, rng)
        print(f"fuzz: {handled} of {args.fuzz} mutated files accepted or refused in one line")
        refused, tried = attacks(world)
        print(f"attacks: {refused} of {tried} refused in one line, the agent intact")
    print(f"reliability: {survived} kills survived, {run} races run, {handled} files fuzzed, "
          f"{refused} attacks refused")


if __name__ == "__main__":
    main()
