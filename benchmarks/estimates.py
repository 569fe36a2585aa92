"""Honest estimates and a fast first step: ``up --simulate`` against the peak
resident memory of a real ``up``, and how long that ``up`` takes to its
first step, for each layout.

For each abraxas layout whose estimate leaves room in the memory available,
two agents: one as ``build`` makes it, and one as weeks of learning leave it
(dense random weights: see ``learned_agent.py``). For each, in a temporary
HOME, ``hera up FILE --simulate`` gives the estimate, then ``hera up FILE
--steps 1`` runs on the CPU (installing the agent, loading it, one step,
the save at down); its peak resident memory comes from the kernel
(``wait4``), and "first step" is the time from starting the command to its
``up …`` banner (the agent loaded, its first step next), "whole" the time
to its exit.

    python benchmarks/estimates.py [--layouts example,small,...]

The last line gives the range of estimate / peak over every agent
measured, and big's first step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAYOUTS = ["example", "digits", "pattern", "small", "medium", "big", "large"]

# Leave this share of the memory available to everything but the agent.
_HEADROOM = 0.7


def child_learned(layout: str, path: str) -> dict:
    """Write the learned agent of ``layout`` to ``path``."""
    from learned_agent import learned_instance

    instance, tensors = learned_instance(layout, Path(path).with_suffix(".built.json"), seed=3)
    instance.write(Path(path))
    return {"tensors": tensors}


def simulated(env: dict, path: Path) -> int:
    out = subprocess.run([sys.executable, "-m", "hera", "up", str(path), "--simulate"], env=env,
                         capture_output=True, text=True).stdout
    return next(int(line.split()[-1]) for line in out.splitlines() if line.startswith("total "))


def up_once(env: dict, path: Path) -> dict:
    """``hera up PATH --steps 1``: seconds to its banner and to its exit, and
    its peak resident bytes."""
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "hera", "up", str(path), "--steps", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if first is None and line.startswith("up "):
            first = time.perf_counter() - began
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"hera up {path} failed:\n{''.join(lines)}")
    return {"first": first, "whole": time.perf_counter() - began,
            "peak": usage.ru_maxrss * 1024}


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child_learned(*sys.argv[2:])))
        return
    import psutil

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    args = parser.parse_args()
    ratios, big_first = [], None
    print(f"{'layout':<8} {'agent':<8} {'simulate':>10} {'peak':>10} {'sim/peak':>8} "
          f"{'first step':>10} {'whole':>7}")
    with tempfile.TemporaryDirectory(prefix="hera-estimates-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "HOME": str(root), "HERA_DATA_DIR": str(root / "data"),
               "HERA_RUNTIME_DIR": str(root / "run")}
        listed = json.loads(subprocess.run([sys.executable, "-m", "hera", "layouts", "--json"],
                                           env=env, capture_output=True, text=True,
                                           check=True).stdout)
        need = {row["layout"]: row["bytes"] for row in listed if row["family"] == "abraxas"}
        for layout in args.layouts.split(","):
            if need[layout] > _HEADROOM * psutil.virtual_memory().available:
                print(f"{layout:<8} skipped: its estimate, {need[layout] / 2**30:.1f} GiB, "
                      "leaves no room here")
                continue
            built = root / f"{layout}.json"
            subprocess.run([sys.executable, "-m", "hera", "--layout", layout, "build",
                            str(built)], env=env, check=True, capture_output=True)
            learned = root / f"{layout}.learned.json"
            subprocess.run([sys.executable, __file__, "--child", layout, str(learned)], env=env,
                           check=True, capture_output=True)
            for kind, path in (("built", built), ("learned", learned)):
                estimate = simulated(env, path)
                run = up_once(env, path)
                ratio = estimate / run["peak"]
                ratios.append((ratio, f"{layout} {kind}"))
                if layout == "big" and kind == "learned":
                    big_first = run["first"]
                print(f"{layout:<8} {kind:<8} {estimate / 2**20:>9.1f}M {run['peak'] / 2**20:>9.1f}M "
                      f"{ratio:>8.3f} {run['first']:>9.2f}s {run['whole']:>6.2f}s", flush=True)
    low, high = min(ratios), max(ratios)
    print(f"estimates: simulate/peak {low[0]:.3f} ({low[1]}) to {high[0]:.3f} ({high[1]}) over "
          f"{len(ratios)} agents"
          + ("" if big_first is None else f"; learned big's first step at {big_first:.1f} s"))


if __name__ == "__main__":
    main()
