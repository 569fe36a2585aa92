"""hera.kernels.stdp: ``depress_rows`` and ``potentiate_incoming`` (with and
without a synaptic budget) on their Triton kernels against the PyTorch
reference, that the budget cases really scale some neurons and not others,
the arguments they refuse, ``budget_units``' rounding, and properties of
the reference: depression lowers only the live synapses of the spiking
rows, potentiation raises only the synapses onto the spiking neurons, and
scaling brings each total over the cap to within a unit a synapse.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hera.kernels.stdp import budget_units, depress_rows, potentiate_incoming
from tests.kernels.common import Case, _gen, _incoming, _parity, _with_holes


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
                   budget=0.0, scale=65536.0, a_plus=0.05, w_max=1.0, trace_offset=0.0,
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
            "trace_offset": trace_offset,
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
    # traces in [0.05, 2.05): an offset inside that range depresses some
    # synapses and potentiates others, with and without scaling
    _incoming_case("trace-offset(0.9)", trace_offset=0.9, a_plus=0.3, seed=44),
    _incoming_case("trace-offset-with-budget(0.7,8.0)", trace_offset=0.7, a_plus=0.3,
                   budget=8.0, seed=45),
    _incoming_case("trace-offset-odd(1/3,J=1151)", trace_offset=1 / 3, a_plus=0.2, rows=60,
                   slots=61, neurons=3, incoming=1151, spiking=2, budget=200.0, seed=46),
]


@pytest.mark.parametrize("case", POTENTIATE_CASES, ids=[c.id for c in POTENTIATE_CASES])
def test_potentiate_incoming_matches_reference(triton_device, case):
    def run(backend, t):
        return potentiate_incoming(t["weights"], t["pre_trace"], t["neurons"],
                                   t["incoming_weight"], t["incoming_source"], t["a_plus"],
                                   t["w_max"], t["budget"], t["scale"], t["trace_offset"],
                                   backend=backend)
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


# -- arguments ---------------------------------------------------------------

def _plastic_arguments() -> tuple[list[Any], list[Any]]:
    """Valid arguments of depress_rows and of potentiate_incoming (small)."""
    one, holes = torch.tensor([0], dtype=torch.int32), torch.full((5, 2), -1, dtype=torch.int32)
    return ([torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.int32), one, torch.zeros(5), 0.1,
             1.0],
            [torch.zeros(4, 3), torch.zeros(4), one, holes, holes.clone(), 0.1, 1.0, 2.0,
             2.0 ** 16, 0.0])


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
    (9, -0.5, "trace_offset must be a finite number >= 0"),
    (9, math.nan, "trace_offset must be a finite number >= 0"),
], ids=["transposed-weights", "pre_trace-shape", "float-neurons", "float-incoming_weight",
        "incoming_source-shape", "infinite-a_plus", "negative-budget", "text-budget",
        "huge-budget", "zero-scale", "negative-trace_offset", "nan-trace_offset"])
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


@given(plastic_tables(), st.floats(0.0, 1.0, width=32), st.floats(0.0, 2.0, width=32))
def test_a_trace_offset_depresses_the_quiet_sources_and_potentiates_the_rest(table, a_plus,
                                                                           offset):
    before = table["weights"].clone()
    after = potentiate_incoming(table["weights"], table["pre_trace"], table["neurons"],
                                table["incoming_weight"], table["incoming_source"], a_plus,
                                table["w_max"], 0.0, 2.0 ** 16, offset)
    onto = torch.isin(table["targets"], table["neurons"])
    assert torch.equal(after[~onto], before[~onto])
    source = torch.arange(before.shape[0]).unsqueeze(1).expand_as(before)
    trace = table["pre_trace"][source]
    shifted = (trace - np.float32(offset))[onto]  # float32, rounded as the rule says
    assert after[onto].tolist() == _plastic_formula(before[onto], shifted, a_plus,
                                                    table["w_max"], 1)
    quiet = onto & (trace < np.float32(offset))
    assert (after[quiet] <= before[quiet]).all()
    assert (after[onto & ~quiet] >= before[onto & ~quiet]).all()


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
