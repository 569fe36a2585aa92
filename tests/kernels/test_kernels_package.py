"""hera.kernels as a whole: a small network of every op runs bit for bit the
same on both backends, every kernel compiles for an H100 (sm_90) without
fused multiply-add or approximate division, every launch turns fp fusion
off, importing hera.kernels imports neither torch nor triton,
``triton_usable`` follows the device and the interpreter, and backends are
checked.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from typing import Any

import pytest
import torch

from hera.kernels import check_backend, default_backend, triton_usable
from hera.kernels.counter_random import fill_normal, fill_uniform
from hera.kernels.decay_accumulate import decay_accumulate
from hera.kernels.deliver_spikes import check_synapses, deliver_spikes, take_slot
from hera.kernels.lif_wta_step import lif_wta_step
from hera.kernels.stdp import depress_rows, potentiate_incoming
from tests.kernels.common import KERNEL_MODULES, LIF_CONSTANTS, _bits, _gen, _incoming


# -- the pieces together -----------------------------------------------------

def test_a_small_network_runs_identically_on_both_backends(triton_device):
    """take_slot -> lif_wta_step -> deliver_spikes -> depress_rows and
    potentiate_incoming -> decay_accumulate for more steps than the ring has
    slots: every state tensor, the learned weights too, agrees every step."""
    g = _gen(42)
    neurons, slots, length, group, scale = 42, 9, 4, 6, 2.0 ** 16
    targets = torch.randint(-1, neurons, (neurons, slots), generator=g, dtype=torch.int32)
    start = {
        "ring": torch.zeros(length, neurons, dtype=torch.int32),
        "membrane": torch.zeros(neurons), "refractory": torch.zeros(neurons, dtype=torch.int32),
        "threshold_adapt": torch.zeros(neurons), "trace": torch.zeros(neurons),
        "weights": torch.rand(neurons, slots, generator=g) * 0.8,
    }
    delays = torch.randint(1, length, (slots,), generator=g, dtype=torch.int32)
    noises = [torch.randn(neurons, generator=g) * 0.6 + 0.3 for _ in range(11)]
    check_synapses(targets, delays, neurons, length)
    incoming = _incoming(targets, neurons)

    def simulate(backend: str) -> list[dict[str, torch.Tensor]]:
        s = {k: v.clone().to(triton_device) for k, v in start.items()}
        syn = [x.to(triton_device) for x in (targets, *incoming)]
        history = []
        for t, noise in enumerate(noises):
            current = take_slot(s["ring"], t, scale, backend=backend)
            spikes = lif_wta_step(s["membrane"], s["refractory"], s["threshold_adapt"], current,
                                  noise.to(triton_device), threshold=0.5, group_size=group,
                                  backend=backend, **LIF_CONSTANTS)
            sources = spikes.nonzero().flatten()
            deliver_spikes(s["ring"], t, sources, syn[0], s["weights"], delays.to(triton_device),
                           scale, backend=backend)
            # one population: the trace is both the pre- and the postsynaptic one
            depress_rows(s["weights"], syn[0], sources, s["trace"], 0.04, 1.0, backend=backend)
            potentiate_incoming(s["weights"], s["trace"], sources, *syn[1:], 0.05, 1.0, 3.0,
                                scale, backend=backend)
            decay_accumulate(s["trace"], LIF_CONSTANTS["decay"], spikes, backend=backend)
            history.append({k: v.cpu().clone() for k, v in s.items()} | {"spikes": spikes.cpu()})
        return history

    reference, kernels = simulate("torch"), simulate("triton")
    assert sum(float(h["spikes"].sum()) for h in reference) > 5, "the network should fire"
    assert not torch.equal(reference[-1]["weights"], start["weights"]), "it should learn"
    for step, (want, got) in enumerate(zip(reference, kernels)):
        for name in want:
            assert torch.equal(_bits(got[name]), _bits(want[name])), f"step {step}: {name}"


# -- compiled for a GPU, without one ------------------------------------------

_COMPILE_FOR_H100 = r"""
import re
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from hera.kernels.counter_random import triton_kernel as cr
from hera.kernels.decay_accumulate import triton_kernel as da
from hera.kernels.deliver_spikes import triton_kernel as ds
from hera.kernels.lif_wta_step import triton_kernel as lw
from hera.kernels.stdp import triton_kernel as sk

LIF = dict(membrane_ptr="*fp32", refractory_ptr="*i32", threshold_adapt_ptr="*fp32",
           current_ptr="*fp32", noise_ptr="*fp32", spikes_ptr="*fp32", decay="fp32",
           threshold="fp32", refractory_steps="i32", theta_plus="fp32", theta_decay="fp32",
           theta_minus="fp32", theta_floor="fp32", group_size="i32", groups="i32", BLOCK_GROUPS="constexpr", BLOCK_CELLS="constexpr")
DELIVER = dict(ring_ptr="*i32", sources_ptr="*i64", targets_ptr="*i32", weights_ptr="*fp32",
               delays_ptr="*i32", t_slot="i32", length="i32", neurons="i32", k_slots="i32",
               scale="fp32", DELAYS_PER_ROW="constexpr", BLOCK_K="constexpr")
DEPRESS = dict(weights_ptr="*fp32", targets_ptr="*i32", sources_ptr="*i64",
               post_trace_ptr="*fp32", k_slots="i32", a_minus="fp32", w_max="fp32",
               BLOCK_K="constexpr")
POTENTIATE = dict(weights_ptr="*fp32", pre_trace_ptr="*fp32", neurons_ptr="*i32",
                  incoming_weight_ptr="*i32", incoming_source_ptr="*i32", j_slots="i32",
                  a_plus="fp32", trace_offset="fp32", w_max="fp32", scale="fp32", cap="i64",
                  cap_float="fp32",
                  SCALING="constexpr", BLOCK_J="constexpr")
RANDOM = dict(out_ptr="*fp32", lo="i32", hi="i32", n="i32", offset="i32", scale="fp32",
              NORMAL="constexpr", BLOCK="constexpr")
jobs = [
    (cr._fill_kernel, RANDOM, dict(NORMAL=False, BLOCK=cr.BLOCK)),
    (cr._fill_kernel, dict(RANDOM, n="i64"), dict(NORMAL=True, BLOCK=cr.BLOCK)),
    (da._decay_accumulate_kernel, dict(trace_ptr="*fp32", events_ptr="*fp32", decay="fp32",
                                       n="i32", BLOCK="constexpr"), dict(BLOCK=da.BLOCK)),
    (ds._deliver_spikes_kernel, DELIVER, dict(DELAYS_PER_ROW=True, BLOCK_K=256)),
    (ds._deliver_spikes_kernel, dict(DELIVER, sources_ptr="*i32"),
     dict(DELAYS_PER_ROW=False, BLOCK_K=32)),
    (ds._take_slot_kernel, dict(ring_ptr="*i32", out_ptr="*fp32", slot="i32", neurons="i32",
                                inv_scale="fp32", BLOCK="constexpr"), dict(BLOCK=ds.SLOT_BLOCK)),
    (lw._lif_wta_step_kernel, LIF, dict(zip(("BLOCK_GROUPS", "BLOCK_CELLS"),
                                            lw.tile_shape(6, 1000)))),
    (lw._lif_wta_step_kernel, LIF, dict(zip(("BLOCK_GROUPS", "BLOCK_CELLS"),
                                            lw.tile_shape(1151, 1)))),
    (sk._depress_rows_kernel, DEPRESS, dict(BLOCK_K=256)),
    (sk._potentiate_incoming_kernel, POTENTIATE, dict(SCALING=True, BLOCK_J=1024)),
    (sk._potentiate_incoming_kernel, dict(POTENTIATE, neurons_ptr="*i64",
                                          incoming_weight_ptr="*i64", cap="i32"),
     dict(SCALING=False, BLOCK_J=32)),
]
for fn, signature, constants in jobs:
    kernel = triton.compile(ASTSource(fn, signature, constants), target=GPUTarget("cuda", 90, 32),
                            options={"num_warps": 4, "enable_fp_fusion": False})
    ptx = kernel.asm["ptx"]
    print(fn.__name__, len(re.findall(r"\bfma\.", ptx)),
          len(re.findall(r"\bdiv\.(?:approx|full)\.", ptx)), len(re.findall(r"\bdiv\.rn\.", ptx)))
"""


def test_kernels_compile_for_an_h100_without_fused_multiply_add(tmp_path):
    """Where no GPU runs the parity tests, compile every kernel for sm_90
    anyway (type errors the interpreter lets through), and check the PTX has
    no fused multiply-add and no approximate division, and that scaling
    divides correctly rounded: that is what keeps the GPU bit-equal to torch."""
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("the parity tests run the compiled kernels on this GPU")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", _COMPILE_FOR_H100], capture_output=True,
                          text=True, env=env, timeout=300)
    if proc.returncode and "ptxas" in proc.stderr and "not found" in proc.stderr.lower():
        pytest.skip("this triton ships no ptxas")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = [line.split() for line in proc.stdout.strip().splitlines()]
    assert len(counts) == 11 and all(fma == approx == "0" for _, fma, approx, _ in counts), counts
    assert [rn != "0" for *_, rn in counts] == [False] * 9 + [True, False], counts


class _LaunchRecorder:
    """Stands in for a jitted kernel: records the launch options."""

    def __init__(self):
        self.options: list[dict[str, Any]] = []

    def __getitem__(self, grid):
        return lambda *args, **options: self.options.append(options)


def test_every_launch_turns_fused_multiply_add_off(triton_device, monkeypatch):
    """The compile test above checks the PTX under enable_fp_fusion=False;
    this checks every launcher asks for it."""
    modules = [importlib.import_module(name) for name in KERNEL_MODULES]
    recorders = {}
    for module in modules:
        for name in dir(module):
            if name.startswith("_") and name.endswith("_kernel"):
                recorders[name] = _LaunchRecorder()
                monkeypatch.setattr(module, name, recorders[name])
    ring = torch.zeros(3, 4, dtype=torch.int32)
    fill_uniform(torch.zeros(4), 1, backend="triton")
    fill_normal(torch.zeros(4), 1, backend="triton")
    decay_accumulate(torch.zeros(4), 0.5, torch.zeros(4), backend="triton")
    deliver_spikes(ring, 0, torch.zeros(1, dtype=torch.int32), torch.zeros(2, 2, dtype=torch.int32),
                   torch.zeros(2, 2), torch.ones(2, dtype=torch.int32), backend="triton")
    take_slot(ring, 0, backend="triton")
    lif_wta_step(torch.zeros(4), torch.zeros(4, dtype=torch.int32), torch.zeros(4),
                 torch.zeros(4), torch.zeros(4), threshold=1.0, group_size=2, backend="triton",
                 **LIF_CONSTANTS)
    table, one = torch.zeros(2, 2, dtype=torch.int32), torch.zeros(1, dtype=torch.int32)
    depress_rows(torch.zeros(2, 2), table, one, torch.zeros(4), 0.1, 1.0, backend="triton")
    for budget in (0.0, 1.0):
        potentiate_incoming(torch.zeros(2, 2), torch.zeros(2), one, table, table, 0.1, 1.0,
                            budget, 2.0 ** 16, backend="triton")
    assert len(recorders) == 7
    for name, recorder in recorders.items():
        assert recorder.options, f"{name} was not launched"
        assert all(o.get("enable_fp_fusion") is False for o in recorder.options), name


# -- arguments and backends ----------------------------------------------------

def test_importing_hera_kernels_imports_neither_torch_nor_triton():
    code = ("import sys, hera.kernels as k\n"
            "k.triton_usable('cpu'); k.check_backend('torch', 'cpu')\n"
            "print(sorted(m for m in ('torch', 'triton') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TRITON_INTERPRET": ""}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_triton_usable_follows_the_device_and_the_interpreter(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not triton_usable("cpu") and not triton_usable(torch.device("cpu"))
    assert triton_usable("cuda:0") and triton_usable(torch.device("cuda", 1))
    assert default_backend("cpu") == "torch" and default_backend("cuda") == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_usable("cpu") and triton_usable(torch.zeros(1))
    assert default_backend("cpu") == "torch", "the interpreter is never the default"


def test_backends_are_checked(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    trace = torch.zeros(3)
    with pytest.raises(ValueError, match="unknown kernel backend 'cuda'"):
        decay_accumulate(trace, 0.5, trace, backend="cuda")
    with pytest.raises(RuntimeError, match="triton backend cannot run on cpu"):
        decay_accumulate(trace, 0.5, trace, backend="triton")
    check_backend("torch", "cpu")
