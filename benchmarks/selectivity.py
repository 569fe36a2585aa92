"""Do the general-purpose layouts, as built, learn their kind of input?
A repeated rate pattern among random patterns of the same density.

Their input is rate-coded: one value per input channel (a line of numbers).
An agent of each layout, no override unless ``--set`` gives one, built as
``hera build`` builds it (``built_parameters``), is shown ``--rounds``
rounds of one fixed pattern (half of its channels at rate 1, the rest at
0) and one fresh random pattern of the same density, ``--steps`` steps
each, with plasticity on. Then, frozen, it is shown the pattern and
``--probes`` new random patterns (never seen), and the output area's
spikes are counted for each. The same agent frozen from the start is the
control: with nothing learned, its output answers the pattern as it
answers the others (noise and built weights only).

Per layout and seed: the ratio of output spikes per presentation, pattern
over new patterns, learned and in the control. Over the seeds: the mean
and the range.

    python benchmarks/selectivity.py [--layouts example,small,medium] [--seeds 5]
        [--rounds 60] [--steps 50] [--probes 20] [--set NAME=VALUE ...]

Its last line: ``selectivity: L1 R1, L2 R2, ... (pattern over new patterns,
frozen test; control C1, C2, ...)``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from benchmark_options import add_set_option, overrides as parse_overrides

from hera_family_abraxas import layouts, model


def patterns(inputs: int, count: int, g: torch.Generator) -> list[list[float]]:
    """``count`` random patterns: half the channels (rounded down, at least
    one) at 1, the others at 0."""
    on = max(1, inputs // 2)
    found = []
    for _ in range(count):
        values = torch.zeros(inputs)
        values[torch.randperm(inputs, generator=g)[:on]] = 1.0
        found.append(values.tolist())
    return found


def response(sheet: model.Sheet, values: list[float], steps: int) -> int:
    """Output spikes while ``values`` drive the input area for ``steps``."""
    sheet.set_input(values)
    sheet.take_output()
    sheet.run(steps)
    return int(sum(sheet.take_output()))


def run_seed(layout: str, overrides: dict, seed: int, rounds: int, steps: int,
             probes: int) -> dict:
    d = layouts.definition_for(layout, overrides)
    g = torch.Generator().manual_seed(seed)
    pattern, *others = patterns(d["inputs"], 1 + rounds + probes, g)
    training, fresh = others[:rounds], others[rounds:]
    result = {}
    for name, plastic in (("learned", True), ("control", False)):
        sheet = model.Sheet(d, model.built_parameters(d), None, "cpu", seed=seed)
        sheet.set_frozen(not plastic)
        began = time.perf_counter()
        for other in training:
            response(sheet, pattern, steps)
            response(sheet, other, steps)
        seconds = time.perf_counter() - began
        sheet.set_frozen(True)
        on_pattern = sum(response(sheet, pattern, steps) for _ in range(probes)) / probes
        on_others = sum(response(sheet, p, steps) for p in fresh) / probes
        result[name] = on_pattern / on_others if on_others else float("inf")
        result[f"{name}_spikes"] = (on_pattern, on_others)
        result[f"{name}_seconds"] = seconds
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default="example,small,medium")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--probes", type=int, default=20)
    add_set_option(parser)
    args = parser.parse_args()
    os.environ.setdefault("HERA_ABRAXAS_BACKEND", "cpp")
    overrides = parse_overrides(args.set)
    print(f"overrides {overrides or 'none'}; {args.rounds} rounds of the pattern and a random "
          f"pattern, {args.steps} steps each; frozen test on {args.probes} presentations; "
          f"backend {os.environ['HERA_ABRAXAS_BACKEND']}")
    summary = []
    for layout in args.layouts.split(","):
        ratios, controls = [], []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            r = run_seed(layout, overrides, seed, args.rounds, args.steps, args.probes)
            ratios.append(r["learned"])
            controls.append(r["control"])
            (lp, lo), (cp, co) = r["learned_spikes"], r["control_spikes"]
            print(f"{layout} seed {seed}: learned {lp:.1f} vs {lo:.1f} spikes (ratio "
                  f"{r['learned']:.2f}), control {cp:.1f} vs {co:.1f} (ratio "
                  f"{r['control']:.2f}); training {r['learned_seconds']:.1f} s")
        print(f"{layout}: ratio {statistics.mean(ratios):.2f} (range {min(ratios):.2f}-"
              f"{max(ratios):.2f}), control {statistics.mean(controls):.2f} (range "
              f"{min(controls):.2f}-{max(controls):.2f})")
        summary.append((layout, statistics.mean(ratios), statistics.mean(controls)))
    print("selectivity: " + ", ".join(f"{name} {r:.2f}" for name, r, _ in summary)
          + " (pattern over new patterns, frozen test; control "
          + ", ".join(f"{c:.2f}" for _, _, c in summary) + ")")


if __name__ == "__main__":
    main()
