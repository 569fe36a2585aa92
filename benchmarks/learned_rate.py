"""Does a learning sheet settle? The firing rate and the cost of steps over
100k plastic steps of a layout as built (default ``medium``).

An agent of the layout, no override unless ``--set`` gives one, runs with
plasticity on from zero weights, on its idle input. Every window of 10k
steps prints the rate of the output area (spikes per neuron per step; in
``medium``, one layer, that is every neuron), the wall time of the window
and the mean weights. The rate of the last window is compared
with the layout's ``target_rate`` (the homeostasis's target), and the cost
of the last window with that of the first.

    python benchmarks/learned_rate.py [--layout medium] [--steps 100000] [--window 10000]
        [--seed 1] [--set NAME=VALUE ...]

Its last line: ``learned regime: rate R (target T), cost ratio X``.
"""

from __future__ import annotations

import argparse
import time

import torch
from benchmark_options import add_set_option, overrides as parse_overrides

from hera_family_abraxas import layouts, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", default="medium")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    add_set_option(parser)
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    d = layouts.definition_for(args.layout, overrides)
    sheet = model.Sheet(d, model.zero_parameters(d), None, "cpu", seed=args.seed)
    neurons = layouts.output_size(d)
    target = float(d.get("target_rate", 0.0))
    print(f"layout {args.layout}, overrides {overrides or 'none'}: {neurons} output neurons, "
          f"backend {sheet.backend}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'steps':>8} {'rate':>9} {'window s':>9} {'mean w_in':>10} {'mean w':>9}")
    costs, rates = [], []
    for done in range(args.window, args.steps + 1, args.window):
        spikes_before = _spikes(sheet)
        began = time.perf_counter()
        sheet.run(args.window)
        costs.append(time.perf_counter() - began)
        rates.append((_spikes(sheet) - spikes_before) / (neurons * args.window))
        print(f"{done:8d} {rates[-1]:9.5f} {costs[-1]:9.3f} "
              f"{sheet.input_weights.mean().item():10.5f} {sheet.weights.mean().item():9.5f}",
              flush=True)
    print(f"learned regime: rate {rates[-1]:.5f} (target {target:g}), "
          f"cost ratio {costs[-1] / costs[0]:.2f}")


def _spikes(sheet: model.Sheet) -> int:
    """Output spikes so far (the sheet counts them until its output is taken,
    which this never does)."""
    return int(sheet.output_counts.sum())


if __name__ == "__main__":
    main()
