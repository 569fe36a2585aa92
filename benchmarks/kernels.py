"""Time hera.kernels' ops per call, on each backend the device offers.

On a CPU only the torch backend is timed (Triton's interpreter is a test
tool, not a backend). On a CUDA device both backends are timed. Each size is
a sheet of ``N`` neurons in groups of ``--group`` with ``K`` synapse slots per
neuron and a fraction ``--rate`` of the neurons spiking per step (the STDP ops
learn at each of those spikes, with a budget that scales about half the
neurons that fire); the dense row is what abraxas computes today for its
delivery, ``(weights * arriving).sum(0)`` over a ``[N, N]`` matrix, for
comparison.

    python benchmarks/kernels.py [--device cuda] [--sizes 2304 65536] [--rate 0.02]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from hera.kernels import triton_usable
from hera.kernels.decay_accumulate import decay_accumulate
from hera.kernels.deliver_spikes import deliver_spikes, take_slot
from hera.kernels.lif_wta_step import lif_wta_step
from hera.kernels.stdp import depress_rows, potentiate_incoming


def per_call(fn, device: torch.device, repeat: int) -> float:
    """Median seconds per call of ``fn()`` over ``repeat`` timed batches."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        fn()
    sync()
    batch, samples = 10, []
    for _ in range(repeat):
        began = time.perf_counter()
        for _ in range(batch):
            fn()
        sync()
        samples.append((time.perf_counter() - began) / batch)
    return statistics.median(samples)


def incoming_table(targets: torch.Tensor, neurons: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The transpose of a synapse table whose slots are all live: for each
    neuron the flat positions of the synapses onto it and their source rows,
    padded with -1 (``hera.kernels.stdp``'s ``incoming_weight`` and
    ``incoming_source``)."""
    flat = targets.reshape(-1).long()
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=neurons)
    column = torch.arange(flat.numel()) - (torch.cumsum(counts, 0) - counts)[flat[order]]
    weight = torch.full((neurons, int(counts.max())), -1, dtype=torch.int32)
    weight[flat[order], column] = order.to(torch.int32)
    source = torch.where(weight >= 0, weight // targets.shape[1], -1).to(torch.int32)
    return weight, source


def bench_size(neurons: int, slots: int, length: int, group: int, rate: float,
               backends: list[str], device: torch.device, repeat: int) -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    spiking = max(1, round(neurons * rate))
    targets = torch.randint(0, neurons, (neurons, slots), generator=g, dtype=torch.int32)
    weights = torch.rand(neurons, slots, generator=g) * 0.5
    delays = torch.randint(1, length, (slots,), generator=g, dtype=torch.int32)
    sources = torch.randperm(neurons, generator=g)[:spiking].to(torch.int32)
    trace, events = torch.rand(neurons, generator=g), (torch.rand(neurons, generator=g) < rate)
    state = [torch.randn(neurons, generator=g), torch.zeros(neurons, dtype=torch.int32),
             torch.zeros(neurons), torch.randn(neurons, generator=g),
             torch.randn(neurons, generator=g) * 0.3]
    incoming = incoming_table(targets, neurons)
    (targets, weights, delays, sources, trace, events) = (
        x.to(device) for x in (targets, weights, delays, sources, trace, events.float()))
    incoming = [x.to(device) for x in incoming]
    state = [x.to(device) for x in state]
    ring = torch.zeros(length, neurons, dtype=torch.int32, device=device)
    out = torch.empty(neurons, device=device)
    rows = []
    for backend in backends:
        step = iter(range(10**9))
        ops = {
            "decay_accumulate": lambda: decay_accumulate(trace, 0.95, events, backend=backend),
            "deliver_spikes": lambda: deliver_spikes(ring, next(step), sources, targets,
                                                     weights, delays, backend=backend),
            "take_slot": lambda: take_slot(ring, next(step), out=out, backend=backend),
            "lif_wta_step": lambda: lif_wta_step(*state, decay=0.95, threshold=1.0,
                                                 refractory_steps=2, theta_plus=0.05,
                                                 theta_decay=0.999, group_size=group,
                                                 out=out, backend=backend),
            "depress_rows": lambda: depress_rows(weights, targets, sources, trace, 1e-4, 1.0,
                                                 backend=backend),
            # in-degree about K, weights about 0.25: a budget of K / 4 splits them
            "potentiate_incoming": lambda: potentiate_incoming(
                weights, trace, sources, *incoming, 1e-4, 1.0, slots / 4, 65536.0,
                backend=backend),
        }
        for name, fn in ops.items():
            rows.append((name, neurons, slots, backend, per_call(fn, device, repeat)))
    if neurons * neurons <= 2**26:  # the dense matrix fits comfortably
        dense = torch.rand(neurons, neurons, device=device)
        arriving = torch.zeros(neurons, neurons, device=device)
        arriving[sources.long()] = 1.0
        rows.append(("dense delivery (abraxas today)", neurons, neurons, "torch",
                     per_call(lambda: (dense * arriving).sum(0), device, repeat)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[108, 2304, 36864])
    parser.add_argument("--slots", type=int, default=128, help="synapse slots per neuron (K)")
    parser.add_argument("--length", type=int, default=8, help="ring slots (longest delay + 1)")
    parser.add_argument("--group", type=int, default=12, help="winner-take-all group size")
    parser.add_argument("--rate", type=float, default=0.02, help="fraction spiking per step")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    device = torch.device(args.device)
    backends = ["torch"] + (["triton"] if device.type == "cuda" and triton_usable(device) else [])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"K={args.slots}, L={args.length}, group={args.group}, rate={args.rate}\n")
    print("| op | N | K | backend | µs/call |\n| --- | ---: | ---: | --- | ---: |")
    for neurons in args.sizes:
        neurons = math.ceil(neurons / args.group) * args.group
        for op, n, k, backend, seconds in bench_size(neurons, args.slots, args.length,
                                                     args.group, args.rate, backends, device,
                                                     args.repeat):
            print(f"| {op} | {n} | {k} | {backend} | {seconds * 1e6:,.1f} |")


if __name__ == "__main__":
    main()
