"""hera's first run: build the example agent once, run it, show what it has
learned.

``./run`` calls this once ``.venv`` holds hera. The agent is a real one in
this user's store (``hera agents`` lists it); its id is kept beside the
store, in ``first-run-agent`` in hera's data directory, so every run resumes
it where the last one stopped and it keeps learning. ``--fresh`` starts a
new agent.

    python scripts/first_run.py [--steps N] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERA = [sys.executable, "-m", "hera"]
SHADES = " .:-=+*#%@"


def hera(*args: str, capture: bool = False) -> str:
    """Run the ``hera`` command as a user types it; stop on its failure
    (it has said why on stderr)."""
    done = subprocess.run([*HERA, *args], text=True,
                          stdout=subprocess.PIPE if capture else None)
    if done.returncode != 0:
        raise SystemExit(done.returncode)
    return done.stdout or ""


def record() -> Path:
    """Where the first run keeps its agent's id."""
    from hera import places

    return places.data_dir(places.Scope("user")) / "first-run-agent"


def recorded_agent() -> str | None:
    """The id of the agent an earlier run built, while it is installed."""
    try:
        agent_id = record().read_text().strip()
    except FileNotFoundError:
        return None
    rows = json.loads(hera("agents", "--json", capture=True))
    return agent_id if any(row["id"] == agent_id for row in rows) else None


def build_and_install(steps: int) -> tuple[str, dict]:
    """Build an example agent and install it with its first up; returns its
    id and its learned tensors as built (all zero)."""
    from hera.instance import InstanceFile

    with tempfile.TemporaryDirectory(prefix="hera-first-run-") as work:
        path = Path(work) / "agent.json"
        out = hera("--family", "abraxas", "--layout", "example", "build", str(path),
                   capture=True)
        print(out, end="")
        agent_id = out.split()[1]
        built = InstanceFile.read(path).tensors()
        hera("up", str(path), "--steps", str(steps), "--silent")
    record().write_text(agent_id + "\n")
    return agent_id, built


def learned(agent_id: str):
    """The agent's learned tensors and step count, read from its file."""
    from hera.store import AgentStore

    instance = AgentStore().load(agent_id)
    return instance.tensors(), instance.steps


def shade(matrix, top: float) -> list[str]:
    """One text line per row of ``matrix``: darker characters, larger values."""
    last = len(SHADES) - 1
    return ["".join(SHADES[min(last, round(float(v) / top * last))] if top > 0 else " "
                    for v in row) for row in matrix]


def show(before: dict, after: dict) -> None:
    """Each learned tensor's statistics, their change over this run, and the
    input weights as a picture (one row per input channel)."""
    print(f"{'learned':<14} {'shape':<10} {'mean':>8} {'max':>8} {'nonzero':>8} "
          f"{'mean |change| this run':>24}")
    for name, tensor in after.items():
        values = tensor.float()
        change = (values - before[name].float()).abs().mean().item()
        shape = "x".join(map(str, tensor.shape))
        print(f"{name:<14} {shape:<10} {values.mean().item():8.4f} {values.max().item():8.4f} "
              f"{(values != 0).float().mean().item():8.1%} {change:24.5f}")
    weights = after.get("input_weights")
    if weights is not None and weights.dim() == 2:
        top = weights.max().item()
        print(f"\ninput weights (rows: input channels, columns: first-layer cells; "
              f"'{SHADES[-1]}' = {top:.3f}):")
        for line in shade(weights, top):
            print("  |" + line + "|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps this run (default 2000)")
    parser.add_argument("--fresh", action="store_true", help="start a new agent")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    agent_id = None if args.fresh else recorded_agent()
    if agent_id is None:
        agent_id, before = build_and_install(args.steps)
    else:
        before, _ = learned(agent_id)
        hera("--uuid", agent_id, "up", "--steps", str(args.steps), "--silent")
    after, steps = learned(agent_id)
    print(f"agent {agent_id}: abraxas/example at step {steps} ({args.steps} this run)\n")
    show(before, after)
    print(f"\nrun ./run again to go on learning; hera --uuid {agent_id[:8]} up --interactive "
          "opens a prompt with the live agent")


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # the output went into `head`, say: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
