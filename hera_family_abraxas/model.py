"""The abraxas sheet in PyTorch: leaky integrate-and-fire neurons in a grid
of columns, delayed spike delivery, winner-take-all inside each layer of a
column, and always-on STDP with homeostasis.

Neurons are numbered ``((layer * height + y) * width + x) * cells + cell``.
Synapses are a dense ``[sources, neurons]`` matrix (sources are the input
channels, then the neurons) masked to what the geometry connects; each
synapse's conduction delay is ``1 + min(axon - 1, distance)`` steps, where
distance is the Chebyshev distance between the two columns. Spikes in flight
are a ring buffer ``history[axon, sources]``: the spikes of step ``t - d``
sit in slot ``(t - d) % axon``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hera.hooks.types import DynamicState, Snapshot
from hera.kernels import check_backend, default_backend
from hera_family_abraxas import layouts

#: Names of the learned tensors and of the dynamic-state tensors.
LEARNED = ("weights", "thresholds")
STATE = ("membrane", "refractory", "pre_trace", "post_trace", "history", "input_rates",
         "output_counts", "rng")


def zero_parameters(d: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The learned parameters of a freshly built instance: all zero."""
    return {
        "weights": torch.zeros(layouts.source_count(d), layouts.neuron_count(d)),
        "thresholds": torch.zeros(layouts.neuron_count(d)),
    }


def geometry(d: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The connectivity mask ``[sources, neurons]`` and each synapse's delay."""
    w, h, depth, cells, inputs = d["width"], d["height"], d["depth"], d["cells"], d["inputs"]
    neurons = layouts.neuron_count(d)
    index = torch.arange(neurons)
    layer = index // (h * w * cells)
    y = (index // (w * cells)) % h
    x = (index // cells) % w
    distance = torch.maximum((x[:, None] - x[None, :]).abs(), (y[:, None] - y[None, :]).abs())
    within = distance <= d["dendrite"]
    forward = layer[None, :] == layer[:, None] + 1
    lateral = (layer[None, :] == layer[:, None]) & ~torch.eye(neurons, dtype=torch.bool)
    recurrent = within & (forward | lateral)
    feed_in = (layer == 0)[None, :].expand(inputs, neurons)
    mask = torch.cat([feed_in, recurrent], dim=0)
    delay = torch.cat([torch.ones(inputs, neurons, dtype=torch.long),
                       1 + distance.clamp(max=d["axon"] - 1)], dim=0)
    return mask, delay


class Sheet:
    """A live abraxas instance on one device."""

    def __init__(self, definition: dict[str, Any], tensors: dict[str, torch.Tensor],
                 state: DynamicState | None, device: str, seed: int,
                 backend: str | None = None):
        layouts.check_definition(definition)
        d = self.definition = dict(definition)
        self.device = torch.device(device)
        #: Who computes the neuron update and traces: hera.kernels' "triton"
        #: (the default on CUDA) or "torch"; both give the same bits.
        self.backend = backend or default_backend(self.device)
        check_backend(self.backend, self.device)
        # The step loop calls the chosen implementation directly: the sheet
        # builds and checks its own tensors (_expect), so the public
        # functions' per-call checks would only cost time every step.
        if self.backend == "torch":
            from hera.kernels.decay_accumulate import reference as traces
            from hera.kernels.lif_wta_step import reference as neurons
        else:
            from hera.kernels.decay_accumulate import triton_kernel as traces
            from hera.kernels.lif_wta_step import triton_kernel as neurons
        self._decay_accumulate = traces.decay_accumulate
        self._lif_wta_step = neurons.lif_wta_step
        self.inputs, self.neurons = d["inputs"], layouts.neuron_count(d)
        self.sources = self.inputs + self.neurons
        self.columns = d["width"] * d["height"] * d["depth"]
        self.axon = d["axon"]
        self.output_start = (d["depth"] - 1) * d["width"] * d["height"] * d["cells"]
        _expect(tensors, "weights", (self.sources, self.neurons), torch.float32)
        _expect(tensors, "thresholds", (self.neurons,), torch.float32)

        mask, delay = geometry(d)
        dev = self.device
        self.mask = mask.to(dev)
        # Flat index of (slot of delay 0, source) in history; the step adds t.
        source = torch.arange(self.sources)[:, None]
        self._gather_base = ((-delay) * self.sources + source).to(dev)
        self._history_size = self.axon * self.sources

        self.weights = tensors["weights"].to(dev, copy=True)
        self.thresholds = tensors["thresholds"].to(dev, copy=True)
        self.decay_m = math.exp(-1.0 / d["tau_membrane"])
        self.decay_trace = math.exp(-1.0 / d["tau_trace"])
        self.decay_theta = math.exp(-1.0 / d["tau_theta"])

        self.generator = torch.Generator(device=dev)
        if state is None:
            self.generator.manual_seed(seed)
            self.t = 0
            self.membrane = torch.zeros(self.neurons, device=dev)
            self.refractory = torch.zeros(self.neurons, dtype=torch.int32, device=dev)
            self.pre_trace = torch.zeros(self.sources, device=dev)
            self.post_trace = torch.zeros(self.neurons, device=dev)
            self.history = torch.zeros(self.axon, self.sources, device=dev)
            self.input_rates = torch.full((self.inputs,), float(d["input_rate"]), device=dev)
            self.output_counts = torch.zeros(self.neurons - self.output_start, dtype=torch.int64,
                                             device=dev)
        else:
            self._restore(state, seed)

    # -- state ---------------------------------------------------------------

    def _restore(self, state: DynamicState, seed: int) -> None:
        shapes = {
            "membrane": ((self.neurons,), torch.float32),
            "refractory": ((self.neurons,), torch.int32),
            "pre_trace": ((self.sources,), torch.float32),
            "post_trace": ((self.neurons,), torch.float32),
            "history": ((self.axon, self.sources), torch.float32),
            "input_rates": ((self.inputs,), torch.float32),
            "output_counts": ((self.neurons - self.output_start,), torch.int64),
            "rng": (None, torch.uint8),
        }
        for name, (shape, dtype) in shapes.items():
            _expect(state.tensors, name, shape, dtype)
            if name != "rng":
                setattr(self, name, state.tensors[name].to(self.device, copy=True))
        t = state.values.get("t")
        if type(t) is not int or t < 0:
            from hera.errors import InstanceFileError

            raise InstanceFileError("abraxas state lacks its step counter 't'")
        self.t = t
        if state.values.get("rng_device", "cpu") == self.device.type:
            self.generator.set_state(state.tensors["rng"].clone())
        else:
            # CPU and CUDA generators keep different states: moving devices
            # continues with a stream seeded from the instance and the step.
            self.generator.manual_seed((seed + t) % (1 << 63))

    def snapshot(self) -> Snapshot:
        """Everything needed to continue exactly from here, on the CPU."""
        cpu = {name: getattr(self, name).detach().to("cpu", copy=True)
               for name in STATE if name != "rng"}
        cpu["rng"] = self.generator.get_state().to("cpu")
        learned = {"weights": self.weights.to("cpu", copy=True),
                   "thresholds": self.thresholds.to("cpu", copy=True)}
        values = {"t": self.t, "rng_device": self.device.type}
        return Snapshot(dict(self.definition), learned, DynamicState(cpu, values))

    # -- stepping ------------------------------------------------------------

    def run(self, steps: int) -> None:
        """Advance ``steps`` iterations."""
        with torch.no_grad():
            for _ in range(steps):
                self._step()

    def _step(self) -> None:
        d = self.definition
        g = self.generator
        slot = self.t % self.axon
        # Spikes arriving now: each synapse reads its source's history at t - delay.
        index = (self._gather_base + slot * self.sources) % self._history_size
        arriving = self.history.view(-1)[index]
        current = (self.weights * arriving).sum(0)

        noise = torch.randn(self.neurons, generator=g, device=self.device) * d["noise"]
        input_spikes = (torch.rand(self.inputs, generator=g, device=self.device)
                        < self.input_rates).float()

        # Leaky integrate-and-fire with winner-take-all: in each layer of each
        # column at most the neuron furthest over its threshold fires.
        spikes = self._lif_wta_step(self.membrane, self.refractory, self.thresholds, current,
                                    noise, self.decay_m, float(d["threshold"]), d["refractory"],
                                    float(d["theta_plus"]), self.decay_theta, d["cells"], None)

        # STDP: a post spike potentiates by the pre trace; an arriving pre
        # spike depresses by the post trace. Only connected synapses change.
        change = d["a_plus"] * self.pre_trace[:, None] * spikes[None, :] \
            - d["a_minus"] * arriving * self.post_trace[None, :]
        weights = torch.where(self.mask, (self.weights + change).clamp(0.0, d["w_max"]),
                              self.weights)
        if d["w_budget"] > 0:
            # Synaptic scaling: what one input gains, the neuron's others lose,
            # so learning sharpens selectivity instead of saturating every synapse.
            total = weights.sum(0, keepdim=True)
            weights = torch.where(total > d["w_budget"],
                                  weights * (d["w_budget"] / total.clamp(min=d["w_budget"])),
                                  weights)
        self.weights = weights

        emitted = torch.cat([input_spikes, spikes])
        self._decay_accumulate(self.pre_trace, self.decay_trace, emitted)
        self._decay_accumulate(self.post_trace, self.decay_trace, spikes)
        self.history[slot] = emitted
        self.output_counts += spikes[self.output_start:].long()
        self.t += 1

    # -- input and output ----------------------------------------------------

    def set_input(self, values: list[float]) -> None:
        """Drive the input channels: ``values`` in [0, 1] scale ``max_rate``;
        channels beyond ``values`` fall back to the idle rate."""
        d = self.definition
        rates = torch.full((self.inputs,), float(d["input_rate"]))
        for i, value in enumerate(values[: self.inputs]):
            rates[i] = float(d["max_rate"]) * min(1.0, max(0.0, value))
        self.input_rates = rates.to(self.device)

    def take_output(self) -> list[int]:
        """Spike counts of the output area since the last call."""
        counts = self.output_counts.to("cpu").tolist()
        self.output_counts.zero_()
        return counts


def _expect(tensors: dict[str, torch.Tensor], name: str, shape: tuple[int, ...] | None,
            dtype: torch.dtype) -> None:
    from hera.errors import InstanceFileError

    tensor = tensors.get(name)
    if tensor is None:
        raise InstanceFileError(f"abraxas tensor {name!r} is missing")
    if tensor.dtype != dtype or (shape is not None and tuple(tensor.shape) != shape):
        raise InstanceFileError(
            f"abraxas tensor {name!r} is {str(tensor.dtype).removeprefix('torch.')}"
            f"{list(tensor.shape)}, expected {str(dtype).removeprefix('torch.')}"
            f"{list(shape) if shape is not None else ''}")
