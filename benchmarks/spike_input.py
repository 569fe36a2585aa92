"""What exact input spikes cost, against a step of the example layout.

In one process, on the default CPU backend (the compiled step where it
builds), with spikes on a few channels every step:

- a step alone: ``run(1)``;
- feeding one step's spikes as hera does with a ``spikes`` line: the line
  through the family's input hook (parsing, checking, setting);
- the array path: ``run(N, spikes=raster)``, per step, beside ``run(N)``
  and beside an empty raster (its own cost, without the extra spikes' work).

Its last line: ``spike input: line S us, step T us, ratio R; raster P us/step,
empty raster E us/step, no raster Q us/step``.

    python benchmarks/spike_input.py [--steps N] [--repeat R]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hera.plugins import load_plugins
from hera_family_abraxas import layouts, model


def per_call(action, calls: int) -> float:
    """Microseconds per call of ``action``, the best of five rounds."""
    rounds = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(calls):
            action()
        rounds.append((time.perf_counter() - began) / calls * 1e6)
    return min(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000, help="steps per timed round")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    d = layouts.definition_for("example", {})
    sheet = model.Sheet(d, model.zero_parameters(d), None, "cpu", seed=1)
    hook = load_plugins().family_hooks("abraxas").hera_encode_input
    line = "spikes 3 7 11"
    raster = torch.zeros(args.steps, d["inputs"], dtype=torch.bool)
    raster[:, [3, 7, 11]] = True
    empty = torch.zeros_like(raster)
    sheet.run(2000)  # past the first, quiet steps

    rows = []
    for _ in range(args.repeat):
        step = per_call(lambda: sheet.run(1), args.steps // 10)
        feed = per_call(lambda: hook(agent=sheet, line=line), args.steps // 10)
        plain = per_call(lambda: sheet.run(args.steps), 1) / args.steps
        rastered = per_call(lambda: sheet.run(args.steps, spikes=raster), 1) / args.steps
        blank = per_call(lambda: sheet.run(args.steps, spikes=empty), 1) / args.steps
        rows.append((step, feed, plain, rastered, blank))
    step, feed, plain, rastered, blank = (statistics.median(column) for column in zip(*rows))
    print(f"abraxas/example on {sheet.backend}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.repeat}")
    print(f"{'one step, run(1)':<44} {step:8.2f} us")
    print(f"{'one spikes line through the input hook':<44} {feed:8.2f} us")
    print(f"{'a step in run(N)':<44} {plain:8.2f} us")
    print(f"{'a step in run(N, spikes=raster)':<44} {rastered:8.2f} us")
    print(f"{'a step in run(N, spikes=empty raster)':<44} {blank:8.2f} us")
    print(f"spike input: line {feed:.1f} us, step {step:.1f} us, ratio {feed / step:.2f}; "
          f"raster {rastered:.2f} us/step, empty raster {blank:.2f} us/step, "
          f"no raster {plain:.2f} us/step")


if __name__ == "__main__":
    main()
