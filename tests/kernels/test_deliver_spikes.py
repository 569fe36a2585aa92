"""hera.kernels.deliver_spikes: ``deliver_spikes`` and ``take_slot`` on their
Triton kernels against the PyTorch reference (per-synapse and per-slot
delays, empty slots, ring wrap-around, duplicate targets, holes in the list
of spiking rows, rounding to the ring's fixed-point quantum), the arguments
they and ``check_synapses`` refuse, and properties of the reference:
delivery does not depend on the order of the sources or on splitting them
over calls, and the taken current is the float64 sum within a quantum per
event.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hera.kernels.deliver_spikes import check_synapses, deliver_spikes, take_slot
from tests.kernels.common import Case, _gen, _nonzero_randn, _parity, _with_holes


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


# -- arguments ---------------------------------------------------------------

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
