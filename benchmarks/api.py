"""What the Python API costs a program that feeds an agent every step.

An ``example`` agent is built and upped through ``hera.up`` in a temporary
store (its own HOME and data dirs; nothing of yours is touched), on the
default CPU backend. Timed in the same process, interleaved round by round:

- a bare step: ``agent.step()``, on input of the same kind fed once before
  the round (input spikes make a step dearer, however they are fed);
- one feed plus one step: ``agent.feed(values=array)`` then ``agent.step()``,
  with a fresh array of input values each time (as a program feeding, say,
  a stream of images would);
- for reference, the family's own step without the API (``hera_step``).

Each figure is the median over rounds of the mean per call. The last line:
``api: feed+step X us, bare step Y us, ratio R``.

    python benchmarks/api.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import time
from private_store import private_store


def per_call(action, calls: int) -> float:
    """Microseconds per call of ``action`` over ``calls`` calls."""
    began = time.perf_counter()
    for _ in range(calls):
        action()
    return (time.perf_counter() - began) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="calls per timed round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    with private_store() as root:
        import numpy

        import hera

        path = hera.build("example", root / "agent.json")
        with hera.up(path, checkpoint=0) as agent:
            inputs = agent.tensors()["state.input_rates"].numel()
            values = numpy.random.default_rng(1).random((args.calls, inputs))
            session = agent._session  # the family's step without the API's wrapping
            hook, handle = session._step_hook, session.handle
            agent.step(2000)  # past the first, quiet steps
            bare, fed, family_only = [], [], []
            for round_ in range(args.rounds):
                # the bare steps run on input of the same kind, fed once:
                # more input spikes make a step dearer, whoever feeds them
                agent.feed(values=values[round_])
                bare.append(per_call(agent.step, args.calls))
                rows = iter(values)
                fed.append(per_call(lambda: (agent.feed(values=next(rows)), agent.step()),
                                    args.calls))
                family_only.append(per_call(  # on the last row fed
                    lambda: hook(agent=handle, steps=1), args.calls))
            backend = agent.backend
    x, y, z = (statistics.median(v) for v in (fed, bare, family_only))
    print(f"example on cpu [{backend}], {args.rounds} rounds of {args.calls} calls "
          f"(spread of feed+step {min(fed):.1f}-{max(fed):.1f} us, bare "
          f"{min(bare):.1f}-{max(bare):.1f} us); the family's step alone {z:.1f} us")
    print(f"api: feed+step {x:.1f} us, bare step {y:.1f} us, ratio {x / y:.2f}")


if __name__ == "__main__":
    main()
