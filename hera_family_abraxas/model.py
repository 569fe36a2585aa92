"""The abraxas sheet in PyTorch: leaky integrate-and-fire neurons in a grid
of columns, delayed event-driven spike delivery, winner-take-all inside each
layer of a column, and always-on STDP with homeostasis.

Neurons are numbered ``((layer * height + y) * width + x) * cells + cell``.
Synapses are rows over fixed geometric offsets (``connectivity``): weights
``[neurons, K]`` and ``input_weights [inputs, first layer]``, views of one
flat buffer so that a neuron's incoming synapses are positions in it.
Spikes in flight are the input current they will bring: an int32
fixed-point ring ``[axon + 1, neurons]`` (``hera.kernels.deliver_spikes``).
All work on synapses is done per spike: delivery and depression per
emitting row, potentiation and synaptic scaling per firing neuron.
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Any

import numpy
import torch

from hera import huge_pages
from hera.errors import HeraError, InstanceFileError
from hera.hooks.types import DynamicState, Snapshot
from hera.kernels import missing_triton
from hera.kernels.counter_random.keys import stream_key
from hera.kernels.deliver_spikes import DEFAULT_SCALE
from hera_family_abraxas import backends, connectivity, layouts

#: Names of the learned tensors and of the dynamic-state tensors.
LEARNED = ("input_weights", "weights", "thresholds")
STATE = ("membrane", "refractory", "pre_trace", "post_trace", "ring", "input_rates",
         "output_counts", "input_spikes")

#: The counter-based random streams of a step (hera.kernels.counter_random):
#: the membrane noise of every neuron, and the draws that make input spikes.
NOISE_STREAM, INPUT_STREAM = 0, 1

#: The backends a sheet can step on.
BACKENDS = backends.BACKENDS

#: Fixed-point units per unit of weight in the delay ring and the scaling sums.
SCALE = DEFAULT_SCALE


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU copy of ``tensor``, on huge pages where it is large."""
    copy = huge_pages.advise_tensor(torch.empty(tensor.shape, dtype=tensor.dtype))
    return copy.copy_(tensor.detach())


@functools.lru_cache(maxsize=None)
def _say_once(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def zero_parameters(d: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Learned parameters that are all zero."""
    return {
        "input_weights": torch.zeros(d["inputs"], layouts.first_layer_size(d)),
        "weights": torch.zeros(layouts.neuron_count(d), layouts.slots_per_row(d)),
        "thresholds": torch.zeros(layouts.neuron_count(d)),
    }


def built_parameters(d: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The learned parameters of a freshly built instance: every input
    weight at ``initial_weight`` (0 in most layouts), the rest zero.

    Zeros are one element expanded to the shape: hera writes them as zeros
    without the memory (``large`` has 8.7 GB of weights)."""
    shapes = {"input_weights": (d["inputs"], layouts.first_layer_size(d)),
              "weights": (layouts.neuron_count(d), layouts.slots_per_row(d)),
              "thresholds": (layouts.neuron_count(d),)}
    tensors = {name: torch.zeros(()).expand(shape) for name, shape in shapes.items()}
    if d["initial_weight"]:
        tensors["input_weights"] = torch.full(shapes["input_weights"], float(d["initial_weight"]))
    return tensors


class Sheet:
    """A live abraxas instance on one device."""

    def __init__(self, definition: dict[str, Any], tensors: dict[str, torch.Tensor],
                 state: DynamicState | None, device: str, seed: int,
                 backend: str | None = None):
        layouts.check_definition(definition)
        d = self.definition = dict(definition)
        self.device = torch.device(device)
        #: Who computes the step: "cpp", the compiled CPU step (the default
        #: on a CPU where it builds), hera.kernels' "triton" (the default on
        #: CUDA) or "torch" (their references); all give the same bits.
        if backend is None and self.device.type == "cuda":
            hint = missing_triton(self.device)
            if hint:
                _say_once(f"abraxas: {hint}")
        self.backend, self._compiled = backends.choose(self.device, backend)
        # The step loop calls the chosen implementation directly: the sheet
        # builds and checks its own tensors (_expect), so the public
        # functions' per-call checks would only cost time every step.
        if self.backend in ("torch", "cpp"):
            from hera.kernels.counter_random import reference as random
            from hera.kernels.decay_accumulate import reference as traces
            from hera.kernels.deliver_spikes import reference as delivery
            from hera.kernels.lif_wta_step import reference as neurons
            from hera.kernels.stdp import reference as stdp
        else:
            from hera.kernels.counter_random import triton_kernel as random
            from hera.kernels.decay_accumulate import triton_kernel as traces
            from hera.kernels.deliver_spikes import triton_kernel as delivery
            from hera.kernels.lif_wta_step import triton_kernel as neurons
            from hera.kernels.stdp import triton_kernel as stdp
        # feed_arrays' values, and where they lie for the compiled step
        self._rate_scratch = numpy.empty(int(d["inputs"]), dtype=numpy.float64)
        self._rate_scratch_at = self._rate_scratch.ctypes.data

        self._rate_view: tuple[torch.Tensor, bool, Any] | None = None  # input_rates in NumPy
        self._fill_random = random.fill
        self._decay_accumulate = traces.decay_accumulate
        self._lif_wta_step = neurons.lif_wta_step
        self._take_slot, self._deliver = delivery.take_slot, delivery.deliver_spikes
        self._potentiate, self._depress = stdp.potentiate_incoming, stdp.depress_rows
        self.inputs, self.neurons = d["inputs"], layouts.neuron_count(d)
        self.sources = self.inputs + self.neurons
        self.axon = d["axon"]
        self.output_start = self.neurons - layouts.output_size(d)
        first, k = layouts.first_layer_size(d), layouts.slots_per_row(d)
        self._check_learned(tensors)

        dev = self.device
        if self.backend != "cpp":  # the compiled step finds synapses from the geometry
            self.targets = connectivity.targets(d, dev)
            self.delays = connectivity.slots(d, dev).delay
            self.input_targets = connectivity.input_targets(d, dev)
            self.input_delays = torch.ones(first, dtype=torch.int32, device=dev)
            self.incoming_weight, self.incoming_source = connectivity.incoming(d, dev)
        # One buffer holds both weight tables, so that the incoming tables can
        # name any synapse by a single position.
        split = self.inputs * first
        self.weight_buffer = huge_pages.advise_tensor(
            torch.empty(split + self.neurons * k, device=dev))
        self.input_weights = self.weight_buffer[:split].view(self.inputs, first)
        self.weights = self.weight_buffer[split:].view(self.neurons, k)
        self.input_weights.copy_(tensors["input_weights"])
        self.weights.copy_(tensors["weights"])
        self.thresholds = tensors["thresholds"].to(dev, copy=True)
        self.current = torch.zeros(self.neurons, device=dev)
        self._set_decays()

        # Random numbers are a function of (seed, step, stream, element): no
        # generator state, and the same draws on every device and backend.
        self.seed = seed
        self.noise = torch.empty(self.neurons, device=dev)
        self.draws = torch.empty(self.inputs, device=dev)
        if self.backend == "triton":  # the fixed-size spiking lists (_spiking)
            self._group_first = torch.arange(0, self.neurons, d["cells"], device=dev)
            self._channel = torch.arange(self.inputs, device=dev)
            self._hole = torch.tensor(-1, device=dev)
        if state is None:
            self.t = 0
            self.modulator = 1.0
            self.membrane = torch.zeros(self.neurons, device=dev)
            self.refractory = torch.zeros(self.neurons, dtype=torch.int32, device=dev)
            self.pre_trace = torch.zeros(self.sources, device=dev)
            self.post_trace = torch.zeros(self.neurons, device=dev)
            self.ring = torch.zeros(self.axon + 1, self.neurons, dtype=torch.int32, device=dev)
            self.input_rates = torch.full((self.inputs,), float(d["input_rate"]), device=dev)
            self.output_counts = torch.zeros(self.neurons - self.output_start, dtype=torch.int64,
                                             device=dev)
            self.input_spikes = torch.zeros(self.inputs, dtype=torch.uint8, device=dev)
            self.frozen = False
        else:
            self._restore(state)
        #: Spikes of each input channel, then of each neuron, since the sheet
        #: was loaded: for watching it (hera_activity), not part of its state.
        self.activity = torch.zeros(self.sources, dtype=torch.int64, device=dev)
        #: Whether input_spikes holds any spike (saves a look every step).
        self._given = bool(self.input_spikes.any())

    def _set_decays(self) -> None:
        """The per-step decays of the membranes, traces and thresholds."""
        d = self.definition
        self.decay_m = math.exp(-1.0 / d["tau_membrane"])
        self.decay_trace = math.exp(-1.0 / d["tau_trace"])
        self.decay_post = math.exp(-1.0 / (d["tau_depression"] or d["tau_trace"]))
        self.decay_theta = math.exp(-1.0 / d["tau_theta"])

    # -- state ---------------------------------------------------------------

    def _check_learned(self, tensors: dict[str, torch.Tensor]) -> None:
        """Refuse learned tensors of another shape or type than the sheet's."""
        d = self.definition
        first, k = layouts.first_layer_size(d), layouts.slots_per_row(d)
        _expect(tensors, "input_weights", (self.inputs, first), torch.float32)
        _expect(tensors, "weights", (self.neurons, k), torch.float32)
        _expect(tensors, "thresholds", (self.neurons,), torch.float32)

    def _check_state(self, state: DynamicState) -> None:
        """Refuse dynamic-state tensors of another shape or type than the sheet's."""
        shapes = {
            "membrane": ((self.neurons,), torch.float32),
            "refractory": ((self.neurons,), torch.int32),
            "pre_trace": ((self.sources,), torch.float32),
            "post_trace": ((self.neurons,), torch.float32),
            "ring": ((self.axon + 1, self.neurons), torch.int32),
            "input_rates": ((self.inputs,), torch.float32),
            "output_counts": ((self.neurons - self.output_start,), torch.int64),
            "input_spikes": ((self.inputs,), torch.uint8),
        }
        for name, (shape, dtype) in shapes.items():
            _expect(state.tensors, name, shape, dtype)

    def _restore(self, state: DynamicState) -> None:
        self._check_state(state)
        for name in STATE:
            setattr(self, name, state.tensors[name].to(self.device, copy=True))
        self._restore_values(state)

    def _restore_values(self, state: DynamicState) -> None:
        """The step counter, the modulator and whether frozen, from ``state``."""
        t = state.values.get("t")
        if type(t) is not int or t < 0:
            raise InstanceFileError("abraxas state lacks its step counter 't'")
        self.t = t
        modulator = state.values.get("modulator", 1.0)
        if isinstance(modulator, bool) or not _level(modulator):
            raise InstanceFileError(f"abraxas state has a bad modulator {modulator!r}")
        self.modulator = float(modulator)
        frozen = state.values.get("frozen", False)
        if not isinstance(frozen, bool):
            raise InstanceFileError(f"abraxas state has a bad 'frozen' {frozen!r}")
        self.frozen = frozen

    def snapshot(self) -> Snapshot:
        """Everything needed to continue exactly from here, on the CPU."""
        cpu = {name: _cpu_copy(getattr(self, name)) for name in STATE}
        learned = {name: _cpu_copy(getattr(self, name)) for name in LEARNED}
        values = {"t": self.t, "modulator": self.modulator, "frozen": self.frozen}
        return Snapshot(dict(self.definition), learned, DynamicState(cpu, values))

    # -- stepping ------------------------------------------------------------

    def run(self, steps: int, spikes: torch.Tensor | None = None) -> None:
        """Advance ``steps`` iterations.

        :param spikes: input spikes at exact steps, for programs: a
            ``[steps, inputs]`` tensor (bool or uint8; nonzero is a spike)
            whose row ``i`` spikes those channels at the ``i``-th step, in
            addition to the spikes the input rates draw.
        :raises HeraError: for a ``spikes`` of another shape.
        """
        raster = None if spikes is None else self._raster(spikes, steps)
        with torch.no_grad():
            if self.backend == "cpp":
                self._run_compiled(steps, raster)
                return
            for step in range(steps):
                self._step(None if raster is None else raster[step])

    def _raster(self, spikes: torch.Tensor, steps: int) -> torch.Tensor:
        if not isinstance(spikes, torch.Tensor) or tuple(spikes.shape) != (steps, self.inputs) \
                or spikes.dtype not in (torch.bool, torch.uint8):
            raise HeraError(f"input spikes for {steps} steps must be a bool or uint8 tensor of "
                            f"shape [{steps}, {self.inputs}]")
        device = "cpu" if self.backend == "cpp" else self.device
        return (spikes != 0).to(device=device, dtype=torch.uint8).contiguous()

    def _run_compiled(self, steps: int, raster: torch.Tensor | None) -> None:
        from hera.kernels.stdp.reference import budget_units

        d = self.definition
        state = [self.membrane, self.refractory, self.thresholds, self.current, self.pre_trace,
                 self.post_trace, self.ring, self.input_rates, self.output_counts,
                 self.input_spikes, self.activity]
        theta_plus, decay_theta, theta_minus, theta_floor = self._theta()
        values = [self.decay_m, float(d["threshold"]), theta_plus, decay_theta,
                  self.decay_trace, float(d["noise"]), *self._rates(),
                  float(d["w_max"]), float(d["w_budget"]), SCALE, theta_minus, self.decay_post,
                  theta_floor, float(d["trace_offset"])]
        sizes = [self.inputs, *(d[key] for key in ("width", "height", "depth", "cells",
                                                  "dendrite", "axon")),
                 self.output_start, d["refractory"], budget_units(float(d["w_budget"]), SCALE)]
        self.t = self._compiled.run_steps(state, self.weight_buffer, values, sizes, self.seed,
                                          self.t, steps, raster)
        if steps:
            self._given = False

    def _step(self, forced: torch.Tensor | None) -> None:
        t = self.t
        spikes, input_spikes = self._advance_neurons(t, forced)
        fired, fired_inputs = self._spiking(spikes, input_spikes)

        neuron_batches, input_batches = self._batches(fired), self._batches(fired_inputs)
        self._events(t, neuron_batches, neuron_batches, input_batches)

        self._decay_accumulate(self.pre_trace[:self.inputs], self.decay_trace, input_spikes)
        self._decay_accumulate(self.pre_trace[self.inputs:], self.decay_trace, spikes)
        self._decay_accumulate(self.post_trace, self.decay_post, spikes)
        self.output_counts += spikes[self.output_start:].long()
        self.activity[:self.inputs] += input_spikes.long()
        self.activity[self.inputs:] += spikes.long()
        self.t = t + 1

    def _events(self, t: int, neurons: list[torch.Tensor], rows: list[torch.Tensor],
                inputs: list[torch.Tensor]) -> None:
        """Plasticity and delivery on the events of step ``t``, with the
        traces of the steps before it: each neuron of ``neurons`` (batches
        of rows of the incoming tables) that fired potentiates its incoming
        synapses by their sources' traces (then synaptic scaling); each
        source that fired, ``rows`` (the same neurons as rows of the
        outgoing weights) and ``inputs`` (channels), depresses its outgoing
        synapses by their targets' traces, then its spike leaves with the
        weights after this learning."""
        d = self.definition
        a_plus, a_minus = self._rates()
        w_max, budget = float(d["w_max"]), float(d["w_budget"])
        # A rate of 0 skips its events: weights stay in [0, w_max], so they
        # could only clip (and scaling belongs to potentiation).
        for batch in neurons if a_plus > 0 else ():
            self._potentiate(self.weight_buffer, self.pre_trace, batch, self.incoming_weight,
                             self.incoming_source, a_plus, w_max, budget, SCALE,
                             float(d["trace_offset"]))
        for batch in rows if a_minus > 0 else ():
            self._depress(self.weights, self.targets, batch, self.post_trace, a_minus, w_max)
        for batch in inputs if a_minus > 0 else ():
            self._depress(self.input_weights, self.input_targets, batch, self.post_trace,
                          a_minus, w_max)
        for batch in rows:
            self._deliver(self.ring, t, batch, self.targets, self.weights, self.delays, SCALE)
        for batch in inputs:
            self._deliver(self.ring, t, batch, self.input_targets, self.input_weights,
                          self.input_delays, SCALE)

    def _advance_neurons(self, t: int, forced: torch.Tensor | None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """The neurons' part of step ``t``: the input spikes (drawn from the
        rates, ``forced``, and those given), then the membranes with this
        step's current and noise; ``(spikes, input_spikes)``, float."""
        d = self.definition
        current = self._take_slot(self.ring, t, SCALE, self.current)
        noise = self._noise(t) * d["noise"]
        draws = self._fill_random(self.draws, stream_key(self.seed, t, INPUT_STREAM), False)
        input_spikes = (draws < self.input_rates).float()
        if forced is not None:
            input_spikes = torch.maximum(input_spikes, forced.float())
        if self._given:
            input_spikes = torch.maximum(input_spikes, self.input_spikes.float())
            self.input_spikes.zero_()
            self._given = False

        # Leaky integrate-and-fire with winner-take-all: in each layer of each
        # column at most the neuron furthest over its threshold fires.
        theta_plus, decay_theta, theta_minus, theta_floor = self._theta()
        spikes = self._lif_wta_step(self.membrane, self.refractory, self.thresholds, current,
                                    noise, self.decay_m, float(d["threshold"]), d["refractory"],
                                    theta_plus, decay_theta, d["cells"], None,
                                    theta_minus=theta_minus, theta_floor=theta_floor)
        return spikes, input_spikes

    def _noise(self, t: int) -> torch.Tensor:
        """The unit membrane noise of every neuron at step ``t``."""
        return self._fill_random(self.noise, stream_key(self.seed, t, NOISE_STREAM), True)

    def _spiking(self, spikes: torch.Tensor,
                 input_spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The neurons and the input channels that spiked, as lists of rows
        for the event ops. On the triton backend they keep one size, one
        entry per winner-take-all group (at most one of its neurons fires)
        and per channel, with -1 where nothing fired: finding them reads
        nothing back to the host, so the GPU never waits for the CPU within
        a step. The torch backend lists only the rows that fired."""
        if self.backend != "triton":
            return spikes.nonzero().view(-1), input_spikes.nonzero().view(-1)
        groups = spikes.view(-1, self.definition["cells"])
        winner = self._group_first + groups.argmax(dim=1)
        fired = torch.where(groups.amax(dim=1) > 0, winner, self._hole)
        return fired, torch.where(input_spikes > 0, self._channel, self._hole)

    def _batches(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """The spiking rows in the calls to give the event ops: none when
        nothing spiked; for the torch reference at most ROWS_AT_ONCE a call,
        which bounds its gathers (the ops treat each row on its own, so the
        split changes no bit)."""
        if not rows.numel():
            return []
        if self.backend != "torch" or rows.numel() <= layouts.ROWS_AT_ONCE:
            return [rows]
        return list(rows.split(layouts.ROWS_AT_ONCE))

    def _rates(self) -> tuple[float, float]:
        """``(a_plus, a_minus)`` gated by the neuromodulator; none while
        frozen."""
        d = self.definition
        if self.frozen:
            return 0.0, 0.0
        return float(d["a_plus"]) * self.modulator, float(d["a_minus"]) * self.modulator

    def _theta(self) -> tuple[float, float, float, float]:
        """``(theta_plus, decay_theta, theta_minus, theta_floor)`` of the
        adaptive thresholds: each step ``θ = max(θ * decay + theta_plus *
        spike - theta_minus, theta_floor)``, where ``theta_minus =
        theta_plus * target_rate`` draws each neuron's rate toward the
        target and ``theta_floor = min_threshold - threshold`` lets a neuron
        that fires too little lower its threshold down to ``min_threshold``
        (θ starts at 0 and only a target rate takes it below). While frozen
        ``(0, 1, 0, theta_floor)``, which leaves every threshold's bits as
        they are."""
        d = self.definition
        theta_floor = float(d["min_threshold"]) - float(d["threshold"])
        if self.frozen:
            return 0.0, 1.0, 0.0, theta_floor
        theta_plus = float(d["theta_plus"])
        return theta_plus, self.decay_theta, theta_plus * float(d["target_rate"]), theta_floor

    # -- input and output ----------------------------------------------------

    def set_modulator(self, level: float) -> None:
        """Set the neuromodulator (reward) level that multiplies both
        learning rates from the next step on: 1 is plain always-on STDP, 0
        stops learning, 2 learns twice as fast.

        :raises HeraError: for a negative or non-finite level.
        """
        if not _level(level):
            raise HeraError(f"a reward level must be a finite number >= 0, not {level!r}")
        self.modulator = float(level)

    def set_frozen(self, frozen: bool) -> None:
        """Freeze or thaw all adaptation from the next step on. Frozen, the
        sheet runs on (membranes, traces, spikes, output) but nothing it has
        learned changes: no plasticity, whatever the reward level, and no
        threshold adaptation. Thawed, it learns as before."""
        self.frozen = bool(frozen)

    def give_input_spikes(self, channels: list[int]) -> None:
        """Make input ``channels`` spike at the next step, in addition to
        the spikes their rates draw.

        :raises HeraError: for a channel that the sheet does not have.
        """
        if isinstance(channels, list):
            odd = next((c for c in channels if type(c) is not int), None)
            if odd is not None:
                raise HeraError(f"input spikes are channel numbers, not {odd!r}")
            bad = [c for c in channels if not 0 <= c < self.inputs]
            chosen = torch.tensor(channels, dtype=torch.long)
        else:  # an array from a program
            chosen = torch.as_tensor(channels).reshape(-1)
            if chosen.dtype.is_floating_point or chosen.dtype.is_complex or \
                    chosen.dtype == torch.bool:
                raise HeraError(f"input spikes are channel numbers, not {chosen.dtype}")
            chosen = chosen.long()
            bad = chosen[(chosen < 0) | (chosen >= self.inputs)].tolist()
        if bad:
            raise HeraError(f"no input channel {bad[0]} (channels 0-{self.inputs - 1})")
        if chosen.numel():
            self.input_spikes[chosen.to(self.input_spikes.device)] = 1
            self._given = True

    def set_input(self, values: list[float]) -> None:
        """Drive the input channels: ``values`` in [0, 1] scale ``max_rate``;
        channels beyond ``values`` fall back to the idle rate."""
        d = self.definition
        rates = torch.full((self.inputs,), float(d["input_rate"]))
        for i, value in enumerate(values[: self.inputs]):
            rates[i] = float(d["max_rate"]) * min(1.0, max(0.0, value))
        self.input_rates = rates.to(self.device)

    def feed_arrays(self, values: Any, spikes: Any) -> None:
        """Input from a program: ``values`` (or ``None``) as
        :meth:`set_input` takes them, as an array or sequence of numbers,
        giving the same rates bit for bit; ``spikes`` (or ``None``) the
        channels that spike at the next step, as :meth:`give_input_spikes`.
        A few microseconds, nothing allocated: programs feed every step.

        :raises HeraError: for values that are not numbers or a bad channel;
            nothing changes then.
        """
        if values is not None:
            try:
                given = numpy.asarray(values, dtype=numpy.float64)
            except (TypeError, ValueError):
                raise HeraError("input values must be an array of numbers") from None
            if given.ndim != 1:
                given = given.reshape(-1)
            n = min(len(given), self.inputs)
            self._rate_scratch[:n] = given[:n]
        if spikes is not None:
            self.give_input_spikes(spikes)  # checked before it changes anything
        if values is None:
            return
        d = self.definition
        if self._compiled is not None and self.input_rates.device.type == "cpu":
            # the same bits from the compiled step's library: NumPy's wide
            # vector kernels would slow the step that follows
            self._compiled.input_rates(self._rate_scratch_at, n, self.input_rates,
                                       float(d["max_rate"]), float(d["input_rate"]))
            return
        rates = self._rate_scratch[:n]
        # as the line does: NaN is 0 (fmax), clipped to [0, 1], -0.0 is +0.0
        # (adding 0), and the product in double precision, rounded to float
        # once when stored
        numpy.fmax(rates, 0.0, out=rates)
        numpy.minimum(rates, 1.0, out=rates)
        rates += 0.0
        self._set_rates(rates)

    def _set_rates(self, clipped: Any) -> None:
        """The first channels' rates: ``clipped`` (doubles in [0, 1]) times
        ``max_rate``, the product rounded to float once; the rest idle."""
        n = len(clipped)
        target = self.input_rates
        if self._rate_view is None or self._rate_view[0] is not target:
            # set_input makes a new tensor; on a GPU the rates go through the CPU
            on_cpu = target.device.type == "cpu"
            self._rate_view = (target, on_cpu, target.numpy() if on_cpu else
                               numpy.empty(self.inputs, dtype=numpy.float32))
        _, on_cpu, view = self._rate_view
        numpy.multiply(clipped, float(self.definition["max_rate"]), out=view[:n],
                       casting="same_kind")
        if n < self.inputs:
            view[n:] = float(self.definition["input_rate"])
        if not on_cpu:
            target.copy_(torch.from_numpy(view))

    def populations(self) -> list[tuple[str, int, int]]:
        """``(name, start, stop)`` of each population in :attr:`activity`:
        the input channels, then each layer (the last is the output area)."""
        d = self.definition
        size = layouts.first_layer_size(d)
        found = [("inputs", 0, self.inputs)]
        for layer in range(d["depth"]):
            start = self.inputs + layer * size
            found.append((f"layer {layer + 1}", start, start + size))
        return found

    def activity_counts(self) -> dict[str, tuple[int, int]]:
        """Spikes of each population since the sheet was loaded, and its size."""
        counts = self.activity.to("cpu")
        return {name: (int(counts[start:stop].sum()), stop - start)
                for name, start, stop in self.populations()}

    #: What probe() reads, and of which neurons: spikes of any, the rest of
    #: the sheet's neurons only (input channels have no membrane).
    PROBED = ("spikes", "membrane", "threshold")

    def probe(self, variable: str, neurons: Any) -> Any:
        """``variable`` of ``neurons`` (numbered as :meth:`populations`: the
        inputs first), as a NumPy array: ``spikes`` counted since load,
        ``membrane`` the membrane potential, ``threshold`` the effective
        threshold (the base plus the neuron's adaptive part).

        :raises HeraError: an unknown variable, or a neuron it cannot have.
        """
        chosen = numpy.asarray(neurons, dtype=numpy.int64).reshape(-1)
        self._check_probe(variable, chosen)
        index = torch.from_numpy(chosen)
        if variable == "spikes":
            return self.activity[index.to(self.activity.device)].cpu().numpy()
        index = (index - self.inputs).to(self.membrane.device)
        if variable == "membrane":
            return self.membrane[index].cpu().numpy()
        # as the step compares it: in float32
        return (float(self.definition["threshold"]) + self.thresholds[index]).cpu().numpy()

    def _check_probe(self, variable: str, chosen: Any) -> None:
        """Refuse a variable :meth:`probe` does not read, or a neuron it
        cannot have (``chosen``: int64 NumPy neuron numbers)."""
        if variable not in self.PROBED:
            raise HeraError(f"abraxas records {', '.join(self.PROBED)}, not {variable!r}")
        low = 0 if variable == "spikes" else self.inputs
        bad = chosen[(chosen < low) | (chosen >= self.sources)]
        if bad.size:
            what = "neurons" if variable == "spikes" else f"{variable}: neurons"
            raise HeraError(f"no neuron {int(bad[0])} to record ({what} {low}-{self.sources - 1})")

    def take_output(self) -> list[int]:
        """Spike counts of the output area since the last call."""
        return self.take_output_array().tolist()

    def take_output_array(self) -> Any:
        """:meth:`take_output` as a NumPy array of int64."""
        counts = self.output_counts.to("cpu", copy=True).numpy()
        self.output_counts.zero_()
        return counts


def _level(value: Any) -> bool:
    """Whether ``value`` is a usable neuromodulator level: a finite number >= 0."""
    return isinstance(value, (int, float)) and 0 <= value < float("inf")


def _expect(tensors: dict[str, torch.Tensor], name: str, shape: tuple[int, ...] | None,
            dtype: torch.dtype) -> None:
    tensor = tensors.get(name)
    if tensor is None:
        raise InstanceFileError(f"abraxas tensor {name!r} is missing")
    if tensor.dtype != dtype or (shape is not None and tuple(tensor.shape) != shape):
        raise InstanceFileError(
            f"abraxas tensor {name!r} is {str(tensor.dtype).removeprefix('torch.')}"
            f"{list(tensor.shape)}, expected {str(dtype).removeprefix('torch.')}"
            f"{list(shape) if shape is not None else ''}")
