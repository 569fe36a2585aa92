"""Pictures of what an agent did and learned, with matplotlib (the ``plot``
extra): a spike raster, rates per population over time, input receptive
fields as images, and the distributions of weights and thresholds.

Each picture is drawn from a *source*: a recording (``.npz``, or a
:class:`~hera.recording.Recording`), an instance file or installed agent, or
a live agent of the Python API. ``hera plot`` and :func:`hera.plot` both
come here. Figures are made without pyplot (no global state, no display
needed), saved as PNG or SVG, and shown by notebooks as they are.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hera.errors import HeraError

#: What can be drawn, and what each needs.
KINDS = {
    "raster": "spikes at their steps (a recording with spikes)",
    "rates": "spikes per neuron per step of each population over time (a recording with rates)",
    "fields": "each neuron's input weights as an image (an agent, or weight snapshots)",
    "weights": "the distribution of the learned weights (an agent, or weight snapshots)",
    "thresholds": "the distribution of the adaptive thresholds (an agent, or snapshots)",
}
FORMATS = (".png", ".svg")


def data_of(source: Any) -> dict[str, Any]:
    """The arrays a picture is drawn from: a recording's, or an agent's
    learned tensors as one weight snapshot (``weights.<name>``)."""
    import numpy

    if hasattr(source, "arrays"):  # a Recording
        return source.arrays()
    if hasattr(source, "tensors") and callable(source.tensors):  # a live agent
        return {f"weights.{name}": t.numpy()[None] for name, t in source.tensors().items()
                if not name.startswith("state.")}
    path = Path(source)
    if path.suffix == ".npz":
        try:
            with numpy.load(path) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError) as exc:
            raise HeraError(f"{path}: not a recording hera can read ({exc})") from None
    from hera.instance import InstanceFile

    instance = InstanceFile.read(path)
    return {f"weights.{name}": t.numpy()[None] for name, t in instance.tensors().items()}


def figure(kind: str, data: dict[str, Any], *, shape: tuple[int, int] | None = None,
           neurons: list[int] | None = None, tensor: str = "input_weights",
           title: str | None = None) -> Any:
    """Draw ``kind`` from ``data`` (see :func:`data_of`); return the figure.

    :param shape: the image shape of an input field (default: square when
        the number of inputs is a square, else one row).
    :param neurons: whose fields to draw (default: the first 100).
    :param tensor: the learned tensor of the input weights, ``[inputs, neurons]``.
    :raises HeraError: an unknown kind, or data without what it needs.
    """
    if kind not in KINDS:
        raise HeraError(f"no plot {kind!r} (plots: {', '.join(KINDS)})")
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise HeraError("plots need matplotlib: pip install 'hera[plot]'") from None
    fig = Figure(figsize=_size(kind, data, neurons, tensor), dpi=100, layout="constrained")
    {"raster": _raster, "rates": _rates, "fields": _fields, "weights": _weights,
     "thresholds": _thresholds}[kind](fig, data, shape=shape, neurons=neurons, tensor=tensor)
    if title:
        fig.suptitle(title)
    return fig


def _size(kind: str, data: dict[str, Any], neurons: list[int] | None,
          tensor: str) -> tuple[float, float]:
    """Inches: a grid of square fields, else a wide plot."""
    if kind != "fields" or f"weights.{tensor}" not in data:
        return (8.0, 5.0)
    shape = data[f"weights.{tensor}"].shape
    count = len(neurons) if neurons is not None else min(shape[-1], 100)
    columns = max(1, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / columns)
    return (min(1.0 + 0.9 * columns, 12.0), min(1.2 + 0.9 * rows, 12.0))


def save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG or SVG (by the suffix of ``path``), atomically."""
    import io

    from hera import atomic

    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise HeraError(f"{path}: plots are written as {' or '.join(FORMATS)}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lower()[1:])
    try:
        atomic.write_atomically(path, [buffer.getvalue()])
    except OSError as exc:
        raise HeraError(f"cannot write {path}: {exc.strerror}") from None
    return path


def _need(data: dict[str, Any], key: str, what: str) -> Any:
    if key not in data:
        raise HeraError(f"this source holds no {what}")
    return data[key]


def _population_lines(ax: Any, data: dict[str, Any], top: int) -> None:
    """Where each population begins, as lines and labels at the left."""
    if "populations" not in data:
        return
    for name, start, size in zip(data["populations"], data["population_starts"],
                                 data["population_sizes"]):
        if start < top:
            ax.axhline(start - 0.5, color="0.75", linewidth=0.6)
            ax.text(0.0, start + size / 2, f" {name}", fontsize=7, color="0.4",
                    va="center", transform=ax.get_yaxis_transform())


def _raster(fig: Any, data: dict[str, Any], **_: Any) -> None:
    steps = _need(data, "spikes.steps", "recorded spikes: record with spikes")
    neurons = data["spikes.neurons"]
    ax = fig.add_subplot()
    ax.scatter(steps, neurons, s=1.5, marker="s", color="black", linewidths=0)
    recorded = data.get("spikes.recorded")
    top = int(recorded.max()) + 1 if recorded is not None and len(recorded) else \
        int(neurons.max(initial=0)) + 1
    start = int(data.get("start_step", steps.min(initial=0)))
    end = int(data.get("end_step", steps.max(initial=start) + 1))
    ax.set_xlim(start, max(end, start + 1))
    ax.set_ylim(-0.5, top - 0.5)
    _population_lines(ax, data, top)
    ax.set_xlabel("step")
    ax.set_ylabel("neuron")
    ax.set_title(f"{len(steps):,} spikes")


def _rates(fig: Any, data: dict[str, Any], **_: Any) -> None:
    rates = _need(data, "rates", "recorded rates: record with rates")
    steps = data["rates.steps"]
    ax = fig.add_subplot()
    for column, name in enumerate(data["populations"]):
        ax.plot(steps, rates[:, column], label=str(name), linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("spikes per neuron per step")
    ax.legend(fontsize=8)


def _last_snapshot(data: dict[str, Any], name: str) -> Any:
    snapshots = _need(data, f"weights.{name}",
                      f"tensor {name!r} (an agent, or a recording with weights)")
    return snapshots[-1]


def _fields(fig: Any, data: dict[str, Any], *, shape: tuple[int, int] | None,
            neurons: list[int] | None, tensor: str, **_: Any) -> None:
    import numpy

    weights = numpy.asarray(_last_snapshot(data, tensor), dtype=numpy.float64)
    if weights.ndim != 2:
        raise HeraError(f"tensor {tensor!r} is not [inputs, neurons]: {list(weights.shape)}")
    inputs, count = weights.shape
    chosen = list(range(min(count, 100))) if neurons is None else list(neurons)
    bad = [n for n in chosen if not 0 <= n < count]
    if bad or not chosen:
        raise HeraError(f"no field of neuron {bad[0] if bad else '(none)'}: {tensor!r} has "
                        f"neurons 0-{count - 1}")
    if shape is None:
        side = math.isqrt(inputs)
        shape = (side, side) if side * side == inputs else (1, inputs)
    if shape[0] * shape[1] != inputs:
        raise HeraError(f"a field of {inputs} inputs is not {shape[0]}x{shape[1]}")
    columns = math.ceil(math.sqrt(len(chosen)))
    rows = math.ceil(len(chosen) / columns)
    top = max(float(weights.max()), 1e-12)
    grid = fig.add_gridspec(rows, columns, wspace=0.05, hspace=0.05)
    for place, neuron in enumerate(chosen):
        ax = fig.add_subplot(grid[place // columns, place % columns])
        ax.imshow(weights[:, neuron].reshape(shape), cmap="gray", vmin=0.0, vmax=top,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"input fields ({tensor}, white = {top:.3g})", fontsize=9)


def _histogram(fig: Any, values: Any, label: str) -> None:
    import numpy

    values = numpy.asarray(values, dtype=numpy.float64).reshape(-1)
    ax = fig.add_subplot()
    ax.hist(values, bins=60, color="0.3")
    ax.set_xlabel(label)
    ax.set_ylabel("count")
    ax.set_title(f"{values.size:,} values: min {values.min():.4g}, mean {values.mean():.4g}, "
                 f"max {values.max():.4g}", fontsize=9)


def _weights(fig: Any, data: dict[str, Any], *, tensor: str, **_: Any) -> None:
    import numpy

    names = [k.removeprefix("weights.") for k in data
             if k.startswith("weights.") and k != "weights.steps" and "threshold" not in k]
    if not names:
        raise HeraError("this source holds no learned weights (an agent, or a recording "
                        "with weights)")
    values = numpy.concatenate([numpy.asarray(_last_snapshot(data, n)).reshape(-1)
                                for n in names])
    _histogram(fig, values, "weight (" + ", ".join(names) + ")")


def _thresholds(fig: Any, data: dict[str, Any], **_: Any) -> None:
    _histogram(fig, _last_snapshot(data, "thresholds"), "adaptive threshold θ")
