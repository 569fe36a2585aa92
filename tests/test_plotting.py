"""Pictures: each plot is rendered to PNG and its pixels are read back, at
the places where the data says something must be drawn (and where nothing
must be); from synthetic data, from a real agent that learned bars, and
through ``hera plot``."""

from __future__ import annotations

import io

import numpy
import pytest

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

import hera  # noqa: E402
from hera import plotting  # noqa: E402


def _pixels(fig) -> numpy.ndarray:
    """The figure as rendered to PNG: rows from the top, RGB in [0, 1]."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    return imread(buffer)[:, :, :3]


def _at(fig, ax, pixels, x: float, y: float) -> numpy.ndarray:
    """The colour drawn at data point (x, y) of ``ax``."""
    px, py = ax.transData.transform((x, y))
    return pixels[pixels.shape[0] - 1 - int(round(py)), int(round(px))]


def _near(fig, ax, pixels, x: float, y: float, colour, reach: int = 2) -> bool:
    """Whether ``colour`` is drawn within ``reach`` pixels of (x, y) (lines
    are smoothed at their edges)."""
    px, py = ax.transData.transform((x, y))
    row, col = pixels.shape[0] - 1 - int(round(py)), int(round(px))
    patch = pixels[row - reach:row + reach + 1, col - reach:col + reach + 1]
    return bool((numpy.abs(patch - colour).max(axis=2) < 0.15).any())


def _dark(colour) -> bool:
    return float(numpy.mean(colour)) < 0.35


def test_the_raster_draws_each_spike_where_it_fired_and_nothing_elsewhere():
    steps = numpy.concatenate([numpy.arange(0, 100, 4), numpy.arange(52, 100, 4)])
    neurons = numpy.concatenate([numpy.full(25, 2), numpy.full(12, 8)])
    data = {"spikes.steps": steps, "spikes.neurons": neurons,
            "spikes.recorded": numpy.arange(10), "start_step": numpy.array(0),
            "end_step": numpy.array(100)}
    fig = plotting.figure("raster", data)
    pixels = _pixels(fig)
    ax = fig.axes[0]
    assert all(_dark(_at(fig, ax, pixels, s, 2)) for s in range(0, 100, 4))
    assert all(_dark(_at(fig, ax, pixels, s, 8)) for s in range(52, 100, 4))
    assert not any(_dark(_at(fig, ax, pixels, s, 8)) for s in range(2, 48, 4))  # silent then
    assert not any(_dark(_at(fig, ax, pixels, 30, n)) for n in (0, 4, 6))
    assert ax.get_title() == "37 spikes"


def test_the_rates_put_each_population_at_its_rate():
    steps = numpy.arange(100, 1100, 100)
    rates = numpy.stack([numpy.full(10, 0.02), numpy.linspace(0.0, 0.04, 10)], axis=1)
    data = {"rates": rates, "rates.steps": steps, "populations": numpy.array(["a", "b"])}
    fig = plotting.figure("rates", data)
    pixels = _pixels(fig)
    ax = fig.axes[0]
    first, second = (numpy.array(matplotlib.colors.to_rgb(f"C{i}")) for i in (0, 1))
    for step, (ra, rb) in zip(steps[1:-1], rates[1:-1]):
        assert _near(fig, ax, pixels, step, ra, first)
        assert _near(fig, ax, pixels, step, rb, second)
        assert not _near(fig, ax, pixels, step, ra + 0.008, first)  # and nowhere else
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]


def test_a_field_is_its_weights_as_an_image():
    pattern = (numpy.indices((8, 8)).sum(axis=0) % 2).astype(float)  # a checkerboard
    weights = numpy.zeros((64, 3))
    weights[:, 1] = pattern.ravel()
    weights[:, 2] = pattern.T.ravel() * 0.5
    fig = plotting.figure("fields", {"weights.input_weights": weights[None]}, neurons=[1, 2])
    pixels = _pixels(fig)
    for ax, expected in zip(fig.axes, (pattern, pattern.T * 0.5)):
        drawn = numpy.array([[numpy.mean(_at(fig, ax, pixels, col, row)) for col in range(8)]
                             for row in range(8)])
        assert numpy.abs(drawn - expected).max() < 0.05


def test_histograms_count_the_values():
    values = numpy.concatenate([numpy.full(300, 0.1), numpy.full(100, 0.9)])
    fig = plotting.figure("weights", {"weights.weights": values.reshape(1, 20, 20)})
    ax = fig.axes[0]
    heights = {round(p.get_x() + p.get_width() / 2, 1): p.get_height()
               for p in ax.patches if p.get_height()}
    assert sorted(heights.values()) == [100, 300]
    assert "min 0.1, mean 0.3, max 0.9" in ax.get_title()


def test_an_agent_that_saw_bars_draws_bars(places):
    """The README's first session: a digits agent shown 8x8 bars draws
    bars as its input fields."""
    bars = []
    for k in range(8):
        image = numpy.zeros((8, 8))
        if k < 4:
            image[2 * k:2 * k + 2, :] = 1
        else:
            image[:, 2 * (k - 4):2 * (k - 4) + 2] = 1
        bars.append(image)
    rng = numpy.random.default_rng(0)
    with hera.up(hera.build("digits", "bars.json", seed=1)) as agent:  # the same run each time
        for _ in range(600):
            agent.feed(values=bars[rng.integers(8)].ravel() * 20 / 16)
            agent.step(40)
            agent.feed(values=numpy.zeros(64))
            agent.step(5)
        fig = hera.plot("fields", agent, "fields.png")
    assert (places / "fields.png").read_bytes().startswith(b"\x89PNG")
    pixels = _pixels(fig)
    learned = 0
    for ax in fig.axes:
        drawn = numpy.array([[numpy.mean(_at(fig, ax, pixels, c, r)) for c in range(8)]
                             for r in range(8)])
        if drawn.max() < 0.5:
            continue  # a cell that has not learned yet
        best = max(float(numpy.corrcoef(drawn.ravel(), bar.ravel())[0, 1]) for bar in bars)
        assert best > 0.8, drawn.round(2)
        learned += 1
    assert learned >= 10


def test_hera_plot_draws_a_recording_and_an_agent_and_refuses_what_it_cannot(world):
    agent_id, path = world.build()
    world.run("up", path.name, "--steps", "300", "--record", "spikes", "--record", "rates=50",
              "--record-to", "run.npz")
    for kind, source in (("raster", "run.npz"), ("rates", "run.npz")):
        out = world.run("plot", kind, source, "-o", f"{kind}.svg").stdout
        assert out.strip().endswith(f"{kind}.svg")
        assert (world.workdir / f"{kind}.svg").read_text().lstrip().startswith("<?xml")
    world.run("--uuid", agent_id, "plot", "thresholds", "-o", "t.png")
    world.run("plot", "fields", "--uuid", agent_id[:8], "-o", "f.png", "--neurons", "0-8")
    assert (world.workdir / "f.png").read_bytes().startswith(b"\x89PNG")
    for args, code, message in (
            (("raster", path.name, "-o", "x.png"), 1, "this source holds no recorded spikes"),
            (("fields", "run.npz", "-o", "x.png"), 1, "holds no tensor 'input_weights'"),
            (("fields", "--uuid", agent_id, "-o", "x.png", "--neurons", "999"), 1,
             "no field of neuron 999"),
            (("raster", "run.npz", "-o", "x.jpg"), 2, "give a .png or .svg file"),
            (("raster", "nothing.npz", "-o", "x.png"), 1, "nothing.npz: no such file"),
            (("plot3d", "run.npz", "-o", "x.png"), 2, "invalid choice")):
        proc = world.run("plot", *args, check=False)
        assert proc.returncode == code and message in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) <= 2 and "Traceback" not in proc.stderr
    assert not (world.workdir / "x.png").exists()


def test_the_readmes_first_picture_is_drawn_by_its_script(world):
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    script = re.search(r"## A first picture.*?```python\n(.*?)```", readme, re.S).group(1)
    assert len(script.strip().splitlines()) <= 15
    proc = subprocess.run([sys.executable, "-c", script], cwd=world.workdir, env=world.env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    pixels = imread(world.workdir / "fields.png")[:, :, :3].mean(axis=2)
    assert pixels.shape[0] > 900 and pixels.shape[1] > 900  # ten rows of ten fields
    assert (pixels < 0.1).mean() > 0.3 and (pixels > 0.8).mean() > 0.2  # dark cells, bright bars
    [row] = world.agents()
    assert (row["layout"], row["steps"], row["status"]) == ("digits", 27_000, "down")
