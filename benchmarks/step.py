"""Steps per second of the abraxas sheet, per layout and backend, against
firing rate.

For each layout and each backend that can run here (torch and the compiled
cpp step on the CPU; torch and triton on a CUDA GPU), the intrinsic noise is
swept to change the firing rate; each point runs a warm-up, then timed steps
in one call, and prints the firing rate measured just after (spikes per
neuron per step), steps/s and synaptic events/s (spikes × their outgoing
synapses, per second), and the bytes a step must move at that rate
(``bytes_per_step``) as GB/s and as a share of the device's copy bandwidth,
measured in the same process (``copy_bandwidth``).

The ``ns/event`` column is the time of a step per synaptic event: what a
spike costs per outgoing synapse, learning included.

    python benchmarks/step.py [--layouts example,small,medium] [--steps N]
                              [--backends torch,cpp] [--set NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmark_options import add_set_option, overrides
from hera_family_abraxas import layouts, model


def fan_out(d: dict) -> float:
    """Mean outgoing synapses per neuron (input channels not counted)."""
    neuron_synapses = layouts.synapse_count(d) - d["inputs"] * d["width"] * d["height"] * d["cells"]
    return neuron_synapses / layouts.neuron_count(d)


def bytes_per_step(d: dict, rate: float) -> float:
    """The least memory traffic of one step at firing ``rate``: every
    element each op must read or write, once (what an ideal kernel moves;
    caches can only lower it on the CPU).

    Per neuron: take_slot reads and clears the ring's row and writes the
    current (12 B); the noise is written and read (8 B); lif_wta_step reads
    membrane, refractory, threshold, current and noise and writes membrane,
    refractory, threshold and the spike (36 B); the pre- and postsynaptic
    traces are read and written with the spikes read (24 B). Per spiking
    neuron, for each of its ``K`` outgoing slots: delivery reads target and
    weight and adds into the ring (16 B), depression reads target, weight
    and trace and writes the weight (16 B); for each of its ``J`` incoming
    slots, potentiation reads position, source, weight and trace twice (two
    passes) and writes the weight (28 B). Input channels spike at the idle
    rate and do the same over their ``F`` first-layer slots, without targets.
    """
    n, k, f = layouts.neuron_count(d), layouts.slots_per_row(d), layouts.first_layer_size(d)
    j, inputs = d["inputs"] + k, d["inputs"]
    dense = n * (12 + 8 + 36 + 24) + inputs * 16
    learning = (d["a_minus"] > 0, d["a_plus"] > 0)
    per_spike = k * (16 + 16 * learning[0]) + j * 28 * learning[1]
    per_input = f * (12 + 12 * learning[0])
    return dense + rate * n * per_spike + d["input_rate"] * inputs * per_input


def copy_bandwidth(device: str, megabytes: int = 256) -> float:
    """Bytes per second a device-to-device tensor copy moves (read + write),
    best of five: the bandwidth the step is measured against."""
    src = torch.ones(megabytes * 2**18, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        began = time.perf_counter()
        dst.copy_(src)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - began)
    return 2 * src.numel() * 4 / best


def measure(name: str, device: str, backend: str, noise: float, steps: int,
            overrides: dict | None = None) -> dict:
    d = layouts.definition_for(name, {**(overrides or {}), "noise": noise})
    sheet = model.Sheet(d, model.zero_parameters(d), None, device, seed=1, backend=backend)
    sheet.run(max(5, steps // 10))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    began = time.perf_counter()
    sheet.run(steps)  # one call: the compiled step runs it as one loop
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    # The rate, untimed, just after: post_trace = decay * old + spikes gives
    # each step's spikes exactly enough to count.
    probe, spikes = min(steps, 200), 0.0
    before = sheet.post_trace.clone()
    for _ in range(probe):
        sheet.run(1)
        spikes += float((sheet.post_trace - before * sheet.decay_trace).round().sum())
        before = sheet.post_trace.clone()
    spikes *= steps / probe
    neurons = layouts.neuron_count(d)
    rate = spikes / steps / neurons
    return {"layout": name, "device": device, "backend": backend, "noise": noise,
            "rate": rate, "steps_per_s": steps / seconds,
            "events_per_s": spikes * fan_out(d) / seconds,
            "bytes_per_s": bytes_per_step(d, rate) * steps / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default="example,small,medium")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--noise", default="0.1,0.35,1.0")
    parser.add_argument("--backends", default="torch,cpp,triton",
                        help="the backends to measure, of those that can run here")
    add_set_option(parser)
    args = parser.parse_args()
    changed = overrides(args.set)
    if changed:
        print(f"parameters: {changed}")
    wanted = set(args.backends.split(","))
    targets = [("cpu", "torch")]
    try:
        from hera_family_abraxas.cpu_backend import compiled

        compiled()
        targets.append(("cpu", "cpp"))
    except RuntimeError as error:
        print(f"(no cpp rows: {error})")
    if torch.cuda.is_available():
        targets += [("cuda:0", "torch"), ("cuda:0", "triton")]
    targets = [t for t in targets if t[1] in wanted]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bandwidth = {device: copy_bandwidth(device) for device in {t[0] for t in targets}}
    for device, value in bandwidth.items():
        print(f"{device}: copy bandwidth {value / 1e9:.1f} GB/s")
    print(f"{'layout':<8} {'device':<7} {'backend':<7} {'noise':>5} {'rate':>7} "
          f"{'steps/s':>9} {'events/s':>10} {'ns/event':>8} {'GB/s':>7} {'of copy':>7}")
    for name in args.layouts.split(","):
        for device, backend in targets:
            steps = args.steps if name == "example" else max(20, args.steps // 10)
            steps *= 20 if backend == "cpp" else 1
            for noise in (float(x) for x in args.noise.split(",")):
                r = measure(name, device, backend, noise, steps, changed)
                print(f"{r['layout']:<8} {r['device']:<7} {r['backend']:<7} {r['noise']:>5.2f} "
                      f"{r['rate']:>7.4f} {r['steps_per_s']:>9.0f} {r['events_per_s']:>10.3g} "
                      f"{1e9 / max(r['events_per_s'], 1e-9):>8.2f} "
                      f"{r['bytes_per_s'] / 1e9:>7.2f} "
                      f"{r['bytes_per_s'] / bandwidth[device]:>7.1%}", flush=True)


if __name__ == "__main__":
    main()
