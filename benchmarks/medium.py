"""Seconds per 10,000 steps of the ``medium`` layout (the size of the
Vogels-Abbott COBA benchmark network: 4,000 neurons, ~0.3M synapses), the
figure Brian2 and GeNN report for that network.

Each point builds a fresh sheet, runs a warm-up, then times 10,000 steps in
one call, five times, and prints the times, the best, and the firing rate
over the timed steps.

    python benchmarks/medium.py [--backend cpp|torch] [--noise 0,0.1,0.3] [--frozen]
"""

from __future__ import annotations

import argparse
import time

from hera_family_abraxas import layouts, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cpp", choices=("cpp", "torch"))
    parser.add_argument("--noise", default="0,0.1,0.3")
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--frozen", action="store_true",
                        help="plasticity off (a_plus = a_minus = 0), as in the original benchmark")
    args = parser.parse_args()
    for noise in (float(x) for x in args.noise.split(",")):
        overrides = {"noise": noise}
        if args.frozen:
            overrides.update(a_plus=0.0, a_minus=0.0)
        d = layouts.definition_for("medium", overrides)
        sheet = model.Sheet(d, model.zero_parameters(d), None, "cpu", 1, backend=args.backend)
        sheet.run(args.warmup)
        sheet.take_output()
        times = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            sheet.run(10_000)
            times.append(time.perf_counter() - began)
        rate = sum(sheet.take_output()) / (10_000 * args.repeat) / layouts.neuron_count(d)
        print(f"medium {args.backend} noise {noise:.2f}{' frozen' if args.frozen else ''}: "
              f"10k steps {' '.join(f'{t:.3f}' for t in times)} s (best {min(times):.3f}); "
              f"rate {rate:.4f} spikes/neuron/step")


if __name__ == "__main__":
    main()
