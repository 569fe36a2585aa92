"""hera.testing, as a family author uses it: check_family on real
families (and on broken ones, which it must catch), and the hera_world
fixture through a pytest run of its own."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

import hera_family_abraxas
from hera.testing import check_family, check_ranks, conformance
from tests import lossy_family, tally_family

TALLY = Path(tally_family.__file__).read_text()


def _module(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, name, "exec"), module.__dict__)
    return module


def test_abraxas_and_the_test_family_pass():
    whole = check_family(hera_family_abraxas, "abraxas", overrides={"noise": 1.0},
                         lines=["1 0.5 0 1", "spikes 2 3"], plan=(13, 1, 26))
    assert whole.tensors["weights"].any()  # it learned something on the way
    check_family(_module(TALLY, "tally_checked"), "tally")


@pytest.mark.parametrize("change, message", [
    # starts its random numbers afresh at every load instead of resuming them
    (('self.generator.set_state(state.tensors["rng"])', 'self.generator.manual_seed(seed)'),
     "steps against 100: state tensor 'acc'"),
    # adds one to its counters at every save: a run split by saves is not one run
    (('{"counts": agent.counts.clone()}', '{"counts": agent.counts.clone() + 1}'),
     "steps against 100: tensor 'counts'"),
])
def test_a_family_that_breaks_the_contract_is_caught(change, message):
    old, new = change
    assert old in TALLY, old
    broken = _module(TALLY.replace(old, new), "tally_broken")
    with pytest.raises(AssertionError, match=message):
        check_family(broken, "tally", lines=["hello"])


def test_check_ranks_passes_abraxas_and_catches_ranks_that_lose_spikes():
    check_ranks(hera_family_abraxas, "abraxas", lines=["1 0.5 0 1", "spikes 2 3", "reward 2"])
    with pytest.raises(AssertionError, match="lossy/example on 2 ranks, after run 1"):
        check_ranks(lossy_family, "lossy", ranks=(2,))


def test_the_hera_world_fixture_is_there_for_a_family_authors_tests(tmp_path):
    (tmp_path / "test_mine.py").write_text(
        "def test_builds_and_runs(hera_world):\n"
        "    agent_id, path = hera_world.build()\n"
        "    hera_world.run('up', path.name, '--steps', '20')\n"
        "    assert hera_world.row(agent_id)['steps'] == 20\n"
        "    assert hera_world.workdir != hera_world.root\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path / "test_mine.py")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


# -- the conformance suite, run on both of hera's families ----------------------

def _abraxas_old_region(name, grown, old, before, after):
    """Where abraxas keeps an old tensor in a grown one (see
    hera_family_abraxas.grow)."""
    from hera_family_abraxas import layouts
    from hera_family_abraxas.grow import neuron_map, slot_map, source_map

    d, new = before.definition, after.definition
    neurons = neuron_map(d, new)
    if name == "weights":
        return grown[neurons[:, None], slot_map(d, new)[None, :]]
    if name == "input_weights":
        return grown[:d["inputs"], neurons[:layouts.first_layer_size(d)]]
    if name in ("thresholds", "state.membrane", "state.refractory", "state.post_trace"):
        return grown[neurons]
    if name == "state.pre_trace":
        return grown[source_map(d, new)]
    if name == "state.output_counts":  # the last layer's neurons
        if new["depth"] != d["depth"]:
            return old  # a new last layer is the output area, whose counts start afresh
        old_start = layouts.neuron_count(d) - old.shape[0]
        return grown[neurons[old_start:] - (layouts.neuron_count(new) - grown.shape[0])]
    if name == "state.ring":  # spikes in flight keep their arrival steps
        t = before.state.values["t"]
        rows = [(t + (row - t) % (d["axon"] + 1)) % (new["axon"] + 1)
                for row in range(d["axon"] + 1)]
        return grown[rows][:, neurons]
    return grown[:old.shape[0]]  # input channels are appended


TestTallyConformance = conformance(_module(TALLY, "tally_conformance"), "tally",
                                   grow={"size": 3}, package=tally_family.__file__)
TestAbraxasConformance = conformance(
    # few examples: tests/test_abraxas_grow.py draws many more of abraxas's growth
    hera_family_abraxas, "abraxas", overrides={"noise": 1.0}, lines=["1 0.5 0 1"], examples=5,
    grow={name: 1 for name in ("width", "height", "depth", "cells", "inputs", "dendrite",
                               "axon")}, old_region=_abraxas_old_region)


def test_assert_parity_compares_results_and_changed_arguments_bit_for_bit():
    import torch

    from hera.kernels.decay_accumulate import reference
    from hera.testing import assert_parity, same_bits

    trace, events = torch.rand(1001) + 0.1, (torch.rand(1001) < 0.3).float()
    out = assert_parity(reference.decay_accumulate, reference.decay_accumulate,
                        trace, 0.9, events)
    assert same_bits(out, trace * 0.9 + events) and not torch.equal(out, trace)

    def off_by_one_ulp(trace, decay, events):
        reference.decay_accumulate(trace, decay, events)
        trace[7] = torch.nextafter(trace[7], torch.tensor(2.0))
        return trace

    with pytest.raises(AssertionError, match="differ in argument 0"):
        assert_parity(reference.decay_accumulate, off_by_one_ulp, trace, 0.9, events)
    assert not same_bits(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert same_bits(torch.tensor([float("nan")]), torch.tensor([float("nan")]))
