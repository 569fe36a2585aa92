"""Steps per second of the abraxas sheet, per layout and backend, against
firing rate.

For each layout and each backend that can run here (torch and the compiled
cpp step on the CPU; torch and triton on a CUDA GPU), the intrinsic noise is
swept to change the firing rate; each point runs a warm-up, then timed steps
in one call, and prints the firing rate measured just after (spikes per
neuron per step), steps/s and synaptic events/s (spikes × their outgoing
synapses, per second).

    python benchmarks/step.py [--layouts example,small,coba] [--steps N]
"""

from __future__ import annotations

import argparse
import time

import torch

from hera_family_abraxas import layouts, model


def fan_out(d: dict) -> float:
    """Mean outgoing synapses per neuron (input channels not counted)."""
    neuron_synapses = layouts.synapse_count(d) - d["inputs"] * d["width"] * d["height"] * d["cells"]
    return neuron_synapses / layouts.neuron_count(d)


def measure(name: str, device: str, backend: str, noise: float, steps: int) -> dict:
    d = layouts.definition_for(name, {"noise": noise})
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
    return {"layout": name, "device": device, "backend": backend, "noise": noise,
            "rate": spikes / steps / neurons, "steps_per_s": steps / seconds,
            "events_per_s": spikes * fan_out(d) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default="example,small,coba")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--noise", default="0.1,0.35,1.0")
    args = parser.parse_args()
    targets = [("cpu", "torch")]
    try:
        from hera_family_abraxas.cpu_backend import compiled

        compiled()
        targets.append(("cpu", "cpp"))
    except RuntimeError as error:
        print(f"(no cpp rows: {error})")
    if torch.cuda.is_available():
        targets += [("cuda:0", "torch"), ("cuda:0", "triton")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'layout':<8} {'device':<7} {'backend':<7} {'noise':>5} {'rate':>7} "
          f"{'steps/s':>9} {'events/s':>10}")
    for name in args.layouts.split(","):
        for device, backend in targets:
            steps = args.steps if name == "example" else max(20, args.steps // 10)
            steps *= 20 if backend == "cpp" else 1
            for noise in (float(x) for x in args.noise.split(",")):
                r = measure(name, device, backend, noise, steps)
                print(f"{r['layout']:<8} {r['device']:<7} {r['backend']:<7} {r['noise']:>5.2f} "
                      f"{r['rate']:>7.4f} {r['steps_per_s']:>9.0f} {r['events_per_s']:>10.3g}")


if __name__ == "__main__":
    main()
