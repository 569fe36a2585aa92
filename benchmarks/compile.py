"""Does torch.compile help the torch backend on the CPU?

The torch backend is a few dozen small PyTorch operations per step, so its
cost on small and medium sheets is per-operation overhead. This compiles the
dense per-neuron ops of the step (the counter-based random numbers, the
neuron update with competition, the traces) with ``torch.compile`` and
times three sheets side by side in one process, at the same firing rate:
eager torch, torch with the compiled dense ops, and the compiled C++ step
(``cpp``). The event-driven ops (delivery, plasticity) take the spiking rows
found by ``nonzero`` each step, whose count changes every step: they stay
eager (compiling them recompiles per count or breaks the graph). It also
says whether the compiled ops gave the same bits as eager torch after the
timed steps.

    python benchmarks/compile.py [--layouts example,small,medium] [--steps N]
"""

from __future__ import annotations

import argparse
import time

import torch

from hera.kernels.counter_random import reference
from hera.kernels.counter_random.keys import key_halves
from hera_family_abraxas import layouts, model


def sheet_for(name: str, backend: str, compiled: bool) -> model.Sheet:
    d = layouts.definition_for(name, {"noise": 0.35})
    sheet = model.Sheet(d, model.zero_parameters(d), None, "cpu", seed=1, backend=backend)
    if compiled:
        # dynamic=False: the shapes of these ops never change for a sheet.
        # The key changes every step: it goes in as tensors, not constants.
        halves = torch.compile(reference.fill_halves, dynamic=False)
        sheet._fill_random = lambda out, key, normal: halves(
            out, *map(torch.tensor, key_halves(key)), normal)
        sheet._lif_wta_step = torch.compile(sheet._lif_wta_step, dynamic=False)
        sheet._decay_accumulate = torch.compile(sheet._decay_accumulate, dynamic=False)
    return sheet


def timed(sheet: model.Sheet, steps: int) -> float:
    began = time.perf_counter()
    sheet.run(steps)
    return steps / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default="example,small,medium")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'layout':>8} {'torch':>10} {'compiled':>10} {'cpp':>10} {'compile s':>10}  bits")
    for name in args.layouts.split(","):
        eager = sheet_for(name, "torch", False)
        fast = sheet_for(name, "torch", True)
        cpp = sheet_for(name, "cpp", False)
        began = time.perf_counter()
        fast.run(3)  # compiles (and recompiles once for the second trace's length)
        compile_s = time.perf_counter() - began
        eager.run(3)
        cpp.run(3)
        rates = [timed(s, args.steps) for s in (eager, fast, cpp)]
        a, b = eager.snapshot(), fast.snapshot()
        same = all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors) and all(
            torch.equal(a.state.tensors[k], b.state.tensors[k]) for k in a.state.tensors)
        print(f"{name:>8} {rates[0]:>10,.0f} {rates[1]:>10,.0f} {rates[2]:>10,.0f} "
              f"{compile_s:>10.1f}  {'same' if same else 'DIFFERENT'}", flush=True)


if __name__ == "__main__":
    main()
