"""Recordings: spikes at the exact step, rates per population, traces of
chosen neurons and weight snapshots; bounded; written as NWB or npz; from
the API and from ``up --record``; and never a bit of difference to the
agent itself."""

from __future__ import annotations

import shutil

import numpy
import pytest

import hera
from hera.instance import InstanceFile
from tests.conftest import make_world


@pytest.fixture
def agent(places):
    """An example agent up in this process, driven hard enough to spike."""
    path = hera.build("example", places / "a.json")
    with hera.up(path, checkpoint=0) as live:
        live.feed(values=numpy.ones(16))
        live.step(50)
        yield live


def test_recorded_spikes_are_every_spike_at_its_step(agent):
    agent.output()  # a fresh output window from here
    before = agent.activity()
    recording = agent.record(spikes=["layer 2", "inputs"])
    agent.step(400)
    arrays = recording.arrays()
    steps, neurons = arrays["spikes.steps"], arrays["spikes.neurons"]
    assert steps.min() >= 50 and steps.max() <= 449 and neurons.size > 100
    # the output layer's spikes, neuron by neuron, are the output counts
    start, size = recording.populations["layer 2"]
    per_neuron = numpy.bincount(neurons[neurons >= start] - start, minlength=size)
    assert per_neuron.tolist() == agent.output().tolist()
    # and the inputs' are what the agent counted
    after = agent.activity()
    assert (neurons < 16).sum() == after["inputs"][0] - before["inputs"][0]
    assert not numpy.isin(neurons, range(16, start)).any()  # layer 1 was not asked for
    # no neuron fires twice in one step
    assert len(set(zip(steps.tolist(), neurons.tolist()))) == steps.size


def test_rates_traces_and_weights_are_the_agent_at_each_sample(agent):
    from hera_family_abraxas import layouts

    before = agent.activity()
    recording = agent.record(rates=40, traces={"membrane": [16, 20, 107], "threshold": [53]},
                             every=7, weights=100)
    agent.step(200)
    after = agent.activity()
    arrays = recording.arrays()
    assert arrays["rates.steps"].tolist() == list(range(90, 251, 40))
    assert arrays["membrane.steps"].tolist() == list(range(57, 250, 7))
    assert arrays["weights.steps"].tolist() == [150, 250]
    now = agent.tensors()
    assert arrays["weights.input_weights"][-1].tolist() == now["input_weights"].tolist()
    # the rates of the five bins add up to the spikes counted in them
    rates, sizes = arrays["rates"], arrays["population_sizes"]
    assert rates.shape == (5, 3) and rates[:, 0].sum() > 0
    for column, name in enumerate(arrays["populations"]):
        spikes = (rates[:, column] * sizes[column] * 40).sum()
        assert spikes == pytest.approx(after[name][0] - before[name][0])
    agent.step(3)  # to a sample: the trace is the state there
    arrays, now = recording.arrays(), agent.tensors()
    assert arrays["membrane.steps"][-1] == 253
    # neuron numbers count the 16 input channels first
    assert arrays["membrane"][-1].tolist() == now["state.membrane"][[0, 4, 91]].tolist()
    base = float(layouts.definition_for("example", {})["threshold"])
    assert arrays["threshold"][-1, 0] == numpy.float32(base) + now["thresholds"][37].numpy()


def test_a_full_recording_stops_and_says_so(agent, capsys):
    recording = agent.record(spikes=["layer 1", "layer 2"], max_bytes=2000)
    agent.step(300)
    assert recording.full and recording.stopped_at < 350
    kept = recording.arrays()["spikes.steps"]
    assert kept.size * 12 <= 2000 and kept.max() < recording.stopped_at
    assert "the recording is full (2,000 bytes) at step" in capsys.readouterr().err


def test_what_cannot_be_recorded_is_one_line_and_records_nothing(agent):
    for kwargs, message in (({"spikes": ["layer 9"]}, "no population 'layer 9'"),
                            ({"traces": {"membrane": [3]}}, "no neuron 3 to record"),
                            ({"traces": {"voltage": [20]}}, "abraxas records spikes, membrane"),
                            ({"spikes": [10_000]}, "no neuron 10000"),
                            ({"rates": 0}, "rates takes a whole number"),
                            ({}, "nothing to record")):
        with pytest.raises(hera.HeraError, match=message):
            agent.record(**kwargs)
    assert agent._session.recording is None


def test_up_records_to_nwb_and_npz_without_changing_a_bit(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    plain, recorded = make_world(tmp_path / "plain"), make_world(tmp_path / "recorded")
    agent_id, path = plain.build()
    shutil.copy(path, recorded.workdir / path.name)
    plain.run("up", path.name, "--steps", "300")
    out = recorded.run("up", path.name, "--steps", "300", "--record", "spikes",
                       "--record", "rates=50", "--record", "membrane=16-19",
                       "--record-every", "10", "--record-to", "run.nwb").stdout
    assert "recorded steps 0-300 to " in out
    a = InstanceFile.read(plain.agents_dir / f"{agent_id}.json")
    b = InstanceFile.read(recorded.agents_dir / f"{agent_id}.json")
    for name, tensor in a.tensors().items():
        assert tensor.equal(b.tensors()[name]), name
    for name, tensor in a.state().tensors.items():
        assert tensor.equal(b.state().tensors[name]), name
    with pynwb.NWBHDF5IO(str(recorded.workdir / "run.nwb"), "r") as io:
        nwb = io.read()
        assert len(nwb.units) == 16 + 108  # every input and neuron
        times = numpy.concatenate([nwb.units["spike_times"][i] for i in range(len(nwb.units))])
        assert times.size > 0 and times.max() < 0.3  # steps at 1 ms
        assert nwb.acquisition["membrane"].data.shape == (30, 4)
        assert set(nwb.acquisition) >= {"rate inputs", "rate layer 1", "rate layer 2"}
    recorded.run("--uuid", agent_id, "up", "--steps", "20", "--record", "spikes=layer 2")
    [npz] = recorded.workdir.glob("*.step300.npz")
    with numpy.load(npz) as data:
        assert data["spikes.steps"].min() >= 300 and data["spikes.recorded"].size == 54


def test_up_refuses_a_bad_recording_before_it_steps(world):
    agent_id, path = world.build()
    bad = world.run("up", path.name, "--steps", "10", "--record", "spikes=layer 7", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().endswith("no population 'layer 7' to record spikes of (the agent "
                                       "has: inputs, layer 1, layer 2)")
    usage = world.run("up", path.name, "--record-to", "x.npz", check=False)
    assert usage.returncode == 2 and "go with --record" in usage.stderr
    world.run("up", path.name, "--steps", "10")  # no lock was left behind
    assert world.row(agent_id)["steps"] == 10
