"""Instance files at disk speed: save and load MB/s beside ``cp`` of the same
file, and peak memory against the tensors' size, for each layout.

For each abraxas layout that fits in memory, a child process builds the
agent, brings it to life, runs it a few steps, and fills its learned tensors
with random values, as weeks of learning leave them (dense: nothing to
compress, nothing all zero). It then saves the agent (timed, with its
resident memory sampled), and ``cp`` copies that file (timed, and timed
again with ``sync`` of the copy: a save is on the disk when it returns, a
plain ``cp`` is in the page cache); a fresh child loads it (timed,
sampled). Speeds are tensor bytes per second for all of them, so their
ratios are ratios of times (the file itself is about 4/3 of the tensors:
base64). Each figure is the median of ``--repeat`` runs. The last line's
``cp`` is the plain copy.

``fresh mem`` is how fast a fresh process writes that many bytes of new
memory: the floor under a load, which must fault its tensors' memory in.

``peak/tensors`` is the resident memory at the peak of a save or a load,
above what the process held before it (for a save: before the agent's
tensors were taken), over the tensors' bytes: 1.00 means no memory beyond
the tensors themselves.

    python benchmarks/io.py [--layouts example,small,...] [--repeat N] [--dir DIR]

The last line is the largest layout's figure, in the words of its issue.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

LAYOUTS = ["example", "digits", "pattern", "small", "medium", "big", "large"]

# Leave this share of the memory available to everything but the agent.
_HEADROOM = 0.6


class PeakRss:
    """Samples this process's resident memory every few milliseconds."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.002)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def child_save(layout: str, path: Path, seed: int) -> dict:
    """Build, run and densify an agent of ``layout``; save it to ``path``."""
    import psutil

    from learned_agent import learned_instance

    instance, tensors = learned_instance(layout, path.with_suffix(".built.json"), seed)
    import gc

    gc.collect()
    before = psutil.Process().memory_info().rss
    with PeakRss() as rss:
        began = time.perf_counter()
        instance.write(path)
        seconds = time.perf_counter() - began
    return {"tensors": tensors, "save_s": seconds, "file": path.stat().st_size,
            "save_extra": rss.peak - before}


def child_load(path: Path) -> dict:
    """Load ``path`` in a fresh process."""
    import psutil

    import hera.instance  # noqa: F401 - imports are not the load's memory
    import numpy  # noqa: F401
    import pybase64  # noqa: F401
    import xxhash  # noqa: F401

    from hera.instance import InstanceFile

    before = psutil.Process().memory_info().rss
    with PeakRss() as rss:
        began = time.perf_counter()
        instance = InstanceFile.read(path)
        seconds = time.perf_counter() - began
    del instance
    return {"load_s": seconds, "load_extra": rss.peak - before}


def child_fill(nbytes: int) -> dict:
    """Write ``nbytes`` of fresh memory in a fresh process: the floor under
    any load, which must fault in the tensors' memory (on some virtual
    machines that alone runs at a few hundred MB/s)."""
    import numpy as np

    began = time.perf_counter()
    memory = np.zeros(nbytes, dtype=np.uint8)
    memory[:] = 1
    return {"fill_s": time.perf_counter() - began}


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def estimates() -> dict[str, int]:
    """abraxas's estimate of each layout's bytes (``hera layouts``)."""
    out = subprocess.run([sys.executable, "-m", "hera", "layouts", "--json"], check=True,
                         capture_output=True, text=True).stdout
    return {r["layout"]: r["bytes"] for r in json.loads(out) if r["family"] == "abraxas"}


def fits(need: int | None) -> bool:
    """Whether an estimate leaves room in the memory available."""
    import psutil

    return need is None or need < _HEADROOM * psutil.virtual_memory().available


def measure(layout: str, where: Path, repeat: int) -> dict | None:
    path = where / f"{layout}.json"
    rows = []
    for seed in range(1, repeat + 1):
        saved = run_child("save", layout, str(path), str(seed))
        copy = path.with_name(path.name + ".cp")
        began = time.perf_counter()
        subprocess.run(["cp", str(path), str(copy)], check=True)
        cp_s = time.perf_counter() - began
        subprocess.run(["sync", str(copy)], check=True)  # what a save costs: on the disk
        cp_sync_s = time.perf_counter() - began
        copy.unlink()
        loaded = run_child("load", str(path))
        filled = run_child("fill", str(saved["tensors"]))
        rows.append({**saved, **loaded, **filled, "cp_s": cp_s, "cp_sync_s": cp_sync_s})
        for leftover in where.glob(f"{layout}*"):
            leftover.unlink()
    tensors = rows[0]["tensors"]
    mb = tensors / 1e6

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    return {
        "layout": layout, "tensors_mb": mb, "file_mb": rows[0]["file"] / 1e6,
        "save": mb / median("save_s"), "load": mb / median("load_s"), "cp": mb / median("cp_s"),
        "cp_sync": mb / median("cp_sync_s"), "fill": mb / median("fill_s"),
        "save_vs_cp": median("save_s") / median("cp_s"),
        "save_vs_cp_sync": median("save_s") / median("cp_sync_s"),
        "load_vs_cp": median("load_s") / median("cp_s"),
        "peak": max(1.0 + max(r["save_extra"] for r in rows) / tensors,
                    max(r["load_extra"] for r in rows) / tensors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the files go (default: a temporary folder)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "save":
            result = child_save(rest[0], Path(rest[1]), int(rest[2]))
        elif kind == "load":
            result = child_load(Path(rest[0]))
        else:
            result = child_fill(int(rest[0]))
        print(json.dumps(result))
        return
    where = Path(tempfile.mkdtemp(prefix="hera-io-", dir=args.dir))
    os.environ.setdefault("HERA_DATA_DIR", str(where / "data"))
    results = []
    try:
        print(f"{'layout':<9} {'tensors':>10} {'file':>10} {'save':>10} {'load':>10} {'cp':>10} "
              f"{'cp+sync':>10} {'fresh mem':>10} {'save/cp':>8} {'save/cp+sync':>13} "
              f"{'load/cp':>8} {'peak/tensors':>13}")
        needs = estimates()
        for layout in args.layouts.split(","):
            if not fits(needs.get(layout)):
                print(f"{layout:<9} skipped: its estimate does not fit the memory available")
                continue
            row = measure(layout, where, args.repeat)
            results.append(row)
            print(f"{layout:<9} {row['tensors_mb']:8.1f}MB {row['file_mb']:8.1f}MB "
                  f"{row['save']:6.0f}MB/s {row['load']:6.0f}MB/s {row['cp']:6.0f}MB/s "
                  f"{row['cp_sync']:6.0f}MB/s {row['fill']:6.0f}MB/s {row['save_vs_cp']:8.2f} "
                  f"{row['save_vs_cp_sync']:13.2f} {row['load_vs_cp']:8.2f} {row['peak']:13.3f}",
                  flush=True)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    if results:
        last = max(results, key=lambda r: r["tensors_mb"])
        print(f"io: save {last['save']:.0f} MB/s, load {last['load']:.0f} MB/s, "
              f"cp {last['cp']:.0f} MB/s, peak/tensors {last['peak']:.2f}")


if __name__ == "__main__":
    main()
