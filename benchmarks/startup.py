"""Cold-start time of hera's commands, and build/up/down on the example layout.

Each command runs as a fresh process (as a user types it) in a private

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


def fresh_clone() -> None:
    """Time ``./run``, ``./run`` again and ``./test`` in a fresh clone, in a
    private world; no .venv, no compiled step, no agent to start with."""
    repo = Path(__file__).resolve().parent.parent
    root = Path(tempfile.mkdtemp(prefix="hera-clone-"))
    clone = root / "hera"
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HERA_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(HOME=str(root), HERA_DATA_DIR=str(root / "data"),
               HERA_RUNTIME_DIR=str(root / "run"), HERA_CACHE_DIR=str(root / "cache"))
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not p.startswith(sys.prefix))
    rows = []
    for name, cmd in (("./run (first: sets up .venv)", ["./run"]), ("./run (again)", ["./run"]),
                      ("./test (sets up the test extras, runs the suite)", ["./test", "-q"])):
        rows.append((name, timed(cmd, env, clone)))
    print(f"fresh clone of {repo.name} at {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=repo, capture_output=True, text=True).stdout.strip()}, python {sys.version.split()[0]}")
    for name, seconds in rows:
        print(f"{name:<52} {seconds:8.1f} s")


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
    parser.add_argument("--fresh-clone", action="store_true",
                        help="time the README's two commands in a fresh clone instead")
    args = parser.parse_args()
    if args.fresh_clone:
        fresh_clone()
        return

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
        record("python -c 'import torch'", timed([sys.executable, "-c", "import torch"], env, work))
        for command in (["--help"], ["agents"], ["families"], ["layouts"], ["devices"]):
            record("hera " + " ".join(command), timed(HERA + command, env, work))

        # an agent of its own for the first up on an empty cache
        other = subprocess.run(HERA + ["--family", "abraxas", "--layout", "example", "build"],
                               env=env, cwd=work, check=True, capture_output=True,
                               text=True).stdout.split()[1]
        fresh = {**env, "HERA_CACHE_DIR": tempfile.mkdtemp(dir=root, prefix="cache-")}
        record("hera up FILE --steps 1 (first up, empty cache: compiles first)",
               timed(HERA + ["up", f"{other}.json", "--steps", "1", "--silent"], fresh, work))
        subprocess.run(HERA + ["--uuid", other, "destroy", "--yes"], env=env, cwd=work,
                       check=True, stdout=subprocess.DEVNULL)
        (work / f"{other}.json").unlink()

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
