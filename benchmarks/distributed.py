"""Steps per second of one abraxas agent on 1 and on 2 ranks of this
machine, and the bytes its ranks exchange.

For each layout (``small``, ``coba`` = ``medium``, ``microcircuit`` =
``big``, as built: zero weights, default input) the sheet split over
ranks (``hera_family_abraxas.sharded``) runs on 1 rank, then on 2, each a
real process joined by gloo over TCP on this machine, the cores shared out
(1 rank: all of them; 2 ranks: half each). After warm-up steps, each run is
timed between two barriers; the figure is the median of ``--repeat`` timed
runs. For reference the same layout in one process with the compiled CPU
step (``cpp``, what ``hera up`` uses on a CPU) is timed too: the split
sheet steps with the kernels' PyTorch references.

Bytes exchanged: what the ranks put into the window's all_gather, all
ranks together, per step (the winners of the groups another rank's halo
holds: one byte each) and per minimum-delay window (two steps, one
collective).

The last line, for ``microcircuit``:
``distributed: 1 rank X steps/s, 2 ranks Y steps/s, exchanged B bytes/step``.

    python benchmarks/distributed.py [--layouts small,coba,microcircuit] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
import types

#: Timed steps per run, by layout (``big`` steps about once a second here).
STEPS = {"small": 300, "coba": 300, "microcircuit": 8}
WARM = {"small": 20, "coba": 20, "microcircuit": 2}


def _rank(rank: int, ranks: int, port: int, layout: str, steps: int, warm: int, repeat: int,
          threads: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    from hera_family_abraxas import layouts, model
    from hera_family_abraxas.sharded import ShardedSheet

    torch.set_num_threads(threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=ranks)
    try:
        d = layouts.definition_for(layout, {})
        tensors = model.built_parameters(d) if rank == 0 else None
        sheet = ShardedSheet(d, tensors, None, "cpu", 1, types.SimpleNamespace(
            rank=rank, ranks=ranks, group=None))
        sheet.run(warm)
        rates = []
        for _ in range(repeat):
            dist.barrier()
            began = time.perf_counter()
            sheet.run(steps)
            dist.barrier()
            rates.append(steps / (time.perf_counter() - began))
        if rank == 0:
            with open(out, "w") as f:
                f.write(f"{statistics.median(rates)} {sheet.bytes_per_step} {sheet.window}\n")
    finally:
        dist.destroy_process_group()


def on_ranks(ranks: int, layout: str, steps: int, warm: int, repeat: int
             ) -> tuple[float, int, int]:
    """``(steps/s, bytes/step, steps/window)`` of ``layout`` on ``ranks``."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = max(1, (os.cpu_count() or 1) // ranks)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result")
        mp.spawn(_rank, args=(ranks, port, layout, steps, warm, repeat, threads, out),
                 nprocs=ranks)
        rate, sent, window = open(out).read().split()
    return float(rate), int(sent), int(window)


def one_process_cpp(layout: str, steps: int, warm: int, repeat: int) -> float | None:
    """Steps/s of the compiled CPU step in one process (None: it does not build here)."""
    import torch

    from hera_family_abraxas import layouts, model
    from hera_family_abraxas.cpu_backend import available

    if available() is None:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    d = layouts.definition_for(layout, {})
    sheet = model.Sheet(d, model.built_parameters(d), None, "cpu", 1, backend="cpp")
    sheet.run(warm)
    rates = []
    for _ in range(repeat):
        began = time.perf_counter()
        sheet.run(steps)
        rates.append(steps / (time.perf_counter() - began))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default="small,coba,microcircuit")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}", flush=True)
    last = None
    for layout in args.layouts.split(","):
        steps, warm = STEPS.get(layout, 100), WARM.get(layout, 10)
        one, _, _ = on_ranks(1, layout, steps, warm, args.repeat)
        two, sent, window = on_ranks(2, layout, steps, warm, args.repeat)
        cpp = one_process_cpp(layout, steps, warm, args.repeat)
        print(f"{layout}: 1 rank {one:.1f} steps/s, 2 ranks {two:.1f} steps/s "
              f"({two / one:.2f}x); exchanged {sent} bytes/step, {sent * window} bytes per "
              f"{window}-step window (one all_gather)"
              + ("" if cpp is None else f"; one process, cpp step: {cpp:.1f} steps/s"),
              flush=True)
        last = (one, two, sent)
    one, two, sent = last
    print(f"distributed: 1 rank {one:.1f} steps/s, 2 ranks {two:.1f} steps/s, "
          f"exchanged {sent} bytes/step")


if __name__ == "__main__":
    main()
