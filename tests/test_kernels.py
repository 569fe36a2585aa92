"""hera.kernels: every Triton kernel against its PyTorch reference, and
properties of the references.

The Triton kernels run on the GPU when there is one, otherwise in Triton's
interpreter on the CPU (``TRITON_INTERPRET=1``, set by the ``triton_device``
fixture for this module's tests only, so other modules' subprocesses never
inherit it; ``_import_triton_for_the_interpreter`` says why triton itself is
imported at collection). Each parity case uses odd sizes and non-zero inputs,
pre-fills allocated outputs with NaN, compares the outputs *and* the final
state, and runs the kernel twice to check it gives the same bits again.
"""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hera.kernels import check_backend, default_backend, triton_usable
from hera.kernels.counter_random import fill_normal, fill_uniform, stream_key
from hera.kernels.counter_random.keys import splitmix64
from hera.kernels.decay_accumulate import decay_accumulate
from hera.kernels.deliver_spikes import check_synapses, deliver_spikes, take_slot
from hera.kernels.lif_wta_step import lif_wta_step
from hera.kernels.stdp import budget_units, depress_rows, potentiate_incoming


def _import_triton_for_the_interpreter() -> None:
    """Import triton now, with ``TRITON_INTERPRET=1``, then put the
    environment back.

    ``@triton.jit`` decides when it decorates a function whether to
    interpret it, and Triton's own library functions (``tl.max``,
    ``tl.zeros_like``, ...) are decorated when triton is imported: imported
    without the variable, they refuse to run inside an interpreted kernel.
    No other test module imports triton in this process, and collection
    happens before any test runs, so doing it here comes first. On a GPU
    machine the kernels run compiled and nothing is done.
    """
    if torch.cuda.is_available() or "triton" in sys.modules:
        return
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton  # noqa: F401
    except ImportError:
        pass  # the triton_device fixture skips the kernel tests
    finally:
        if before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = before


_import_triton_for_the_interpreter()

KERNEL_MODULES = ("hera.kernels.counter_random.triton_kernel",
                  "hera.kernels.decay_accumulate.triton_kernel",
                  "hera.kernels.deliver_spikes.triton_kernel",
                  "hera.kernels.lif_wta_step.triton_kernel",
                  "hera.kernels.stdp.triton_kernel")

# (dtype, atol, rtol, why) for each op's outputs and state. All are exact:
# the kernels do the reference's operations in the reference's order and are
# launched with enable_fp_fusion=False, and anything looser would let a
# spike (a comparison with a threshold) differ between backends.
TOLERANCES: dict[str, tuple[torch.dtype, float, float, str]] = {
    "counter_random": (torch.float32, 0.0, 0.0,
                       "32-bit integer hashing wraps the same everywhere; the integer is "
                       "exact in float32 and one multiply rounds it"),
    "decay_accumulate": (torch.float32, 0.0, 0.0,
                         "one float32 multiply, then one add, each rounded; no FMA"),
    "deliver_spikes": (torch.int32, 0, 0,
                       "integer adds commute: atomics in any order give the same sum"),
    "take_slot": (torch.float32, 0.0, 0.0,
                  "int32 -> float32 rounds to nearest, then one multiply by float32(1/scale)"),
    "lif_wta_step": (torch.float32, 0.0, 0.0,
                     "elementwise float32 in the reference's order, no FMA; the winner "
                     "is found by exact comparisons; refractory is int32"),
    "depress_rows": (torch.float32, 0.0, 0.0,
                     "one float32 multiply, then one subtract, each rounded; no FMA; the "
                     "clamp is exact"),
    "potentiate_incoming": (torch.float32, 0.0, 0.0,
                            "the reference's float32 operations in order, no FMA; the scaling "
                            "total is an int64 sum (the same in any order) and the factor a "
                            "correctly rounded division (div_rn)"),
}


def _assert_close(op: str, actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    _, atol, rtol, why = TOLERANCES[op]
    assert actual.dtype == expected.dtype, f"{what}: {actual.dtype} != {expected.dtype}"
    assert not actual.is_floating_point() or not actual.isnan().any(), f"{what}: NaN left"
    torch.testing.assert_close(actual.cpu(), expected.cpu(), atol=atol, rtol=rtol,
                               msg=lambda m: f"{op} {what} ({why}): {m}")


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """The raw bits of a float32 tensor (so -0.0 != 0.0 and NaN == NaN)."""
    return tensor.view(torch.int32) if tensor.dtype == torch.float32 else tensor


def _assert_same_bits(first: torch.Tensor, second: torch.Tensor, what: str) -> None:
    assert torch.equal(_bits(first), _bits(second)), f"{what} differs between two kernel runs"


@pytest.fixture(scope="module")
def triton_device():
    """Where the kernels run: ``cuda`` when there is a GPU, else ``cpu``
    under Triton's interpreter (set before the kernel modules are decorated)."""
    triton = pytest.importorskip("triton")
    if torch.cuda.is_available():
        yield "cuda"
        return
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(triton.language.max, InterpretedFunction):
        pytest.fail("triton was imported before TRITON_INTERPRET=1 was set, so its library "
                    "cannot run in the interpreter: run tests/test_kernels.py in its own process")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRITON_INTERPRET", "1")
        # @triton.jit decides at import whether to interpret: a module
        # imported earlier without the variable is decorated again.
        for name in KERNEL_MODULES:
            if name in sys.modules:
                importlib.reload(sys.modules[name])
        yield "cpu"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _nonzero_randn(n: int, g: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """Normal values pushed away from zero, so a kernel that skips an input shows."""
    x = torch.randn(n, generator=g)
    return (x + torch.where(x >= 0, 0.1, -0.1)) * scale


@dataclass
class Case:
    """One parity case: ``build(generator)`` gives the named arguments of one
    call (state updated in place, inputs, and outputs pre-filled with NaN);
    ``params`` are the ones the call needs besides those."""

    id: str
    build: Callable[[torch.Generator], dict[str, Any]]
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)


def _parity(op: str, case: Case, device: str, run: Callable[..., Any]) -> None:
    """Run ``run(backend, **tensors)`` on the reference and twice on the
    kernel, each from the same start, and compare every tensor."""
    start = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
             for k, v in case.build(_gen(case.seed)).items()}

    def fresh() -> dict[str, Any]:
        return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in start.items()}

    expected, first, second = fresh(), fresh(), fresh()
    expected_result = run("torch", expected)
    first_result = run("triton", first)
    second_result = run("triton", second)
    if expected_result is not None:
        _assert_close(op, first_result, expected_result, "result")
        _assert_same_bits(first_result, second_result, "result")
    for name, value in start.items():
        if isinstance(value, torch.Tensor):
            _assert_close(op, first[name], expected[name], name)
            _assert_same_bits(first[name], second[name], name)


# -- counter_random ----------------------------------------------------------

def _random_case(n: int, seed: int, step: int, stream: int) -> Case:
    def build(g):
        return {"out": torch.full((n,), float("nan")), "key": stream_key(seed, step, stream)}
    return Case(f"N={n},step={step}", build)


RANDOM_CASES = [_random_case(1, 0, 0, 0), _random_case(1023, 3, 1, 1),
                _random_case(1025, (1 << 63) - 1, (1 << 56) - 1, 255),
                _random_case(3001, 12345, 77, 2)]


@pytest.mark.parametrize("normal", [False, True], ids=["uniform", "normal"])
@pytest.mark.parametrize("case", RANDOM_CASES, ids=[c.id for c in RANDOM_CASES])
def test_counter_random_matches_reference(triton_device, case, normal):
    fill = fill_normal if normal else fill_uniform

    def run(backend, t):
        return fill(t["out"], t["key"], backend=backend)
    _parity("counter_random", case, triton_device, run)


def test_counter_random_keys_near_the_counter_wrap(triton_device):
    """A key whose low half is near 2**32 makes the counter wrap mid-block."""
    key = (0xDEADBEEF << 32) | 0xFFFFFF00
    for fill in (fill_uniform, fill_normal):
        expected = fill(torch.empty(700), key)
        assert torch.equal(_bits(fill(torch.empty(700), key, backend="triton")), _bits(expected))


# -- decay_accumulate --------------------------------------------------------

def _trace_case(n: int, decay: float) -> Case:
    def build(g):
        return {"trace": _nonzero_randn(n, g), "events": (torch.rand(n, generator=g) < 0.3)
                .float() + _nonzero_randn(n, g, 0.01), "decay": decay}
    return Case(f"N={n},decay={decay:.4g}", build, seed=n)


TRACE_CASES = [_trace_case(1, 0.5), _trace_case(63, math.exp(-1 / 20)),
               _trace_case(1151, math.exp(-1 / 7)), _trace_case(2049, 1.0)]


@pytest.mark.parametrize("case", TRACE_CASES, ids=[c.id for c in TRACE_CASES])
def test_decay_accumulate_matches_reference(triton_device, case):
    def run(backend, t):
        return decay_accumulate(t["trace"], t["decay"], t["events"], backend=backend)
    _parity("decay_accumulate", case, triton_device, run)


# -- deliver_spikes ----------------------------------------------------------

def _synapse_case(id: str, *, length=5, neurons=37, rows=29, slots=13, spiking=7, t=3,
                  empty=0.2, per_slot_delays=False, source_dtype=torch.int32,
                  scale=65536.0, seed=1, tweak=None) -> Case:
    def build(g):
        targets = torch.randint(0, neurons, (rows, slots), generator=g, dtype=torch.int32)
        targets[torch.rand(rows, slots, generator=g) < empty] = -1
        delay_shape = (slots,) if per_slot_delays else (rows, slots)
        tensors = {
            # sentinel contents: delivery must add to them, not overwrite
            "ring": torch.randint(-10**6, 10**6, (length, neurons), generator=g,
                                  dtype=torch.int32),
            "sources": torch.randint(0, rows, (spiking,), generator=g).to(source_dtype),
            "targets": targets,
            "weights": _nonzero_randn(rows * slots, g).view(rows, slots),
            "delays": torch.randint(1, length, delay_shape, generator=g, dtype=torch.int32),
            "t": t, "scale": scale,
        }
        if tweak is not None:
            tweak(tensors, g)
        return tensors
    return Case(id, build, seed=seed)


def _duplicates(t, g):
    t["targets"][:, :4] = 5                      # four synapses of every row onto neuron 5
    t["sources"][: 3] = t["sources"][0]          # and one row spiking three times


def _with_holes(name: str) -> Callable[[dict[str, Any], torch.Generator], None]:
    """Turn about half the entries of the list ``name`` into holes (-1, or
    the most negative value): a fixed-size list of the rows that spiked."""
    def tweak(t, g):
        rows = t[name]
        holes = torch.rand(rows.numel(), generator=g) < 0.5
        holes[0] = True
        rows[holes] = -1
        rows[-1:][holes[-1:]] = torch.iinfo(rows.dtype).min
    return tweak


def _halves(t, g):
    # weights exactly half a quantum off a multiple: the rounding rule shows
    steps = torch.arange(t["weights"].numel(), dtype=torch.float32) - 200
    t["weights"] = ((steps + 0.5) / t["scale"]).view_as(t["weights"])


DELIVER_CASES = [
    _synapse_case("no-spiking-sources(M=0)", spiking=0),
    _synapse_case("per-synapse-delays"),
    _synapse_case("per-slot-delays[K]", per_slot_delays=True, seed=2),
    _synapse_case("empty-slots(-1)", empty=0.6, seed=3),
    _synapse_case("all-slots-empty", empty=1.0, seed=4),
    _synapse_case("wrap-around(t=L-1)", t=4, seed=5),
    _synapse_case("huge-t(2**40+3)", t=2**40 + 3, seed=6),
    _synapse_case("duplicate-targets-and-sources", tweak=_duplicates, seed=7),
    _synapse_case("int64-sources", source_dtype=torch.int64, seed=8),
    _synapse_case("smallest-ring(L=2)", length=2, seed=9),
    _synapse_case("long-rows(K=1151,several-programs-a-row)", rows=5, slots=1151, spiking=4,
                  neurons=63, seed=10),
    _synapse_case("round-half-up(scale=2**16)", rows=8, slots=51, tweak=_halves, seed=11),
    _synapse_case("non-power-of-two-scale(1000)", scale=1000.0, seed=12),
    _synapse_case("near-halves(scale=3)", rows=8, slots=51, scale=3.0, tweak=_halves, seed=13),
    _synapse_case("holes-in-the-list(-1)", spiking=15, tweak=_with_holes("sources"), seed=14),
    _synapse_case("only-holes", spiking=3, seed=15,
                  tweak=lambda t, g: t["sources"].fill_(-1)),
]


@pytest.mark.parametrize("case", DELIVER_CASES, ids=[c.id for c in DELIVER_CASES])
def test_deliver_spikes_matches_reference(triton_device, case):
    def run(backend, t):
        deliver_spikes(t["ring"], t["t"], t["sources"], t["targets"], t["weights"], t["delays"],
                       t["scale"], backend=backend)
    _parity("deliver_spikes", case, triton_device, run)


def _slot_case(length: int, neurons: int, t: int) -> Case:
    def build(g):
        return {"ring": torch.randint(-2**30, 2**30, (length, neurons), generator=g,
                                      dtype=torch.int32),
                "out": torch.full((neurons,), math.nan), "t": t}
    return Case(f"L={length},N={neurons},t={t}", build, seed=neurons + length)


SLOT_CASES = [_slot_case(3, 1, 0), _slot_case(5, 63, 4), _slot_case(2, 1151, 2**40 + 1),
              _slot_case(7, 2049, 12), _slot_case(4, 0, 1)]


@pytest.mark.parametrize("scale", [65536.0, 1000.0], ids=["scale=2**16", "scale=1000"])
@pytest.mark.parametrize("case", SLOT_CASES, ids=[c.id for c in SLOT_CASES])
def test_take_slot_matches_reference(triton_device, case, scale):
    def run(backend, t):
        return take_slot(t["ring"], t["t"], scale, out=t["out"], backend=backend)
    _parity("take_slot", case, triton_device, run)


def test_take_slot_allocates_when_no_out_is_given(triton_device):
    ring = torch.randint(-99, 99, (3, 63), dtype=torch.int32, generator=_gen(3))
    expected = take_slot(ring.clone(), 7, 64.0)
    got = take_slot(ring.to(triton_device), 7, 64.0, backend="triton")
    assert torch.equal(got.cpu(), expected) and got.dtype == torch.float32


# -- lif_wta_step ------------------------------------------------------------

def _neuron_case(id: str, group_size: int, groups: int, *, threshold=0.5, resting=0.3,
                 seed=0, tweak=None) -> Case:
    n = group_size * groups

    def build(g):
        tensors = {
            "membrane": _nonzero_randn(n, g),
            "refractory": torch.where(torch.rand(n, generator=g) < resting,
                                      torch.randint(1, 4, (n,), generator=g), 0).to(torch.int32),
            "threshold_adapt": torch.rand(n, generator=g) * 0.3 + 0.01,
            "current": _nonzero_randn(n, g),
            "noise": _nonzero_randn(n, g, 0.35),
            "out": torch.full((n,), math.nan),
            "threshold": threshold,
        }
        if tweak is not None:
            tweak(tensors, g)
        return tensors
    return Case(f"{id}(group={group_size}x{groups})", build, seed=seed,
                params={"group_size": group_size})


def _ties(t, g):
    # Margins from a few exact values (threshold 0.25): many equal maxima in
    # a group, and groups whose best margin is exactly 0 (which fires).
    n = t["membrane"].numel()
    t["membrane"].zero_()
    t["noise"].zero_()
    t["threshold_adapt"].zero_()
    t["refractory"].zero_()
    values = torch.tensor([0.0625, 0.125, 0.25, 0.25, 0.25, 0.25, 0.5, 0.75])
    t["current"] = values[torch.randint(0, len(values), (n,), generator=g)]


def _all_resting(t, g):
    t["refractory"].fill_(2)


LIF_CASES = [
    _neuron_case("no-competition", 1, 63),
    _neuron_case("random", 6, 9, seed=1),
    _neuron_case("odd-groups", 7, 37, seed=2),
    _neuron_case("wider-than-a-warp", 33, 5, seed=3),
    _neuron_case("power-of-two", 16, 3, seed=4),
    _neuron_case("one-big-group", 1151, 1, seed=5),
    _neuron_case("several-programs", 3, 683, seed=6),
    _neuron_case("no-candidates", 6, 9, threshold=100.0, seed=7),
    _neuron_case("mostly-candidates", 7, 9, threshold=-1.0, seed=8),
    _neuron_case("ties", 5, 13, threshold=0.25, tweak=_ties, seed=9),
    _neuron_case("resting-neurons-can-win(threshold<0)", 6, 7, threshold=-2.0,
                 tweak=_all_resting, seed=10),
]

LIF_CONSTANTS = {"decay": math.exp(-1 / 20), "refractory_steps": 2, "theta_plus": 0.05,
                 "theta_decay": math.exp(-1 / 1000)}


@pytest.mark.parametrize("theta_minus, theta_floor", [(0.0, 0.0), (0.03, 0.0), (0.03, -0.0123)],
                         ids=["no-target", "target-rate", "target-rate-floor"])
@pytest.mark.parametrize("case", LIF_CASES, ids=[c.id for c in LIF_CASES])
def test_lif_wta_step_matches_reference(triton_device, case, theta_minus, theta_floor):
    """theta_minus 0.03 takes some thresholds below 0 before the clamp, and
    some below a floor under 0 where there is one."""
    def run(backend, t):
        return lif_wta_step(t["membrane"], t["refractory"], t["threshold_adapt"], t["current"],
                            t["noise"], threshold=t["threshold"],
                            group_size=case.params["group_size"], out=t["out"],
                            theta_minus=theta_minus, theta_floor=theta_floor, backend=backend,
                            **LIF_CONSTANTS)
    _parity("lif_wta_step", case, triton_device, run)


def test_lif_wta_step_allocates_spikes_when_no_out_is_given(triton_device):
    case = _neuron_case("random", 6, 9, seed=1)
    spikes = {}
    for backend in ("torch", "triton"):
        t = {k: v.to(triton_device) if isinstance(v, torch.Tensor) else v
             for k, v in case.build(_gen(1)).items()}
        spikes[backend] = lif_wta_step(t["membrane"], t["refractory"], t["threshold_adapt"],
                                       t["current"], t["noise"], threshold=t["threshold"],
                                       group_size=6, backend=backend, **LIF_CONSTANTS).cpu()
    assert all(s.dtype == torch.float32 and s.shape == (54,) for s in spikes.values())
    assert torch.equal(spikes["triton"], spikes["torch"])


# -- stdp --------------------------------------------------------------------

def _incoming(targets: torch.Tensor, neurons: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The transpose of a synapse table: each neuron's row lists the flat
    positions of the synapses onto it and, beside them, their source rows;
    both padded with -1."""
    slots = targets.shape[1]
    flat = targets.reshape(-1)
    positions = [(flat == n).nonzero().flatten() for n in range(neurons)]
    incoming_weight = torch.full((neurons, max([len(p) for p in positions] + [1])), -1,
                                 dtype=torch.int32)
    for n, p in enumerate(positions):
        incoming_weight[n, :len(p)] = p
    incoming_source = torch.where(incoming_weight >= 0, incoming_weight // slots, -1)
    return incoming_weight, incoming_source.to(torch.int32)


def _depress_case(id: str, *, rows=37, slots=29, neurons=23, spiking=11, empty=0.2,
                  a_minus=0.05, w_max=1.0, source_dtype=torch.int32, seed=20,
                  tweak=None) -> Case:
    def build(g):
        targets = torch.randint(0, neurons, (rows, slots), generator=g, dtype=torch.int32)
        targets[torch.rand(rows, slots, generator=g) < empty] = -1
        tensors = {
            # some weights start over w_max where w_max < 1: the clamp pulls them down
            "weights": torch.rand(rows, slots, generator=g) * 0.95 + 0.05,
            "targets": targets,
            "sources": torch.randperm(rows, generator=g)[:spiking].to(source_dtype),
            "post_trace": torch.rand(neurons, generator=g) * 2 + 0.05,
            "a_minus": a_minus, "w_max": w_max,
        }
        if tweak is not None:
            tweak(tensors, g)
        return tensors
    return Case(id, build, seed=seed)


DEPRESS_CASES = [
    _depress_case("no-spiking-sources(M=0)", spiking=0),
    _depress_case("random(S=37,K=29,M=11)"),
    _depress_case("int64-sources", source_dtype=torch.int64, seed=21),
    _depress_case("all-slots-empty", empty=1.0, seed=22),
    _depress_case("clamped-at-0(a_minus=0.7)", a_minus=0.7, seed=23),
    _depress_case("clamped-at-w_max(0.4)", w_max=0.4, seed=24),
    _depress_case("long-rows(K=1151,several-programs-a-row)", rows=5, slots=1151, spiking=3,
                  seed=25),
    _depress_case("holes-in-the-list(-1)", spiking=20, tweak=_with_holes("sources"), seed=26),
]


@pytest.mark.parametrize("case", DEPRESS_CASES, ids=[c.id for c in DEPRESS_CASES])
def test_depress_rows_matches_reference(triton_device, case):
    def run(backend, t):
        return depress_rows(t["weights"], t["targets"], t["sources"], t["post_trace"],
                            t["a_minus"], t["w_max"], backend=backend)
    _parity("depress_rows", case, triton_device, run)


def _incoming_case(id: str, *, rows=37, slots=29, neurons=23, incoming=41, spiking=11,
                   budget=0.0, scale=65536.0, a_plus=0.05, w_max=1.0,
                   neuron_dtype=torch.int32, seed=30, tweak=None) -> Case:
    """Distinct flat positions dealt to the neurons' incoming slots, each
    neuron's row emptier than the last (from none to nearly all -1), so the
    totals spread and a budget scales some neurons and not others."""
    def build(g):
        positions = torch.randperm(rows * slots, generator=g)[:neurons * incoming]
        incoming_weight = positions.view(neurons, incoming).to(torch.int32)
        emptier = torch.linspace(0.0, 0.9, neurons).unsqueeze(1)
        incoming_weight[torch.rand(neurons, incoming, generator=g) < emptier] = -1
        incoming_source = torch.where(incoming_weight >= 0, incoming_weight // slots, -1)
        tensors = {
            "weights": torch.rand(rows, slots, generator=g) * w_max * 0.9 + w_max * 0.05,
            "pre_trace": torch.rand(rows, generator=g) * 2 + 0.05,
            "neurons": torch.randperm(neurons, generator=g)[:spiking].to(neuron_dtype),
            "incoming_weight": incoming_weight,
            "incoming_source": incoming_source.to(torch.int32),
            "a_plus": a_plus, "w_max": w_max, "budget": budget, "scale": scale,
        }
        if tweak is not None:
            tweak(tensors, g)
        return tensors
    return Case(id, build, seed=seed)


def _half_units(t, g):
    # weights exactly half a unit off a multiple and a_plus = 0: the scaling
    # total shows the rounding rule (half up)
    steps = torch.arange(t["weights"].numel(), dtype=torch.float32) % 4096 + 1
    t["weights"] = ((steps + 0.5) / t["scale"]).view_as(t["weights"])


def _wide_positions(t, g):
    # the layout for a weight buffer of 2**31 entries or more
    t["incoming_weight"] = t["incoming_weight"].long()


def _flat_buffer(t, g):
    # one 1-D buffer whose tail no incoming position names: it must stay
    t["weights"] = torch.cat([t["weights"].view(-1), torch.rand(7, generator=g) + 0.05])


POTENTIATE_CASES = [
    _incoming_case("no-spiking-neurons(M=0)", spiking=0, budget=8.0),
    _incoming_case("no-budget(N=23,J=41,M=11)"),
    _incoming_case("budget-scales-some(8.0)", budget=8.0, seed=31),
    _incoming_case("budget-below-one-unit(cap=0)", budget=1e-6, seed=32),
    _incoming_case("budget-scales-none(1000)", budget=1000.0, seed=33),
    _incoming_case("int64-neurons", neuron_dtype=torch.int64, budget=8.0, seed=34),
    _incoming_case("non-power-of-two-scale(1000)", scale=1000.0, budget=6.5, seed=35),
    _incoming_case("clamped-at-w_max(a_plus=0.7)", a_plus=0.7, budget=8.0, seed=36),
    _incoming_case("totals-beyond-2**24(scale=2**20,w_max=16)", scale=2.0 ** 20, w_max=16.0,
                   budget=100.0, seed=37),
    _incoming_case("round-half-up(a_plus=0)", a_plus=0.0, budget=0.1, scale=2.0 ** 16,
                   tweak=_half_units, seed=38),
    _incoming_case("int64-incoming_weight", budget=8.0, tweak=_wide_positions, seed=40),
    _incoming_case("one-flat-buffer(weights[S*K+7])", budget=8.0, tweak=_flat_buffer, seed=41),
    _incoming_case("long-rows(J=1151,several-blocks-a-row)", rows=60, slots=61, neurons=3,
                   incoming=1151, spiking=2, budget=200.0, seed=39),
    _incoming_case("holes-in-the-list(-1)", spiking=17, budget=8.0,
                   tweak=_with_holes("neurons"), seed=42),
    _incoming_case("holes-int64-no-budget", spiking=17, neuron_dtype=torch.int64,
                   tweak=_with_holes("neurons"), seed=43),
]


@pytest.mark.parametrize("case", POTENTIATE_CASES, ids=[c.id for c in POTENTIATE_CASES])
def test_potentiate_incoming_matches_reference(triton_device, case):
    def run(backend, t):
        return potentiate_incoming(t["weights"], t["pre_trace"], t["neurons"],
                                   t["incoming_weight"], t["incoming_source"], t["a_plus"],
                                   t["w_max"], t["budget"], t["scale"], backend=backend)
    _parity("potentiate_incoming", case, triton_device, run)


@pytest.mark.parametrize("case", [c for c in POTENTIATE_CASES if "scales-some" in c.id
                                  or "several-blocks" in c.id or "2**24" in c.id
                                  or "half-up" in c.id], ids=lambda c: c.id)
def test_the_budget_cases_scale_some_neurons_and_not_others(case):
    """The parity cases above test scaling only if their budget splits the
    spiking neurons: some over the cap (scaled), some under (not)."""
    t = case.build(_gen(case.seed))
    args = [t[k] for k in ("pre_trace", "neurons", "incoming_weight", "incoming_source",
                           "a_plus", "w_max")]
    scaled = potentiate_incoming(t["weights"].clone(), *args, t["budget"], t["scale"])
    unscaled = potentiate_incoming(t["weights"].clone(), *args, 0.0, t["scale"])
    changed = [bool((scaled.view(-1)[row[row >= 0].long()] !=
                     unscaled.view(-1)[row[row >= 0].long()]).any())
               for row in t["incoming_weight"][t["neurons"].long()]]
    assert any(changed) and not all(changed), changed


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
                  a_plus="fp32", w_max="fp32", scale="fp32", cap="i64", cap_float="fp32",
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


def _synapses(rows=4, slots=3):
    return (torch.zeros(4, 5, dtype=torch.int32), torch.tensor([0], dtype=torch.int32),
            torch.zeros(rows, slots, dtype=torch.int32), torch.zeros(rows, slots),
            torch.ones(rows, slots, dtype=torch.int32))


@pytest.mark.parametrize("change, message", [
    (lambda a: a.__setitem__(0, torch.zeros(1, 5, dtype=torch.int32)), "at least 2 slots"),
    (lambda a: a.__setitem__(0, torch.zeros(4, 5)), "ring must be int32"),
    (lambda a: a.__setitem__(1, torch.zeros(1)), "sources must be int32 or int64"),
    (lambda a: a.__setitem__(3, torch.zeros(4, 2)), r"weights must have shape \[4, 3\]"),
    (lambda a: a.__setitem__(4, torch.ones(2, dtype=torch.int32)), r"delays must have shape \[3\]"),
    (lambda a: a.__setitem__(4, torch.ones(4, 3)), "delays must be int32"),
], ids=["one-slot-ring", "float-ring", "float-sources", "weights-shape", "delays-length",
        "float-delays"])
def test_deliver_spikes_refuses_bad_arguments(change, message):
    args = list(_synapses())
    change(args)
    with pytest.raises(ValueError, match=message):
        deliver_spikes(args[0], 3, *args[1:], 2.0 ** 16)


def test_deliver_spikes_refuses_bad_step_and_scale():
    args = _synapses()
    with pytest.raises(ValueError, match="t must be a step number"):
        deliver_spikes(args[0], -1, *args[1:])
    with pytest.raises(ValueError, match="scale must be positive"):
        deliver_spikes(args[0], 0, *args[1:], scale=0.0)
    with pytest.raises(ValueError, match=r"out must have shape \[5\]"):
        take_slot(args[0], 0, out=torch.zeros(4))


def test_check_synapses_finds_bad_values():
    targets = torch.tensor([[0, -1], [4, 2]], dtype=torch.int32)
    check_synapses(targets, torch.tensor([1, 3], dtype=torch.int32), neurons=5, length=4)
    with pytest.raises(ValueError, match="targets must be -1 or in 0..3"):
        check_synapses(targets, torch.tensor([1, 3], dtype=torch.int32), neurons=4, length=4)
    with pytest.raises(ValueError, match="delays must be in 1..3"):
        check_synapses(targets, torch.tensor([0, 3], dtype=torch.int32), neurons=5, length=4)
    with pytest.raises(ValueError, match="delays must be in 1..2"):
        check_synapses(targets, torch.tensor([[1, 3], [1, 1]], dtype=torch.int32), 5, 3)


def test_lif_wta_step_refuses_bad_arguments():
    state = [torch.zeros(6), torch.zeros(6, dtype=torch.int32), torch.zeros(6),
             torch.zeros(6), torch.zeros(6)]
    constants = dict(LIF_CONSTANTS, threshold=1.0)
    with pytest.raises(ValueError, match="group_size must be a positive divisor of N=6"):
        lif_wta_step(*state, group_size=4, **constants)
    with pytest.raises(ValueError, match="group_size must be a positive divisor"):
        lif_wta_step(*state, group_size=0, **constants)
    with pytest.raises(ValueError, match="refractory must be int32"):
        lif_wta_step(state[0], state[0], *state[2:], group_size=3, **constants)
    with pytest.raises(ValueError, match=r"noise must have shape \[6\]"):
        lif_wta_step(*state[:4], torch.zeros(5), group_size=3, **constants)
    with pytest.raises(ValueError, match="refractory_steps must be an int32"):
        lif_wta_step(*state, group_size=3, **dict(constants, refractory_steps=-1))
    with pytest.raises(ValueError, match="theta_floor must be <= 0"):
        lif_wta_step(*state, group_size=3, theta_floor=0.5, **constants)


def _plastic_arguments() -> tuple[list[Any], list[Any]]:
    """Valid arguments of depress_rows and of potentiate_incoming (small)."""
    one, holes = torch.tensor([0], dtype=torch.int32), torch.full((5, 2), -1, dtype=torch.int32)
    return ([torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.int32), one, torch.zeros(5), 0.1,
             1.0],
            [torch.zeros(4, 3), torch.zeros(4), one, holes, holes.clone(), 0.1, 1.0, 2.0,
             2.0 ** 16])


@pytest.mark.parametrize("position, value, message", [
    (0, torch.zeros(4, 3, dtype=torch.float64), "weights must be float32"),
    (0, torch.zeros(12), r"weights must have shape \[\*, \*\]"),
    (1, torch.zeros(4, 3), "targets must be int32"),
    (1, torch.zeros(4, 2, dtype=torch.int32), r"targets must have shape \[4, 3\]"),
    (2, torch.zeros(1), "sources must be int32 or int64"),
    (3, torch.zeros(5, dtype=torch.int32), "post_trace must be float32"),
    (4, -0.1, "a_minus must be a finite number >= 0"),
    (5, math.nan, "w_max must be a finite number >= 0"),
], ids=["float64-weights", "flat-weights", "float-targets", "targets-shape", "float-sources",
        "int-post_trace", "negative-a_minus", "nan-w_max"])
def test_depress_rows_refuses_bad_arguments(position, value, message):
    args = _plastic_arguments()[0]
    args[position] = value
    with pytest.raises(ValueError, match=message):
        depress_rows(*args)


@pytest.mark.parametrize("position, value, message", [
    (0, torch.zeros(3, 4).t(), "weights must be contiguous"),
    (1, torch.zeros(4, 1), r"pre_trace must have shape \[\*\]"),
    (2, torch.zeros(1), "neurons must be int32 or int64"),
    (3, torch.full((5, 2), -1.0), "incoming_weight must be int32 or int64"),
    (4, torch.full((5, 3), -1, dtype=torch.int32), r"incoming_source must have shape \[5, 2\]"),
    (5, math.inf, "a_plus must be a finite number >= 0"),
    (7, -1.0, "budget must be a finite number >= 0"),
    (7, "lots", "budget must be a finite number >= 0"),
    (7, 1e300, r"budget \* scale must stay below 2\*\*63"),
    (8, 0.0, "scale must be a finite number > 0"),
], ids=["transposed-weights", "pre_trace-shape", "float-neurons", "float-incoming_weight",
        "incoming_source-shape", "infinite-a_plus", "negative-budget", "text-budget",
        "huge-budget", "zero-scale"])
def test_potentiate_incoming_refuses_bad_arguments(position, value, message):
    args = _plastic_arguments()[1]
    args[position] = value
    with pytest.raises(ValueError, match=message):
        potentiate_incoming(*args)


def test_budget_units_rounds_half_up_in_float64():
    assert budget_units(1.0, 2.0 ** 16) == 65536 and budget_units(2.5, 1.0) == 3
    assert budget_units(0.0, 3.0) == 0 and budget_units(1e-6, 2.0 ** 16) == 0
    assert budget_units(0.1, 1e17) == 10**16, "float64: float32 would give 10000000272564224"


# -- properties of the references (fast: torch only) -------------------------

@st.composite
def synapse_tables(draw):
    """A random synapse table, ring and spiking sources (small, seeded)."""
    length = draw(st.integers(2, 6))
    neurons, rows, slots = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 7))
    g = _gen(draw(st.integers(0, 2**31)))
    per_slot = draw(st.booleans())
    table = {
        "length": length, "neurons": neurons,
        "targets": torch.randint(-1, neurons, (rows, slots), generator=g, dtype=torch.int32),
        "weights": (torch.rand(rows, slots, generator=g) - 0.5) * 8,
        "delays": torch.randint(1, length, (slots,) if per_slot else (rows, slots), generator=g,
                                dtype=torch.int32),
        "sources": torch.randint(0, rows, (draw(st.integers(0, 12)),), generator=g),
        "t": draw(st.integers(0, 2**40)),
    }
    return table


def _deliver(table, sources, ring=None, scale=2.0 ** 16):
    if ring is None:
        ring = torch.zeros(table["length"], table["neurons"], dtype=torch.int32)
    return deliver_spikes(ring, table["t"], sources, table["targets"], table["weights"],
                          table["delays"], scale)


@given(synapse_tables(), st.randoms(use_true_random=False))
def test_delivery_does_not_depend_on_the_order_of_the_sources(table, rnd):
    order = list(range(table["sources"].numel()))
    rnd.shuffle(order)
    in_order = _deliver(table, table["sources"])
    shuffled = _deliver(table, table["sources"][torch.tensor(order, dtype=torch.long)])
    assert torch.equal(in_order, shuffled)


@given(synapse_tables(), st.integers(0, 12))
def test_delivering_in_two_calls_equals_delivering_at_once(table, cut):
    sources = table["sources"]
    split = _deliver(table, sources[cut:], ring=_deliver(table, sources[:cut]))
    assert torch.equal(split, _deliver(table, sources))


@given(synapse_tables())
def test_taken_current_is_the_float64_sum_within_a_quantum_per_event(table):
    scale = 2.0 ** 16
    ring = _deliver(table, table["sources"], scale=scale)
    length, t = table["length"], table["t"]
    rows = table["sources"].long()
    targets = table["targets"][rows]
    delays = table["delays"][rows] if table["delays"].dim() == 2 else \
        table["delays"].expand_as(targets)
    weights = table["weights"][rows].double()
    for delay in range(1, length):
        current = take_slot(ring, t + delay, scale)
        arriving = (targets >= 0) & (delays == delay)
        expected = torch.zeros(table["neurons"], dtype=torch.float64)
        expected.index_add_(0, targets[arriving].long(), weights[arriving])
        events = torch.zeros(table["neurons"], dtype=torch.float64)
        events.index_add_(0, targets[arriving].long(), torch.ones_like(weights[arriving]))
        bound = events / scale + expected.abs() * 2.0 ** -23
        assert ((current.double() - expected).abs() <= bound).all()
    assert not ring.any(), "taking every slot leaves the ring empty"


@given(st.integers(1, 8), st.integers(1, 8), st.integers(0, 2**31),
       st.sampled_from([-1.0, 0.0, 0.5, 3.0]), st.sampled_from([0.0, 0.0625, 0.125]),
       st.sampled_from([0.0, -0.0625, -1.0]))
def test_at_most_the_first_largest_candidate_of_a_group_fires(group_size, groups, seed,
                                                              threshold, theta_minus,
                                                              theta_floor):
    n = group_size * groups
    g = _gen(seed)
    membrane = (torch.randint(-4, 5, (n,), generator=g) / 4).float()  # coarse: ties happen
    refractory = torch.randint(0, 3, (n,), generator=g, dtype=torch.int32)
    theta = (torch.randint(0, 3, (n,), generator=g) / 8).float()
    current = (torch.randint(-4, 5, (n,), generator=g) / 4).float()
    noise = torch.zeros(n)
    before = (membrane.clone(), refractory.clone(), theta.clone())
    spikes = lif_wta_step(membrane, refractory, theta, current, noise, decay=0.5,
                          threshold=threshold, refractory_steps=3, theta_plus=0.25,
                          theta_decay=0.5, group_size=group_size, theta_minus=theta_minus,
                          theta_floor=theta_floor)
    v = torch.where(before[1] > 0, 0.0, before[0] * 0.5 + current)
    margin = (v - (threshold + before[2])).view(groups, group_size).tolist()
    fired = spikes.view(groups, group_size).tolist()
    for group_margin, group_fired in zip(margin, fired):
        candidates = [m for m in group_margin if m >= 0]
        if not candidates:
            assert sum(group_fired) == 0
        else:
            assert group_fired == [float(i == group_margin.index(max(candidates)))
                                   for i in range(group_size)]
    assert torch.equal(refractory, torch.where(spikes > 0, 3, (before[1] - 1).clamp(min=0))
                       .to(torch.int32))
    assert torch.equal(membrane, torch.where(spikes > 0, 0.0, v))
    assert torch.equal(theta, (before[2] * 0.5 + 0.25 * spikes - theta_minus)
                       .clamp(min=theta_floor))
    assert (theta >= theta_floor).all()


def test_ties_go_to_the_lowest_index():
    current = torch.tensor([0.5, 0.75, 0.75, 0.1, 0.2, 0.2, 0.2, 0.2])
    spikes = lif_wta_step(torch.zeros(8), torch.zeros(8, dtype=torch.int32), torch.zeros(8),
                          current, torch.zeros(8), decay=0.9, threshold=0.25,
                          refractory_steps=1, theta_plus=0.0, theta_decay=1.0, group_size=4)
    assert spikes.tolist() == [0, 1, 0, 0, 0, 0, 0, 0], "second group: all below threshold"


@given(st.integers(1, 40), st.floats(0.0, 1.0, width=32), st.integers(0, 2**31))
def test_decay_accumulate_is_one_multiply_and_one_add_in_float32(n, decay, seed):
    g = _gen(seed)
    trace, events = torch.randn(n, generator=g), torch.randn(n, generator=g)
    expected = [float(np.float32(x) * np.float32(decay) + np.float32(e))
                for x, e in zip(trace.tolist(), events.tolist())]
    assert decay_accumulate(trace, decay, events).tolist() == expected


@st.composite
def plastic_tables(draw):
    """A random synapse table and its transpose, traces, distinct spiking
    rows and neurons, and weights in [0, w_max] (small, seeded)."""
    rows, slots, neurons = draw(st.integers(1, 9)), draw(st.integers(1, 7)), draw(st.integers(1, 9))
    spiking_rows, spiking_neurons = draw(st.integers(0, rows)), draw(st.integers(0, neurons))
    w_max = draw(st.sampled_from([0.5, 1.0, 4.0]))
    g = _gen(draw(st.integers(0, 2**31)))
    targets = torch.randint(-1, neurons, (rows, slots), generator=g, dtype=torch.int32)
    incoming_weight, incoming_source = _incoming(targets, neurons)
    return {
        "weights": torch.rand(rows, slots, generator=g) * w_max, "w_max": w_max,
        "targets": targets, "incoming_weight": incoming_weight,
        "incoming_source": incoming_source,
        "pre_trace": torch.rand(rows, generator=g) * 2,
        "post_trace": torch.rand(neurons, generator=g) * 2,
        "sources": torch.randperm(rows, generator=g)[:spiking_rows],
        "neurons": torch.randperm(neurons, generator=g)[:spiking_neurons].to(torch.int32),
    }


def _plastic_formula(before, trace, rate, w_max, sign):
    """``min(max(w + sign * trace * rate, 0), w_max)`` per element, in numpy
    float32 (the product rounded, then the sum)."""
    rate = np.float32(rate)
    return [float(min(max(np.float32(w) + sign * (np.float32(p) * rate), np.float32(0)),
                      np.float32(w_max))) for w, p in zip(before.tolist(), trace.tolist())]


@given(plastic_tables(), st.floats(0.0, 1.0, width=32))
def test_depression_lowers_only_the_live_synapses_of_the_spiking_rows(table, a_minus):
    before = table["weights"].clone()
    after = depress_rows(table["weights"], table["targets"], table["sources"],
                         table["post_trace"], a_minus, table["w_max"])
    live = torch.zeros_like(before, dtype=torch.bool)
    live[table["sources"]] = table["targets"][table["sources"]] >= 0
    assert torch.equal(after[~live], before[~live])
    assert ((after <= before) & (after >= 0)).all()
    trace = table["post_trace"][table["targets"].clamp(min=0).long()]
    assert after[live].tolist() == _plastic_formula(before[live], trace[live], a_minus,
                                                    table["w_max"], -1)


@given(plastic_tables(), st.floats(0.0, 1.0, width=32))
def test_potentiation_raises_only_the_synapses_onto_the_spiking_neurons(table, a_plus):
    before = table["weights"].clone()
    after = potentiate_incoming(table["weights"], table["pre_trace"], table["neurons"],
                                table["incoming_weight"], table["incoming_source"], a_plus,
                                table["w_max"], 0.0, 2.0 ** 16)
    onto = torch.isin(table["targets"], table["neurons"])     # from the table, not its transpose
    assert torch.equal(after[~onto], before[~onto])
    assert ((after >= before) & (after <= table["w_max"])).all()
    source = torch.arange(before.shape[0]).unsqueeze(1).expand_as(before)
    trace = table["pre_trace"][source]
    assert after[onto].tolist() == _plastic_formula(before[onto], trace[onto], a_plus,
                                                    table["w_max"], 1)


@given(plastic_tables(), st.floats(0.0, 1.0, width=32), st.floats(0.0, 3.0),
       st.sampled_from([2.0 ** 16, 1000.0, 256.0]))
def test_scaling_brings_each_total_over_the_cap_to_within_a_unit_a_synapse(table, a_plus,
                                                                           budget, scale):
    args = [table[k] for k in ("pre_trace", "neurons", "incoming_weight", "incoming_source")]
    unscaled = potentiate_incoming(table["weights"].clone(), *args, a_plus, table["w_max"], 0.0,
                                   scale)
    scaled = potentiate_incoming(table["weights"].clone(), *args, a_plus, table["w_max"],
                                 budget, scale)
    onto = torch.isin(table["targets"], table["neurons"])
    assert torch.equal(scaled[~onto], table["weights"][~onto])
    assert (scaled <= unscaled).all(), "scaling only ever lowers a weight"
    cap = budget_units(budget, scale)
    for neuron in table["neurons"].tolist():
        mine = table["targets"] == neuron
        total, before = (int(torch.floor(w[mine] * scale + 0.5).to(torch.int64).sum())
                         for w in (scaled, unscaled))
        if budget == 0 or before <= cap:
            assert torch.equal(scaled[mine], unscaled[mine])
        else:  # one unit of rounding a synapse, and float32's relative error
            assert abs(total - cap) <= int(mine.sum()) + cap * 2.0 ** -20, (total, cap)


# -- counter_random: the definition, pinned ------------------------------------

def _mix32_by_hand(x: int) -> int:
    """The docstring's hash, one Python int at a time (independent of the
    reference's split multiplications)."""
    m = 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    return x ^ (x >> 16)


def _bits_by_hand(key: int, i: int) -> int:
    return _mix32_by_hand(_mix32_by_hand((i + key) & 0xFFFFFFFF) ^ (key >> 32))


@given(st.integers(0, 2**64 - 1), st.integers(1, 40))
def test_counter_random_follows_its_written_definition(key, n):
    uniform, normal = fill_uniform(torch.empty(n), key), fill_normal(torch.empty(n), key)
    scale = float(np.float32(1 / math.sqrt(21845)))
    for i in range(n):
        b = _bits_by_hand(key, i)
        assert uniform[i].item() == (b >> 8) * 2.0 ** -24
        total = sum((b >> shift) & 255 for shift in (0, 8, 16, 24)) - 510
        assert normal[i].item() == float(np.float32(np.float32(total) * np.float32(scale)))


def test_counter_random_streams_are_pinned():
    """Saved agents continue their streams after an upgrade only if the
    definition never changes: these values are the definition's, for good."""
    assert splitmix64(0) == 0xE220A8397B1DCDAF  # SplitMix64's first output from state 0
    assert stream_key(0, 0, 0) == splitmix64(splitmix64(0))
    assert stream_key(12345, 7, 0) == 0xBC98452A2CEB81FB
    assert fill_uniform(torch.empty(3), stream_key(12345, 7, 0)).tolist() == [
        0.4742111563682556, 0.04197877645492554, 0.12472403049468994]
    assert fill_normal(torch.empty(3), stream_key(12345, 7, 0)).tolist() == [
        0.4668453633785248, -0.36535724997520447, 1.143432855606079]


def test_counter_random_draws_look_independent():
    n = 200_000
    normal = fill_normal(torch.empty(n), stream_key(9, 0, 0)).double()
    assert abs(normal.mean()) < 0.01 and abs(normal.var() - 1) < 0.01
    assert normal.abs().max() <= 510 / math.sqrt(21845) + 1e-6
    uniform = fill_uniform(torch.empty(n), stream_key(9, 0, 1)).double()
    assert 0 <= uniform.min() and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.005
    # neighbours in a stream, the next step, and the other stream of a step
    others = {"neighbour": normal.roll(1), "next step": fill_normal(torch.empty(n),
                                                                    stream_key(9, 1, 0)).double(),
              "other stream": fill_normal(torch.empty(n), stream_key(9, 0, 1)).double(),
              "other seed": fill_normal(torch.empty(n), stream_key(10, 0, 0)).double()}
    for what, other in others.items():
        corr = torch.corrcoef(torch.stack([normal, other]))[0, 1].item()
        assert abs(corr) < 0.01, (what, corr)
    counts = torch.bincount((uniform * 16).long(), minlength=16).double()
    chi2 = (((counts - n / 16) ** 2) / (n / 16)).sum().item()
    assert chi2 < 40, chi2  # 15 degrees of freedom: p < 0.001 above 37.7


@pytest.mark.parametrize("call, message", [
    (lambda: fill_uniform(torch.empty(3), -1), r"key must be an int in \[0, 2\*\*64\)"),
    (lambda: fill_uniform(torch.empty(3), 1 << 64), r"key must be an int"),
    (lambda: fill_normal(torch.empty(3), 1.0), r"key must be an int"),
    (lambda: fill_normal(torch.empty(3, dtype=torch.float64), 1), "out must be float32"),
    (lambda: fill_normal(torch.empty(2, 2), 1), r"out must have shape \[\*\]"),
    (lambda: fill_uniform(torch.empty(2), 1, backend="cuda"), "unknown kernel backend"),
    (lambda: stream_key(1, -1, 0), r"step must be in \[0, 2\*\*56\)"),
    (lambda: stream_key(1, 1 << 56, 0), r"step must be in"),
    (lambda: stream_key(1, 0, 256), r"stream must be in \[0, 256\)"),
], ids=["negative-key", "wide-key", "float-key", "float64", "2d", "backend", "negative-step",
        "late-step", "stream"])
def test_counter_random_refuses_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
