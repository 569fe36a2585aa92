"""What abraxas needs to learn and to be measured: freezing all adaptation
of a running sheet, input spikes at exact steps (a ``spikes`` line, or a
raster for programs), homeostasis toward a target rate, initial weights,
and layouts that learn as built, on every backend."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hera.errors import HeraError
from hera.plugins import load_plugins
from hera_family_abraxas import layouts, model
from hera_family_abraxas.model import Sheet
from tests.conftest import compiler_here
from tests.test_abraxas import _assert_same, triton_matches_torch

CPU_BACKENDS = ["torch", pytest.param("cpp", marks=pytest.mark.skipif(
    not compiler_here(), reason="no C++ compiler here: no cpp backend"))]


def _learned(sheet: Sheet) -> dict[str, torch.Tensor]:
    return {name: t.clone() for name, t in sheet.snapshot().tensors.items()}


def _quiet(**overrides) -> dict:
    """An example definition whose inputs never spike by themselves."""
    return layouts.definition_for("example", {"input_rate": 0.0, "noise": 0.0, **overrides})


def _feed(sheet: Sheet, line: str) -> None:
    """A line through the family's hook, as hera gives it."""
    assert load_plugins().family_hooks("abraxas").hera_encode_input(agent=sheet,
                                                 line=line) is True


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_freezing_changes_nothing_learned_while_the_sheet_runs_on(backend):
    d = layouts.definition_for("example", {"noise": 1.0})
    sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed=4, backend=backend)
    sheet.set_input([1.0, 0.8, 0.6, 0.9])
    sheet.run(80)
    learned = _learned(sheet)
    assert learned["weights"].any() and learned["thresholds"].any()

    _feed(sheet, "freeze")
    membranes, t = sheet.membrane.clone(), sheet.t
    sheet.take_output()
    sheet.run(150)
    for name, tensor in sheet.snapshot().tensors.items():
        assert torch.equal(tensor, learned[name]), f"{name} changed while frozen"
    assert sheet.t == t + 150 and not torch.equal(sheet.membrane, membranes)
    assert sum(sheet.take_output()) > 0, "a frozen sheet still spikes"
    assert sheet.snapshot().state.values["frozen"] is True

    _feed(sheet, "unfreeze")
    sheet.run(80)
    after = sheet.snapshot().tensors
    assert not torch.equal(after["weights"], learned["weights"])
    assert not torch.equal(after["thresholds"], learned["thresholds"])


def test_freezing_outlasts_a_reward_and_a_save():
    """A reward line does not thaw a frozen sheet, and a saved frozen sheet
    comes back frozen."""
    d = layouts.definition_for("example", {"noise": 1.0})
    sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed=2, backend="torch")
    sheet.set_input([1.0, 1.0])
    sheet.run(40)
    sheet.set_frozen(True)
    sheet.set_modulator(3.0)
    snap = sheet.snapshot()
    back = Sheet(snap.definition, snap.tensors, snap.state, "cpu", seed=2, backend="torch")
    back.run(60)
    for name, tensor in back.snapshot().tensors.items():
        assert torch.equal(tensor, snap.tensors[name]), name


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_spikes_line_makes_exactly_those_channels_spike_at_the_next_step(backend):
    d = _quiet(inputs=9)
    sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed=1, backend=backend)
    sheet.run(3)
    assert not sheet.pre_trace[:9].any()
    _feed(sheet, "spikes 2 7 2")
    assert not sheet.pre_trace[:9].any(), "nothing spikes before the next step"
    sheet.run(1)
    expected = torch.zeros(9)
    expected[[2, 7]] = 1.0
    assert torch.equal(sheet.pre_trace[:9], expected)  # a trace jumps by 1 at its spike
    sheet.run(1)  # given for one step only: now the traces only decay
    assert torch.equal(sheet.pre_trace[:9], expected * sheet.decay_trace)
    _feed(sheet, "spikes")  # none
    sheet.run(1)
    assert torch.equal(sheet.pre_trace[:9], expected * sheet.decay_trace * sheet.decay_trace)


@pytest.mark.parametrize("line, message", [("spikes 3 16", "no input channel 16"),
                                           ("spikes -1", "no input channel -1"),
                                           ("spikes 2 x", "channel numbers, not 'x'"),
                                           ("spikes 1.5", "channel numbers, not '1.5'")])
def test_a_bad_spikes_line_is_refused_and_gives_nothing(line, message):
    d = _quiet()
    sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed=1, backend="torch")
    with pytest.raises(HeraError, match=message):
        _feed(sheet, line)
    sheet.run(2)
    assert not sheet.pre_trace[:d["inputs"]].any()


def test_given_spikes_are_saved_until_their_step():
    d = _quiet(noise=0.5)
    sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed=8, backend="torch")
    sheet.run(5)
    sheet.give_input_spikes([0, 5, 11])
    snap = sheet.snapshot()
    assert snap.state.tensors["input_spikes"].tolist() == [
        1 if i in (0, 5, 11) else 0 for i in range(d["inputs"])]
    back = Sheet(snap.definition, snap.tensors, snap.state, "cpu", seed=8, backend="torch")
    sheet.run(4)
    back.run(4)
    _assert_same(sheet, back)
    assert back.pre_trace[[0, 5, 11]].all()


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**31), st.floats(0.0, 0.5))
def test_a_raster_gives_the_bits_of_one_spikes_line_a_step(cpp_backend, steps, seed, density):
    """The array path for programs: a [steps, inputs] raster in one call
    against a line before each step, on torch and on the compiled step,
    learning on."""
    d = layouts.definition_for("example", {"noise": 1.0, "input_rate": 0.02})
    raster = torch.rand(steps, d["inputs"], generator=torch.Generator().manual_seed(seed)) \
        < density
    by_line = Sheet(d, model.zero_parameters(d), None, "cpu", seed, backend="torch")
    for row in raster:
        by_line.give_input_spikes(row.nonzero().view(-1).tolist())
        by_line.run(1)
    for backend in ("torch", "cpp"):
        sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed, backend=backend)
        sheet.run(steps, spikes=raster)
        _assert_same(by_line, sheet)
    # every channel given a spike has a trace of it
    assert by_line.pre_trace[:d["inputs"]][raster.any(0)].all()


def test_a_raster_of_another_shape_is_refused():
    d = _quiet()
    sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed=1, backend="torch")
    for bad in (torch.zeros(3, d["inputs"] + 1, dtype=torch.bool), torch.zeros(2, d["inputs"]),
                torch.zeros(4, d["inputs"], dtype=torch.bool)):
        with pytest.raises(HeraError, match=r"must be a bool or uint8 tensor of shape \[3, 16\]"):
            sheet.run(3, spikes=bad)
    assert sheet.t == 0


def test_the_triton_backend_freezes_and_takes_spikes_with_the_same_bits():
    """Frozen steps, a spikes line, a raster, a target rate with a
    threshold floor, a depression window of its own and a trace offset on
    the Triton kernels (interpreted on the CPU) against the torch backend."""
    assert triton_matches_torch(
        "layouts.definition_for('example', {'noise': 1.0, 'inputs': 5, 'target_rate': 0.05,"
        " 'min_threshold': 0.4, 'tau_depression': 30.0, 'trace_offset': 0.3})",
        "raster = torch.rand(12, 5, generator=torch.Generator().manual_seed(1)) < 0.3\n"
        "s.run(12, spikes=raster)\n"
        "s.set_frozen(True)\n"
        "s.give_input_spikes([1, 4])\n"
        "s.run(6)\n"
        "s.set_frozen(False)\n"
        "s.run(6, spikes=raster[:6])")


def test_the_digits_layout_learns_two_patterns_apart_as_built():
    """Defaults that learn: an agent of the ``digits`` layout, no override,
    shown two images in turn, answers them with different cells once
    frozen (each image's most active cell is silent for the other)."""
    d = layouts.definition_for("digits", {})
    sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed=3)
    top = [0.6 if i < 32 else 0.0 for i in range(64)]
    bottom = [0.0 if i < 32 else 0.6 for i in range(64)]

    def show(image: list[float]) -> torch.Tensor:
        sheet.set_input(image)
        sheet.take_output()
        sheet.run(40)
        counts = torch.tensor(sheet.take_output())
        sheet.set_input([0.0] * 64)
        sheet.run(5)
        return counts

    for _ in range(60):
        show(top)
        show(bottom)
    sheet.set_frozen(True)
    a, b = sum(show(top) for _ in range(5)), sum(show(bottom) for _ in range(5))
    assert a.sum() > 0 and b.sum() > 0
    assert b[a.argmax()] == 0 and a[b.argmax()] == 0, (a, b)


@pytest.mark.parametrize("target", [0.005, 0.03])
def test_homeostasis_holds_a_driven_sheet_near_its_target_rate(target):
    """Strongly driven and noisy, learning on, the output area fires near
    the target rate once the thresholds have settled, whichever target."""
    d = layouts.definition_for("example", {"noise": 1.0, "target_rate": target,
                                           "tau_theta": 1e6})
    sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed=2)
    sheet.set_input([1.0] * d["inputs"])
    sheet.run(20_000)
    sheet.take_output()
    sheet.run(5_000)
    rate = sum(sheet.take_output()) / (5_000 * layouts.output_size(d))
    assert target / 1.5 <= rate <= target * 1.5, rate
    assert (sheet.thresholds >= 0).all()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_silent_neuron_lowers_its_threshold_to_min_threshold_and_no_further(backend):
    """Under a target rate, input too weak to reach the threshold lets θ_j
    fall below 0 until the neurons fire; with no input at all it stops
    exactly at min_threshold. A floor at the threshold keeps the old rule:
    θ_j never below 0, and the weak input never fires a neuron."""
    def sheet_for(floor: float, drive: float) -> Sheet:
        d = _quiet(depth=1, target_rate=0.05, theta_plus=0.05, tau_theta=1e9,
                   min_threshold=floor)
        sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed=4, backend=backend)
        sheet.input_weights.fill_(drive)   # a steady membrane near 0.5: below 1, above 0.3
        sheet.set_modulator(0.0)           # weights stay; thresholds adapt
        sheet.set_input([1.0] * d["inputs"])
        sheet.run(3_000)
        return sheet

    floor = torch.tensor(0.3 - 1.0)
    starved = sheet_for(0.3, 0.0)
    assert sum(starved.take_output()) == 0
    assert torch.equal(starved.thresholds, floor.expand_as(starved.thresholds))
    weak = sheet_for(0.3, 0.003)
    assert sum(weak.take_output()) > 0
    assert (weak.thresholds >= floor).all() and (weak.thresholds < 0).all()
    for drive in (0.0, 0.003):
        old = sheet_for(1.0, drive)
        assert sum(old.take_output()) == 0 and not old.thresholds.any()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_the_neuron_traces_decay_with_tau_depression(backend):
    """Neuron traces decay by exp(-1/tau_depression) a step, source traces
    by exp(-1/tau_trace); tau_depression 0 means tau_trace for both."""
    import math

    for tau_depression, expected in [(40.0, 40.0), (0.0, 10.0)]:
        d = _quiet(tau_trace=10.0, tau_depression=tau_depression)
        sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed=5, backend=backend)
        sheet.pre_trace.fill_(1.0)
        sheet.post_trace.fill_(1.0)
        sheet.run(5)
        for trace, tau in [(sheet.post_trace, expected), (sheet.pre_trace, 10.0)]:
            assert torch.allclose(trace, torch.full_like(trace, math.exp(-5 / tau)), rtol=1e-5)


def test_a_layout_builds_its_input_weights_at_initial_weight():
    from hera.errors import DefinitionError

    hook = load_plugins().family_hooks("abraxas")
    built = hook.hera_build(layout="example",
                            overrides={"initial_weight": 0.25}, seed=1)
    assert torch.equal(built.tensors["input_weights"],
                       torch.full_like(built.tensors["input_weights"], 0.25))
    assert not built.tensors["weights"].any() and not built.tensors["thresholds"].any()
    plain = hook.hera_build(layout="example", overrides={}, seed=1)
    assert not plain.tensors["input_weights"].any()
    with pytest.raises(DefinitionError, match="initial_weight"):
        layouts.definition_for("example", {"initial_weight": 1.5})


@settings(max_examples=15, deadline=None)
@given(st.lists(st.one_of(st.floats(-2.0, 3.0), st.sampled_from([float("nan"), float("inf"),
                                                                 -float("inf"), -0.0, 1.0])),
                min_size=0, max_size=20),
       st.lists(st.integers(0, 15), max_size=6), st.integers(0, 2**31),
       st.sampled_from(["torch", "cpp"]))
def test_arrays_give_the_bits_of_the_lines_they_stand_for(cpp_backend, values, channels, seed,
                                                          backend):
    """``hera_feed_array`` (the Python API's feed) against the lines a
    person would type, over steps with learning on, on torch and on the
    compiled step (which computes the rates itself); and the output array
    against the output line."""
    hook = load_plugins().family_hooks("abraxas")
    d = layouts.definition_for("example", {"noise": 1.0, "input_rate": 0.02})
    by_line = Sheet(d, model.zero_parameters(d), None, "cpu", seed, backend="torch")
    by_array = Sheet(d, model.zero_parameters(d), None, "cpu", seed, backend=backend)
    line = " ".join(repr(v) for v in values) if values else "0"
    _feed(by_line, line)
    _feed(by_line, "spikes " + " ".join(map(str, channels)))
    import numpy

    assert hook.hera_feed_array(agent=by_array,
                                values=numpy.array(values if values else [0.0]),
                                spikes=numpy.array(channels, dtype=numpy.int64)) is True
    assert by_line.input_rates.view(torch.int32).equal(by_array.input_rates.view(torch.int32))
    by_line.run(30)
    by_array.run(30)
    _assert_same(by_line, by_array)
    counts = hook.hera_output_array(agent=by_array)
    assert counts.tolist() == [int(c) for c in hook.hera_decode_output(
        agent=by_line).split()]


@pytest.mark.parametrize("values, spikes, message", [
    (["a", "b"], None, "must be an array of numbers"),
    ([0.5], [3, 16], "no input channel 16"),
    (None, [0.5], "channel numbers, not 0.5"),
    (None, torch.tensor([1.0]), "channel numbers, not torch.float32"),
])
def test_a_bad_array_is_refused_and_changes_nothing(values, spikes, message):
    d = _quiet()
    sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed=1, backend="torch")
    rates = sheet.input_rates.clone()
    with pytest.raises(HeraError, match=message):
        load_plugins().family_hooks("abraxas").hera_feed_array(agent=sheet, values=values,
                                            spikes=spikes)
    assert torch.equal(sheet.input_rates, rates) and not sheet.input_spikes.any()


def test_the_freeze_hook_freezes_all_adaptation():
    d = layouts.definition_for("example", {"noise": 1.0})
    sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed=3, backend="torch")
    hook = load_plugins().family_hooks("abraxas")
    sheet.set_input([1.0, 0.8, 0.6, 0.9])
    sheet.run(80)
    assert hook.hera_freeze(agent=sheet, frozen=True) is True
    before = _learned(sheet)
    sheet.run(200)
    assert all(torch.equal(before[k], t) for k, t in _learned(sheet).items())
    assert hook.hera_freeze(agent=sheet, frozen=False) is True
    sheet.run(80)
    assert not all(torch.equal(before[k], t) for k, t in _learned(sheet).items())


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 300), st.integers(0, 2**31), st.sampled_from(["example", "small"]))
def test_activity_counts_every_spike_alike_on_torch_and_the_compiled_step(cpp_backend, steps,
                                                                         seed, layout):
    """hera_activity: per population, the spikes since load, the same on
    every backend; the output layer's agree with the output counts."""
    d = layouts.definition_for(layout, {"noise": 1.0})
    sheets = [Sheet(d, model.built_parameters(d), None, "cpu", seed, backend=backend)
              for backend in ("torch", "cpp")]
    for sheet in sheets:
        sheet.set_input([1.0, 0.7, 0.3] * 30)
        sheet.run(steps)
    torch_sheet, cpp_sheet = sheets
    assert torch.equal(torch_sheet.activity, cpp_sheet.activity)
    counts = load_plugins().family_hooks("abraxas").hera_activity(agent=cpp_sheet)
    assert list(counts) == ["inputs"] + [f"layer {k + 1}" for k in range(d["depth"])]
    assert counts["inputs"][0] > 0 and counts["inputs"][1] == d["inputs"]
    assert counts[f"layer {d['depth']}"][0] == sum(cpp_sheet.take_output())
    assert sum(size for _, size in counts.values()) == d["inputs"] + layouts.neuron_count(d)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_trace_offset_makes_quiet_inputs_lose_weight_when_their_cell_fires(backend):
    """With trace_offset, an input channel that was silent before its cell
    fires loses weight (its trace is under the offset); one that drove the
    cell gains. Without it, both would only gain."""
    d = _quiet(depth=1, cells=1, width=1, height=1, inputs=4, initial_weight=0.5,
               threshold=0.4, a_minus=0.0, w_budget=0.0, a_plus=0.1, trace_offset=0.3)
    sheet = Sheet(d, model.built_parameters(d), None, "cpu", seed=5, backend=backend)
    before = sheet.input_weights.clone()
    for _ in range(6):  # channels 0 and 1 drive the cell; 2 and 3 stay silent
        sheet.give_input_spikes([0, 1])
        sheet.run(1)
    assert sheet.output_counts.sum() > 0
    after = sheet.input_weights
    assert (after[:2] > before[:2]).all() and (after[2:] < before[2:]).all()


@pytest.mark.parametrize("layout, least", [("example", 1.3), ("small", 5.0)])
def test_a_layout_as_built_learns_a_repeated_pattern_of_rates(layout, least):
    """The protocol of benchmarks/selectivity.py, one seed: the layout's defaults,
    built weights, a fixed pattern shown among random ones of the same
    density; frozen, the output answers it more than new random patterns by
    ``least`` times, where the same agent frozen from the start answers
    both alike."""
    d = layouts.definition_for(layout, {})
    g = torch.Generator().manual_seed(1)

    def pattern() -> list[float]:
        values = torch.zeros(d["inputs"])
        values[torch.randperm(d["inputs"], generator=g)[:d["inputs"] // 2]] = 1.0
        return values.tolist()

    def answer(sheet: Sheet, values: list[float]) -> int:
        sheet.set_input(values)
        sheet.take_output()
        sheet.run(50)
        return int(sum(sheet.take_output()))

    shown = pattern()
    training, fresh = [pattern() for _ in range(60)], [pattern() for _ in range(10)]
    ratios = []
    for plastic in (True, False):
        sheet = Sheet(d, model.built_parameters(d), None, "cpu", seed=1)
        sheet.set_frozen(not plastic)
        for other in training:
            answer(sheet, shown)
            answer(sheet, other)
        sheet.set_frozen(True)
        ratios.append(sum(answer(sheet, shown) for _ in fresh)
                      / sum(answer(sheet, p) for p in fresh))
    learned, control = ratios
    assert learned > least, ratios
    assert 0.8 < control < 1.25, ratios
