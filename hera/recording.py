"""Recordings of a live agent, like Brian2's monitors and NEST's recorders:
spikes of chosen populations or neurons (at the exact step), rates per
population over bins of steps, traces of chosen neurons' variables
(membrane, threshold), and snapshots of the learned tensors at intervals.

The agent's session calls :meth:`Recording.after` after every call into the
family and cuts its calls at the steps where a sample is due; with no
recording that is one ``is None`` test per call. What is kept is bounded by
``max_bytes``: past it, sampling stops and the recording says at which step.
A recording is written as NWB (``.nwb``, with pynwb: the ``record`` extra)
or as NumPy's ``.npz``.

The family provides what is read: ``hera_activity`` (populations, their
sizes and spike counts) and ``hera_probe`` (a variable of chosen neurons;
``spikes`` counted up, so that one step's spikes are a difference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from hera.errors import HeraError

if TYPE_CHECKING:  # pragma: no cover
    from hera.session import AgentSession

#: What a recording may hold, unless told otherwise (bytes).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
#: Seconds per step in an NWB file's times (hera's steps are abstract; the
#: families' docs give them as milliseconds).
STEP_SECONDS = 1e-3


@dataclass
class RecordSpec:
    """What to record.

    :param spikes: populations (names) or neuron numbers whose spikes are
        kept, every step; ``None``: no spikes.
    :param rates: bin width in steps of the rates per population; ``None``: none.
    :param traces: variable → neuron numbers, sampled every ``every`` steps.
    :param every: steps between trace samples.
    :param weights: steps between snapshots of the learned tensors; ``None``: none.
    :param max_bytes: the most the recording may hold.
    """

    spikes: list[str] | list[int] | None = None
    rates: int | None = None
    traces: dict[str, list[int]] = field(default_factory=dict)
    every: int = 1
    weights: int | None = None
    max_bytes: int = DEFAULT_MAX_BYTES

    def check(self) -> None:
        """Refuse what cannot be recorded, before anything is."""
        for name, value in (("rates", self.rates), ("every", self.every),
                            ("weights", self.weights), ("max_bytes", self.max_bytes)):
            if value is not None and (type(value) is not int or value < 1):
                raise HeraError(f"record {name} takes a whole number >= 1, not {value!r}")
        if not (self.spikes or self.rates or self.traces or self.weights):
            raise HeraError("nothing to record: give spikes, rates, a trace or weights")


@dataclass(frozen=True)
class RecordOptions:
    """``up --record …``: what to record and where it goes at the end."""

    spec: RecordSpec
    path: Path | None  # None: ./<callsign>.step<N>.npz


def parse_record_options(items: list[str], every: int, max_bytes: int | None,
                         path: str | None) -> RecordOptions:
    """``["spikes=layer 3", "rates=50", "membrane=100-109"]`` → options.

    :raises UsageError: for what cannot be read (one line).
    """
    from hera.errors import UsageError

    spec = RecordSpec(every=every, max_bytes=max_bytes or DEFAULT_MAX_BYTES)
    for item in items:
        what, _, which = item.partition("=")
        what, which = what.strip().lower(), which.strip()
        try:
            if what == "spikes":
                spec.spikes = parse_which(which) if which else ["*"]
            elif what == "rates":
                spec.rates = int(which) if which else 100
            elif what == "weights":
                spec.weights = int(which)
            elif what and which:
                spec.traces[what] = parse_which(which)
            else:
                raise ValueError
        except ValueError:
            raise UsageError(f"--record {item!r}: give spikes[=POPULATIONS|NEURONS], "
                             "rates[=BIN], weights=EVERY or VARIABLE=NEURONS (e.g. "
                             "membrane=100-109)") from None
    return RecordOptions(spec, None if path is None else Path(path).absolute())


def parse_which(text: str) -> list:
    """``0-9,15`` → neuron numbers; ``layer 3,inputs`` → population names."""
    found: list = []
    for part in (p.strip() for p in text.split(",")):
        low, dash, high = part.partition("-")
        if low.isdigit() and (not dash or high.isdigit()):
            found.extend(range(int(low), int(high or low) + 1))
        elif part:
            found.append(part)
    if not found:
        raise ValueError(text)
    return found


class Recording:
    """A recording of ``session``'s agent from its current step on."""

    def __init__(self, session: "AgentSession", spec: RecordSpec,
                 warn: Callable[[str], None] | None = None):
        import numpy

        spec.check()
        self.session, self.spec = session, spec
        self._warn = warn or (lambda text: None)
        counts = session.activity()
        if counts is None:
            raise HeraError(f"family {session.family} cannot be recorded: it does not count "
                            "its spikes (hera_activity)")
        #: name → (first neuron, size), numbered across populations in order
        self.populations: dict[str, tuple[int, int]] = {}
        start = 0
        for name, (_, size) in counts.items():
            self.populations[name] = (start, size)
            start += size
        self.neuron_count = start
        self.start_step = session.step_count
        self.stopped_at: int | None = None  # where it stopped (full, or told to)
        self.full = False
        self.bytes = 0
        self.spike_neurons = self._spiking(spec.spikes)
        self.traces = {name: numpy.asarray(self._neurons(ids, name), dtype=numpy.int64)
                       for name, ids in spec.traces.items()}
        # read each once now: a bad variable or neuron fails here, not later
        self._last_spikes = None if self.spike_neurons is None else \
            self._probe("spikes", self.spike_neurons)
        for name, ids in self.traces.items():
            self._probe(name, ids)
        self._last_counts = {name: spikes for name, (spikes, _) in counts.items()}
        self._last_rate_step = self.start_step
        # what has been kept
        self.spike_steps: list[Any] = []
        self.spike_ids: list[Any] = []
        self.rate_steps: list[int] = []
        self.rate_rows: list[list[float]] = []
        self.trace_steps: list[int] = []
        self.trace_rows: dict[str, list[Any]] = {name: [] for name in self.traces}
        self.weight_steps: list[int] = []
        self.weight_rows: dict[str, list[Any]] = {}

    # -- what is due ---------------------------------------------------------------

    def steps_to_next(self, step: int) -> int | None:
        """Steps from ``step`` to the next step at which a sample is due
        (the session cuts its calls there); ``None`` once stopped."""
        if self.stopped_at is not None:
            return None
        spec, since = self.spec, step - self.start_step
        dues = []
        if self.spike_neurons is not None:
            dues.append(1)
        for every in (spec.rates, spec.every if self.traces else None, spec.weights):
            if every:
                dues.append(every - since % every)
        return min(dues) if dues else None

    def after(self, step: int) -> None:
        """Take what is due at ``step`` (the session has just reached it)."""
        if self.stopped_at is not None:
            return
        spec, since = self.spec, step - self.start_step
        if self.spike_neurons is not None:
            self._take_spikes(step)
        if spec.rates and since % spec.rates == 0:
            self._take_rates(step)
        if self.traces and since % spec.every == 0:
            self._take_traces(step)
        if spec.weights and since % spec.weights == 0:
            self._take_weights(step)

    def stop(self) -> None:
        """Keep nothing more."""
        if self.stopped_at is None:
            self.stopped_at = self.session.step_count

    # -- taking ----------------------------------------------------------------------

    def _take_spikes(self, step: int) -> None:
        import numpy

        now = self._probe("spikes", self.spike_neurons)
        fired = numpy.flatnonzero(now != self._last_spikes)
        self._last_spikes = now
        if fired.size and self._room(fired.size * 12):
            # a neuron fires at most once a step: the step it fired in is step - 1
            self.spike_steps.append(numpy.full(fired.size, step - 1, dtype=numpy.int64))
            self.spike_ids.append(self.spike_neurons[fired].astype(numpy.int32))

    def _take_rates(self, step: int) -> None:
        counts = self.session.activity() or {}
        steps = step - self._last_rate_step
        row = []
        for name, (spikes, size) in counts.items():
            row.append((spikes - self._last_counts.get(name, 0)) / (size * steps)
                       if size and steps else math.nan)
            self._last_counts[name] = spikes
        self._last_rate_step = step
        if self._room(8 * len(row) + 8):
            self.rate_steps.append(step)
            self.rate_rows.append(row)

    def _take_traces(self, step: int) -> None:
        values = {name: self._probe(name, ids) for name, ids in self.traces.items()}
        if self._room(sum(v.nbytes for v in values.values()) + 8):
            self.trace_steps.append(step)
            for name, value in values.items():
                self.trace_rows[name].append(value)

    def _take_weights(self, step: int) -> None:
        learned = {name: t.numpy().copy() for name, t in self.session.tensors().items()
                   if not name.startswith("state.")}
        if self._room(sum(t.nbytes for t in learned.values()) + 8):
            self.weight_steps.append(step)
            for name, tensor in learned.items():
                self.weight_rows.setdefault(name, []).append(tensor)

    def _room(self, size: int) -> bool:
        """Whether ``size`` more bytes fit; if not, the recording is full."""
        if self.bytes + size <= self.spec.max_bytes:
            self.bytes += size
            return True
        self.full = True
        self.stopped_at = self.session.step_count
        self._warn(f"the recording is full ({self.spec.max_bytes:,} bytes) at step "
                   f"{self.stopped_at}; it keeps what it has")
        return False

    # -- neurons -----------------------------------------------------------------------

    def _spiking(self, chosen: list[str] | list[int] | None) -> Any:
        import numpy

        if not chosen:
            return None
        return numpy.asarray(self._neurons(chosen, "spikes"), dtype=numpy.int64)

    def _neurons(self, chosen: list[str] | list[int], what: str) -> list[int]:
        """Neuron numbers from population names and numbers."""
        found: list[int] = []
        for item in chosen:
            if item == "*":  # every population
                found.extend(range(self.neuron_count))
            elif isinstance(item, str):
                if item not in self.populations:
                    raise HeraError(f"no population {item!r} to record {what} of (the agent "
                                    f"has: {', '.join(self.populations)})")
                start, size = self.populations[item]
                found.extend(range(start, start + size))
            elif type(item) is int and 0 <= item < self.neuron_count:
                found.append(item)
            else:
                raise HeraError(f"no neuron {item!r} to record {what} of (neurons "
                                f"0-{self.neuron_count - 1})")
        if not found:
            raise HeraError(f"no neurons given to record {what} of")
        return sorted(set(found))

    def _probe(self, variable: str, neurons: Any) -> Any:
        import numpy

        value = self.session.probe(variable, neurons)
        return numpy.asarray(value)

    # -- what it holds -------------------------------------------------------------------

    def arrays(self) -> dict[str, Any]:
        """Everything kept, as NumPy arrays by name: ``spikes.steps`` and
        ``spikes.neurons`` (one entry per spike), ``rates.steps`` and
        ``rates`` ([bins, populations], spikes per neuron per step over the
        bin that ends at each step), ``<variable>.steps``,
        ``<variable>.neurons`` and ``<variable>`` ([samples, neurons]),
        ``weights.steps`` and ``weights.<tensor>`` ([snapshots, …]), and
        ``populations`` / ``population_starts`` / ``population_sizes``."""
        import numpy

        out: dict[str, Any] = {
            "populations": numpy.array(list(self.populations)),
            "population_starts": numpy.array([s for s, _ in self.populations.values()]),
            "population_sizes": numpy.array([n for _, n in self.populations.values()]),
            "start_step": numpy.array(self.start_step),
            "end_step": numpy.array(self.stopped_at if self.stopped_at is not None
                                    else self.session.step_count),
        }
        if self.spike_neurons is not None:
            out["spikes.steps"] = numpy.concatenate(self.spike_steps) if self.spike_steps \
                else numpy.zeros(0, dtype=numpy.int64)
            out["spikes.neurons"] = numpy.concatenate(self.spike_ids) if self.spike_ids \
                else numpy.zeros(0, dtype=numpy.int32)
            out["spikes.recorded"] = self.spike_neurons
        if self.spec.rates:
            out["rates.steps"] = numpy.array(self.rate_steps, dtype=numpy.int64)
            out["rates"] = numpy.array(self.rate_rows, dtype=numpy.float64).reshape(
                len(self.rate_rows), len(self.populations))
        for name, ids in self.traces.items():
            out[f"{name}.steps"] = numpy.array(self.trace_steps, dtype=numpy.int64)
            out[f"{name}.neurons"] = ids
            rows = self.trace_rows[name]
            out[name] = numpy.stack(rows) if rows else numpy.zeros((0, ids.size))
        if self.spec.weights:
            out["weights.steps"] = numpy.array(self.weight_steps, dtype=numpy.int64)
            for name, rows in self.weight_rows.items():
                out[f"weights.{name}"] = numpy.stack(rows)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the recording: ``.nwb`` as NWB (pynwb), anything else as
        ``.npz``; atomically, so a failure leaves no half file."""
        from hera import atomic

        path = Path(path)
        arrays = self.arrays()
        if path.suffix == ".nwb":
            data = _nwb_bytes(arrays, self.session)
        else:
            data = _npz_bytes(arrays)
        try:
            atomic.write_atomically(path, [data])
        except OSError as exc:
            raise HeraError(f"cannot write the recording {path}: {exc.strerror}") from None
        return path


def _npz_bytes(arrays: dict[str, Any]) -> bytes:
    import io

    import numpy

    buffer = io.BytesIO()
    numpy.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _nwb_bytes(arrays: dict[str, Any], session: "AgentSession") -> bytes:
    """The recording as an NWB file: spikes as units (one per recorded
    neuron, times in seconds at :data:`STEP_SECONDS` a step), rates, traces
    and weight snapshots as time series in the acquisition group."""
    try:
        import pynwb
    except ImportError:
        raise HeraError("writing NWB needs pynwb: pip install 'hera[record]' (or save to "
                        ".npz)") from None
    import datetime
    import tempfile
    import uuid

    import numpy

    nwb = pynwb.NWBFile(
        session_description=f"hera recording of {session.family}/{session.instance.layout} "
                            f"agent {session.id} ({session.callsign})",
        identifier=str(uuid.uuid4()),
        session_start_time=datetime.datetime.now(datetime.timezone.utc),
        source_script="hera", source_script_file_name="hera.recording")
    times = lambda steps: numpy.asarray(steps, dtype=numpy.float64) * STEP_SECONDS  # noqa: E731
    if "spikes.steps" in arrays:
        nwb.add_unit_column("neuron", "the neuron's number in hera (across populations)")
        steps, ids = arrays["spikes.steps"], arrays["spikes.neurons"]
        for neuron in arrays["spikes.recorded"]:
            nwb.add_unit(spike_times=times(steps[ids == neuron]), neuron=int(neuron))
    if "rates" in arrays:
        for column, name in enumerate(arrays["populations"]):
            nwb.add_acquisition(pynwb.TimeSeries(
                name=f"rate {name}", data=arrays["rates"][:, column],
                unit="spikes/neuron/step", timestamps=times(arrays["rates.steps"])))
    for key in arrays:
        if key.endswith(".neurons") and key != "spikes.neurons":
            name = key.removesuffix(".neurons")
            nwb.add_acquisition(pynwb.TimeSeries(
                name=name, data=arrays[name], unit="model units",
                timestamps=times(arrays[f"{name}.steps"]),
                description=f"{name} of neurons {arrays[key].tolist()}"))
    for key in arrays:
        if key.startswith("weights.") and key != "weights.steps":
            nwb.add_acquisition(pynwb.TimeSeries(
                name=key, data=arrays[key], unit="model units",
                timestamps=times(arrays["weights.steps"])))
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "recording.nwb"
        with pynwb.NWBHDF5IO(str(target), "w") as io_:
            io_.write(nwb)
        return target.read_bytes()
