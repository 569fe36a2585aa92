"""What recording costs: steps/s of an agent up through the Python API
(temporary store), with nothing recorded and with each kind of recording,
interleaved in one process.

- off: no recording;
- rates: rates per population in bins of 100 steps (a call ends every bin);
- traces: the membranes of 10 neurons every 10 steps;
- spikes: every spike of every neuron (the family is called one step at a
  time, and each step's spike counts are read).

Its last line: ``recording: off X steps/s, rates R steps/s, traces T steps/s,
spikes S steps/s`` for the largest layout asked for.

    python benchmarks/recording.py [--layouts example small] [--steps N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import time
from private_store import private_store

KINDS = {
    "off": None,
    "rates": {"rates": 100},
    "traces": {"traces": {"membrane": list(range(1000, 1010))}, "every": 10},
    "spikes": {"spikes": ["*"]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="+", default=["example", "small"])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with private_store() as root:
        import numpy

        import hera

        last = None
        for layout in args.layouts:
            path = hera.build(layout, root / f"{layout}.json")
            with hera.up(path, checkpoint=0) as agent:
                inputs = agent.tensors()["state.input_rates"].numel()
                agent.feed(values=numpy.full(inputs, 0.5))
                agent.step(2000)
                neurons = sum(size for _, size in agent.activity().values())
                speeds: dict[str, list[float]] = {kind: [] for kind in KINDS}
                for _ in range(args.rounds):
                    for kind, what in KINDS.items():
                        if what is not None:
                            if "traces" in what:
                                top = min(neurons, 1010)
                                what = {**what, "traces": {"membrane": list(range(top - 10, top))}}
                            agent.record(**what)
                        began = time.perf_counter()
                        agent.step(args.steps)
                        speeds[kind].append(args.steps / (time.perf_counter() - began))
                        agent.stop_recording()
                median = {kind: statistics.median(v) for kind, v in speeds.items()}
                spread = ", ".join(f"{kind} {min(v):,.0f}-{max(v):,.0f}"
                                   for kind, v in speeds.items())
                print(f"{layout} on cpu [{agent.backend}], {args.rounds} rounds of "
                      f"{args.steps} steps (spread: {spread})")
                last = median
    print("recording: " + ", ".join(f"{kind} {speed:,.0f} steps/s"
                                    for kind, speed in last.items()))


if __name__ == "__main__":
    main()
