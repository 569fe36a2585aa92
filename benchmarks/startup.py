"""Cold-start time of hera's commands, and build/up/down on the example layout.

Each command runs as a fresh process (as a user types it) in a private
temporary world (HOME, data and runtime dirs), several times; the median
and the minimum are printed. ``python -c pass`` is measured as the floor
that every Python command pays.

    python benchmarks/startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERA = [sys.executable, "-m", "hera"]


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    began = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def wait_running(env: dict[str, str], cwd: Path, agent_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run(HERA + ["agents", "--json"], env=env, cwd=cwd, check=True,
                             capture_output=True, text=True).stdout
        if any(r["id"] == agent_id and r["status"] == "running" for r in json.loads(out)):
            return
        time.sleep(0.05)
    raise SystemExit("agent did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="hera-bench-"))
    work = root / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERA_")}
    env.update(HOME=str(root), HERA_DATA_DIR=str(root / "data"), HERA_RUNTIME_DIR=str(root / "run"))

    results: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(seconds)

    for _ in range(args.repeat):
        record("python -c pass", timed([sys.executable, "-c", "pass"], env, work))
        for command in (["--help"], ["agents"], ["families"], ["layouts"], ["devices"]):
            record("hera " + " ".join(command), timed(HERA + command, env, work))

        began = time.perf_counter()
        out = subprocess.run(HERA + ["--family", "abraxas", "--layout", "example", "build"],
                             env=env, cwd=work, check=True, capture_output=True, text=True).stdout
        record("hera build (example)", time.perf_counter() - began)
        agent_id = out.split()[1]
        record("hera up FILE --steps 1 (first up: install, load, save)",
               timed(HERA + ["up", f"{agent_id}.json", "--steps", "1", "--silent"], env, work))
        record("hera up --steps 2000 (resume, run, save)",
               timed(HERA + ["--uuid", agent_id, "up", "--steps", "2000", "--silent"], env, work))

        up = subprocess.Popen(HERA + ["--uuid", agent_id, "up", "--silent"], env=env, cwd=work)
        wait_running(env, work, agent_id)
        record("hera down (signal, wait for the save)", timed(HERA + ["down"], env, work))
        up.wait(timeout=60)
        subprocess.run(HERA + ["--uuid", agent_id, "destroy", "--yes"], env=env, cwd=work,
                       check=True, stdout=subprocess.DEVNULL)
        (work / f"{agent_id}.json").unlink()

    width = max(len(name) for name in results)
    print(f"{'command':<{width}}  median s  min s   (n={args.repeat}, python {sys.version.split()[0]})")
    for name, values in results.items():
        print(f"{name:<{width}}  {statistics.median(values):8.3f}  {min(values):5.3f}")


if __name__ == "__main__":
    main()
