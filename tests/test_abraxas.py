"""The minimal abraxas family: geometry, zero build, learning, exactness,
input and output."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hera_family_abraxas import codec, connectivity, layouts, model
from hera_family_abraxas.model import Sheet


def _sheet(seed=5, **overrides) -> Sheet:
    d = layouts.definition_for("example", overrides)
    return Sheet(d, model.zero_parameters(d), None, "cpu", seed)


def _reload(sheet: Sheet) -> Sheet:
    snap = sheet.snapshot()
    return Sheet(snap.definition, snap.tensors, snap.state, "cpu", seed=sheet.seed)


def _assert_same(a: Sheet, b: Sheet) -> None:
    sa, sb = a.snapshot(), b.snapshot()
    for name in sa.tensors:
        assert torch.equal(sa.tensors[name], sb.tensors[name]), name
    for name in sa.state.tensors:
        assert torch.equal(sa.state.tensors[name], sb.state.tensors[name]), name
    assert sa.state.values == sb.state.values


geometries = st.fixed_dictionaries({
    "width": st.integers(1, 4), "height": st.integers(1, 3), "depth": st.integers(1, 3),
    "cells": st.integers(1, 5), "inputs": st.integers(1, 7), "dendrite": st.integers(0, 3),
    "axon": st.integers(1, 5),
})


@settings(deadline=None)
@given(geometries)
def test_synapse_tables_agree_with_the_geometry(overrides):
    """Outgoing rows, incoming rows and the counted synapses name the same
    synapses: every incoming position is an outgoing slot aimed at that
    neuron (or an input weight of a first-layer neuron), each exactly once."""
    d = layouts.definition_for("example", overrides)
    targets = connectivity.targets(d)
    weight, source = connectivity.incoming(d)
    first, k = layouts.first_layer_size(d), layouts.slots_per_row(d)
    assert targets.shape == (layouts.neuron_count(d), k)
    live_out = int((targets >= 0).sum())
    assert live_out + d["inputs"] * first == layouts.synapse_count(d)
    delay = connectivity.slots(d).delay
    assert int(delay.min()) >= 1 and int(delay.max()) <= d["axon"]

    split = d["inputs"] * first
    neuron = torch.arange(targets.shape[0])[:, None].expand_as(weight)
    live = weight >= 0
    assert torch.equal(live, source >= 0)
    flat, src, j = weight[live].long(), source[live].long(), neuron[live]
    assert flat.unique().numel() == flat.numel() == layouts.synapse_count(d)
    is_input = flat < split
    assert torch.equal(flat[is_input] % first, j[is_input])
    assert torch.equal(flat[is_input] // first, src[is_input])
    row, slot = (flat[~is_input] - split) // k, (flat[~is_input] - split) % k
    assert torch.equal(targets[row, slot].long(), j[~is_input])
    assert torch.equal(src[~is_input], d["inputs"] + row)


@settings(deadline=None, max_examples=40)
@given(geometries, st.integers(1, 300))
def test_synapse_tables_are_the_geometry_however_they_are_chunked(overrides, at_once):
    """Every outgoing slot aims where the module docstring says, checked
    neuron by neuron in plain Python; built a few entries at a time, the
    tables are the same."""
    d = layouts.definition_for("example", overrides)
    targets = connectivity.targets(d)
    weight, source = connectivity.incoming(d)
    r, cells, w, h, depth = d["dendrite"], d["cells"], d["width"], d["height"], d["depth"]
    span = 2 * r + 1
    for n in range(layouts.neuron_count(d)):
        layer, y, x, cell = n // (cells * w * h), (n // (cells * w)) % h, (n // cells) % w, n % cells
        for k in range(layouts.slots_per_row(d)):
            c, dx, dy, p = k % cells, (k // cells) % span - r, (k // (cells * span)) % span - r, \
                k // (cells * span * span)
            ol, oy, ox = layer + (-1 if p == 2 else p), y + dy, x + dx
            on_sheet = 0 <= ol < depth and 0 <= oy < h and 0 <= ox < w
            itself = p == 0 and dy == 0 and dx == 0 and c == cell
            want = ((ol * h + oy) * w + ox) * cells + c if on_sheet and not itself else -1
            assert int(targets[n, k]) == want, (n, k)
    import hera_family_abraxas.connectivity as module

    saved = module._ENTRIES_AT_ONCE
    module._ENTRIES_AT_ONCE = at_once
    try:
        assert torch.equal(connectivity.targets(d), targets)
        chunked = connectivity.incoming(d)
        assert torch.equal(chunked[0], weight) and torch.equal(chunked[1], source)
    finally:
        module._ENTRIES_AT_ONCE = saved


def test_built_instance_is_all_zero():
    d = layouts.definition_for("example", {})
    assert all(not t.any() for t in model.zero_parameters(d).values())


def test_learning_starts_from_zero_weights():
    sheet = _sheet()
    sheet.run(500)
    assert sheet.weights.any() and sheet.input_weights.any()
    empty = connectivity.targets(sheet.definition) < 0
    assert empty.any() and not sheet.weights[empty].any(), "empty slots must stay zero"
    assert float(sheet.weights.max()) <= sheet.definition["w_max"]
    assert float(sheet.input_weights.max()) <= sheet.definition["w_max"]


def test_winner_take_all_allows_one_spike_per_layer_of_a_column():
    sheet = _sheet(noise=3.0)
    for _ in range(50):
        before = sheet.post_trace.clone()
        sheet.run(1)
        spikes = sheet.post_trace - before * sheet.decay_trace
        per_group = (spikes > 0.5).view(-1, sheet.definition["cells"]).sum(1)
        assert int(per_group.max()) <= 1


@settings(max_examples=15)
@given(st.integers(1, 60), st.integers(1, 60), st.integers(0, 2**31))
def test_a_then_b_steps_equal_a_plus_b_across_a_reload(a, b, seed):
    whole = _sheet(seed)
    whole.run(a + b)
    split = _sheet(seed)
    split.run(a)
    split = _reload(split)
    split.run(b)
    _assert_same(whole, split)


def test_input_lines_drive_the_input_area():
    sheet = _sheet()
    sheet.set_input(codec.line_to_values("1 0 0.5"))
    rates = sheet.input_rates.tolist()
    assert rates[:3] == [0.5, 0.0, 0.25]
    assert rates[3] == pytest.approx(sheet.definition["input_rate"])
    assert codec.line_to_values("AB") == [65 / 255, 66 / 255]
    assert codec.line_to_values("2, -1") == [1.0, 0.0]


def test_output_counts_are_taken_once():
    sheet = _sheet(noise=2.0)
    sheet.run(100)
    counts = sheet.take_output()
    assert len(counts) == 9 * 6 and sum(counts) > 0
    assert sum(sheet.take_output()) == 0
    assert codec.counts_to_line([1, 0, 3]) == "1 0 3"


def test_a_repeated_pattern_is_learned_from_zero():
    """Inputs that are driven together end with stronger weights onto the
    first layer than idle inputs."""
    sheet = _sheet(seed=11)
    pattern = "1 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0"
    sheet.set_input(codec.line_to_values(pattern))
    sheet.run(1500)
    feed = sheet.input_weights
    assert float(feed[:4].mean()) > 2 * float(feed[4:].mean())


def test_the_random_draws_are_a_function_of_the_seed_and_the_step():
    """No generator state is saved: a sheet restored at step 10 with the
    agent's seed continues exactly as the one that ran on; another seed
    draws other noise and input spikes."""
    d = layouts.definition_for("example", {"noise": 1.0, "input_rate": 0.2})
    straight = Sheet(d, model.zero_parameters(d), None, "cpu", seed=5, backend="torch")
    straight.run(10)
    half = straight.snapshot()
    assert set(half.state.tensors) == set(model.STATE) and set(half.state.values) == {
        "t", "modulator", "frozen"}
    straight.run(30)
    end = straight.snapshot()
    for seed, same in ((5, True), (6, False)):
        resumed = Sheet(half.definition, half.tensors, half.state, "cpu", seed=seed,
                        backend="torch")
        resumed.run(30)
        again = resumed.snapshot()
        equal = all(torch.equal(again.state.tensors[k], end.state.tensors[k])
                    for k in model.STATE) and torch.equal(again.tensors["weights"],
                                                           end.tensors["weights"])
        assert equal == same, seed


def triton_matches_torch(definition: str, steps: str) -> bool:
    """Whether a sheet on hera.kernels' Triton kernels (interpreted on the
    CPU, in a process of its own) ends bit for bit where the torch backend
    does, state and weights included, having learned something, and has
    counted the same spikes (its activity).

    :param definition: an expression for the definition.
    :param steps: code that drives the sheet ``s`` (one line per statement).
    """
    import os
    import subprocess
    import sys

    code = "\n".join([
        "import torch",
        "from hera_family_abraxas import layouts, model",
        f"d = {definition}",
        "runs = []",
        "for backend in ('torch', 'triton'):",
        "    s = model.Sheet(d, model.zero_parameters(d), None, 'cpu', 3, backend=backend)",
        *(f"    {line}" for line in steps.splitlines()),
        "    runs.append((s.snapshot(), s.activity.clone()))",
        "(a, counted_a), (b, counted_b) = runs",
        "same = all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)",
        "same &= all(torch.equal(a.state.tensors[k], b.state.tensors[k]) for k in a.state.tensors)",
        "same &= torch.equal(counted_a, counted_b) and bool(counted_a.any())",
        "print('same' if same and a.tensors['weights'].any() else 'different')", ""])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TRITON_INTERPRET": "1"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip() == "same"


def test_the_triton_backend_gives_the_same_bits():
    """The sheet on hera.kernels' Triton kernels (interpreted on a CPU) runs
    bit-identically to the torch backend, state and weights included."""
    assert triton_matches_torch("layouts.definition_for('example', {'noise': 1.0})", "s.run(40)")


@settings(max_examples=15, deadline=None)
@given(geometries, st.sampled_from(["torch", "cpp"]))
def test_simulate_is_within_ten_percent_of_what_a_sheet_holds(cpp_backend, overrides, backend):
    """The resource report's lasting classes (everything but the step's
    temporaries) against the bytes of every tensor a live sheet keeps, on
    the torch backend (with synapse tables) and the cpp step (without); and
    the snapshot's bytes exactly."""
    d = layouts.definition_for("example", overrides)
    sheet = Sheet(d, model.zero_parameters(d), None, "cpu", 1, backend=backend)
    sheet.run(2)
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in vars(sheet).values() if isinstance(t, torch.Tensor)}
    held = sum(storages.values())  # the weight tables are views of one buffer
    estimate = layouts.memory_by_class(d, sheet.backend)
    assert ("synapse tables" in estimate) == (backend == "torch")
    lasting = sum(v for k, v in estimate.items() if k != "step temporaries")
    assert abs(lasting - held) <= 0.1 * held, (lasting, held)
    snap = sheet.snapshot()
    copied = sum(t.nbytes for t in (*snap.tensors.values(), *snap.state.tensors.values()))
    assert layouts.snapshot_bytes(d) == copied


def _response(sheet: Sheet, line: str, steps: int = 50) -> int:
    """Output-area spikes while ``line`` drives the input area."""
    sheet.set_input(codec.line_to_values(line))
    sheet.take_output()
    sheet.run(steps)
    return sum(sheet.take_output())


def test_output_learns_to_answer_a_repeated_pattern_more_than_others():
    """From zero weights: a pattern repeated among random patterns of the same
    density ends with the output area answering it more than them; the same
    sheet without plasticity answers both alike (the noise alone drives it)."""
    import random

    pattern = "1 1 1 1 0 0 0 0 1 1 0 0 0 0 1 1"
    rng = random.Random(3)

    def another() -> str:
        bits = [1] * 8 + [0] * 8
        rng.shuffle(bits)
        return " ".join(map(str, bits))

    def compare(sheet: Sheet) -> tuple[int, int]:
        return (sum(_response(sheet, pattern) for _ in range(10)),
                sum(_response(sheet, another()) for _ in range(10)))

    frozen = _sheet(seed=3, a_plus=0.0, a_minus=0.0)
    for _ in range(30):
        _response(frozen, pattern)
        _response(frozen, another())
    frozen_pattern, frozen_other = compare(frozen)
    assert not frozen.weights.any()
    assert 0.7 < frozen_pattern / frozen_other < 1.4

    sheet = _sheet(seed=3)
    for _ in range(30):
        _response(sheet, pattern)
        _response(sheet, another())
    assert sheet.weights.any()
    after_pattern, after_other = compare(sheet)
    assert after_pattern > 1.5 * after_other, (after_pattern, after_other)


def test_taking_spiking_rows_in_batches_changes_no_bit(monkeypatch):
    """The torch backend splits a step's spiking rows into batches to bound
    its temporaries; any batch size gives the same sheet."""
    whole = _sheet(seed=8, noise=2.0)
    whole.set_input([1.0] * 16)
    whole.run(60)
    monkeypatch.setattr(layouts, "ROWS_AT_ONCE", 1)
    split = _sheet(seed=8, noise=2.0)
    split.set_input([1.0] * 16)
    split.run(60)
    assert whole.weights.any()
    _assert_same(whole, split)


def test_the_sized_layouts_have_the_sizes_they_claim():
    """big: ~77k neurons and ~0.3e9 synapses; large: 40-80 GB on a GPU;
    medium: 4,000 neurons and ~0.3M synapses."""
    big = layouts.definition_for("big", {})
    assert 70_000 <= layouts.neuron_count(big) <= 85_000
    assert 0.25e9 <= layouts.synapse_count(big) <= 0.4e9
    large = layouts.definition_for("large", {})
    assert 40e9 <= sum(layouts.memory_by_class(large, "triton").values()) <= 80e9
    medium = layouts.definition_for("medium", {})
    assert layouts.neuron_count(medium) == 4000
    assert 0.25e6 <= layouts.synapse_count(medium) <= 0.4e6


def test_the_former_layout_names_build_the_same_sheets_and_say_so(world):
    """`coba` and `microcircuit` named models abraxas does not implement;
    they still build, as `medium` and `big`, with one line saying so."""
    for old, new in layouts.RENAMED.items():
        assert layouts.definition_for(old, {"axon": 2}) == layouts.definition_for(new, {"axon": 2})
    listed = world.run("layouts").stdout
    assert "abraxas/medium" in listed and "abraxas/big" in listed
    assert "coba" not in listed and "microcircuit" not in listed
    built = world.run("--layout", "coba", "build", "--set", "width=2", "--set", "height=2")
    assert built.returncode == 0, built.stderr
    assert "layout 'coba' is now called 'medium'" in built.stderr


@settings(max_examples=12, deadline=None)
@given(geometries, st.integers(1, 80), st.integers(0, 80), st.sampled_from([0.0, 0.3, 4.0]),
       st.integers(0, 2**31), st.sampled_from([{}, {"a_minus": 0.0}, {"a_plus": 0.0},
                                               {"target_rate": 0.05},
                                               {"target_rate": 0.05, "min_threshold": 0.3,
                                                "tau_depression": 35.0},
                                               {"trace_offset": 0.3}]))
def test_the_compiled_cpu_step_gives_the_torch_backends_bits(cpp_backend, overrides, a, b,
                                                             budget, seed, rates):
    """The cpp backend (one compiled loop per chunk) against the torch
    backend (the kernels' references), learning and scaling included, over
    chunk boundaries, with either rate at 0 (its events skipped), with
    thresholds drawn to a target rate, below 0 down to a floor, a
    depression window of its own, and potentiation less a trace offset."""
    d = layouts.definition_for("example", {**overrides, "noise": 1.5, "w_budget": budget,
                                           **rates})
    sheets = []
    for backend in ("torch", "cpp"):
        sheet = Sheet(d, model.zero_parameters(d), None, "cpu", seed, backend=backend)
        sheet.set_input([1.0, 0.2, 0.7])
        sheet.set_modulator(1.0 + (seed % 3) / 3)
        sheet.run(a)
        sheet.run(b)
        sheets.append(sheet)
    _assert_same(*sheets)
    assert sheets[1].t == a + b


def test_the_compiled_step_refuses_arrays_that_do_not_fit_its_geometry(cpp_backend):
    """The step finds synapses from the geometry in its sizes and writes
    through raw pointers: a weight buffer or state array of another size,
    or a geometry that is not the arrays', is refused before it runs."""
    d = layouts.definition_for("example", {"width": 3, "height": 2, "cells": 4})
    sheet = Sheet(d, model.zero_parameters(d), None, "cpu", 1, backend="cpp")
    sheet.run(3)
    calls = []
    real = sheet._compiled.run_steps

    def run_steps(state, weights, values, sizes, *rest):
        calls.append((list(state), weights, list(values), list(sizes), rest))
        return real(state, weights, values, sizes, *rest)

    sheet._compiled.run_steps = run_steps
    try:
        sheet.run(1)
    finally:
        del sheet._compiled.run_steps
    state, weights, values, sizes, rest = calls[0]
    before = sheet.snapshot()
    for bad_sizes, bad_weights, bad_state, match in [
            (sizes, weights[:-1], state, "weight buffer has"),
            ([sizes[0], sizes[1] + 1, *sizes[2:]], weights, state, "elements where the geometry"),
            ([sizes[0], 3, 2, 1, 4, 1, 3, *sizes[7:]], weights, state, "geometry gives"),
            (sizes, weights, [*state[:6], state[6][:-1], *state[7:]], r"state\[6\]"),
            ([*sizes[:5], -1, *sizes[6:]], weights, state, "cannot take the geometry"),
            ([sizes[0], 1 << 16, 1 << 16, 1, 1, 0, 1, *sizes[7:]], weights, state,
             "fewer than 2"),
            ]:
        with pytest.raises(ValueError, match=match):
            real(bad_state, bad_weights, values, bad_sizes, *rest)
    seed, t, steps, raster = rest
    for bad_t, bad_steps in ((-1, steps), (t, -1)):
        with pytest.raises(ValueError, match="neither may be negative"):
            real(state, weights, values, sizes, seed, bad_t, bad_steps, raster)
    _assert_same(sheet, _reload_with(before))


def _reload_with(snap) -> Sheet:
    return Sheet(snap.definition, snap.tensors, snap.state, "cpu", seed=1, backend="cpp")


def test_a_backend_that_cannot_run_is_one_clear_error(cpp_backend):
    from hera.errors import HeraError

    d = layouts.definition_for("example", {})
    with pytest.raises(HeraError, match="runs on the CPU"):
        Sheet(d, model.zero_parameters(d), None, "meta", 1, backend="cpp")
    with pytest.raises(HeraError, match="cannot step on triton"):
        Sheet(d, model.zero_parameters(d), None, "cpu", 1, backend="triton")
    with pytest.raises(HeraError, match="no backend 'cuda'"):
        Sheet(d, model.zero_parameters(d), None, "cpu", 1, backend="cuda")


def test_a_reward_line_gates_plasticity():
    """``reward X`` through the input hook sets the neuromodulator: 0 stops
    learning (weights frozen while the sheet runs on), a higher level learns
    faster, and the level is part of the saved state."""
    from hera.errors import HeraError
    from hera.plugins import load_plugins

    hook = load_plugins().family_hooks("abraxas")

    def feed(sheet: Sheet, line: str) -> None:
        assert hook.hera_encode_input(agent=sheet, line=line) is True

    sheet = _sheet(seed=4, noise=1.0)
    sheet.run(200)
    feed(sheet, "reward 0")
    frozen = sheet.snapshot()
    sheet.run(200)
    after = sheet.snapshot()
    assert torch.equal(frozen.tensors["weights"], after.tensors["weights"])
    assert torch.equal(frozen.tensors["input_weights"], after.tensors["input_weights"])
    assert not torch.equal(frozen.state.tensors["membrane"], after.state.tensors["membrane"])
    assert after.state.values["modulator"] == 0.0 and _reload(sheet).modulator == 0.0

    gains = []
    for line in ("reward 1", "reward 3"):
        fresh = _sheet(seed=4, noise=1.0)
        feed(fresh, line)
        fresh.run(150)
        gains.append(float(fresh.weights.sum() + fresh.input_weights.sum()))
    assert gains[1] > gains[0] > 0
    with pytest.raises(HeraError, match="finite number >= 0"):
        feed(sheet, "reward -1")
    assert codec.reward_level("reward 0.5") == 0.5 and codec.reward_level("rewards 1") is None


def test_updates_far_below_one_delivered_unit_accumulate():
    """Spikes carry weights in fixed point (2**-16 units), but the weights
    themselves are float32: potentiation steps fifteen times smaller than a
    unit add up until they deliver current, instead of rounding away."""
    d = layouts.definition_for("example", {"a_plus": 1e-7, "a_minus": 0.0, "w_budget": 0.0,
                                           "noise": 1.0})
    largest_trace = 1 / (1 - math.exp(-1 / d["tau_trace"]))
    assert d["a_plus"] * largest_trace < 2.0 ** -16 / 5, "every update is under a fifth of a unit"
    sheet = Sheet(d, model.zero_parameters(d), None, "cpu", 3)
    sheet.set_input([1.0])
    totals = []
    for _ in range(4):
        sheet.run(500)
        totals.append(float(sheet.input_weights[0].sum()))
    assert 0 < totals[0] < totals[1] < totals[2] < totals[3]
    assert float(sheet.input_weights[0].max()) > 4 * 2.0 ** -16
    sheet.run(3)
    assert sheet.ring.any(), "the grown weights deliver current"
