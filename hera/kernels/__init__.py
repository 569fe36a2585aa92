"""Triton building blocks any family may reuse, each beside a plain-PyTorch
reference with the same semantics.

One folder per op (the layout of flash-linear-attention's ``fla/ops``):
``reference.py`` is the definition, written to be obviously right and never
edited to match a kernel; ``triton_kernel.py`` is the GPU version;
``__init__.py`` checks the arguments and dispatches on ``backend``
(``"torch"`` or ``"triton"``).

Ops (all update their state tensors in place):

``fill_uniform(out, key)``, ``fill_normal(out, key)``
    Counter-based random numbers: element ``i`` is a hash of the stream's
    key (``stream_key(seed, step, stream)``) and ``i``, so a model keeps no
    generator state and draws the same numbers on every device.
``decay_accumulate(trace, decay, events)``
    ``trace <- trace * decay + events`` — synaptic traces, eligibility traces,
    any first-order low-pass filter of spikes.
``deliver_spikes(ring, t, sources, targets, weights, delays, scale)``
    Event-driven synaptic delivery: every synapse of every source that spiked
    at step ``t`` adds its weight, in fixed point, to the slot of a delay ring
    buffer where its target will read it ``delay`` steps later. Integer adds
    commute, so the ring is bit-identical whatever order a GPU's atomics take.
``take_slot(ring, t, scale)``
    This step's input current from the ring (float32), clearing that slot.
``lif_wta_step(membrane, refractory, threshold_adapt, current, noise, ...)``
    One step of leaky integrate-and-fire neurons with adaptive thresholds and
    winner-take-all inside consecutive groups; returns the spikes.
``depress_rows(weights, targets, sources, post_trace, a_minus, w_max)``
    STDP at a pre-synaptic event: the synapses of every source that spiked
    lose ``a_minus`` times their target's postsynaptic trace.
``potentiate_incoming(weights, pre_trace, neurons, incoming_weight, ...)``
    STDP at a post-synaptic event: the synapses onto every neuron that
    spiked gain ``a_plus`` times their source's presynaptic trace, then are
    scaled down to a budget measured in fixed point (synaptic scaling).

A step of a family reads ``fill_normal`` (noise) → ``take_slot`` →
``lif_wta_step`` → ``deliver_spikes`` of the neurons that fired → ``decay_accumulate`` of the traces; a learning
step adds ``depress_rows`` and ``potentiate_incoming`` of the neurons that
fired.

Both backends give bit-identical results on the same inputs: the kernels do
the reference's float32 operations in the reference's order and are launched
with ``enable_fp_fusion=False`` (no fused multiply-add), and spike delivery
and the scaling total are integer arithmetic. The tests compare them in
Triton's interpreter (``TRITON_INTERPRET=1``) on the CPU, and on the GPU
where there is one.

Importing this package imports neither torch nor triton (``hera --help``
must stay fast); an op's package imports torch, and its Triton launcher is
imported the first time the ``triton`` backend is used.
"""

from __future__ import annotations

import functools
import os
from typing import Any

#: The values every op's ``backend`` argument accepts.
BACKENDS = ("torch", "triton")

# The spellings Triton itself reads as true for TRITON_INTERPRET.
_TRUE = ("1", "true", "yes", "on", "y")


def device_type(device: Any) -> str:
    """``"cuda"``, ``"cpu"``, ... of a torch.device, a string or a tensor."""
    device = getattr(device, "device", device)  # a tensor gives its device
    kind = getattr(device, "type", None)
    return kind if isinstance(kind, str) else str(device).split(":", 1)[0]


def interpreting() -> bool:
    """Whether ``TRITON_INTERPRET`` asks Triton to interpret kernels on the CPU."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in _TRUE


@functools.lru_cache(maxsize=None)
def _triton_imports() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_usable(device: Any) -> bool:
    """Whether the Triton kernels can run on tensors of ``device``.

    :param device: a ``torch.device``, a device string (``"cuda:0"``,
        ``"cpu"``) or a tensor.
    :returns: True for CUDA devices when triton imports, and for any device
        when ``TRITON_INTERPRET=1`` (Triton's interpreter runs the kernels on
        the CPU, slowly: for tests). Cheap: imports triton once, not torch.
    """
    if device_type(device) != "cuda" and not interpreting():
        return False
    return _triton_imports()


#: How to get triton where a GPU could use it (hera never needs it on a CPU).
TRITON_INSTALL = "pip install 'hera[gpu]' installs it"


def missing_triton(device: Any) -> str | None:
    """Why the Triton kernels cannot run on ``device`` although they would
    help, with how to get them: a CUDA device where triton does not import.
    None everywhere else (a CPU needs no triton).

    :param device: a ``torch.device``, a device string or a tensor.
    """
    if device_type(device) != "cuda" or _triton_imports():
        return None
    return f"triton is not installed, so {device} steps with torch, more slowly ({TRITON_INSTALL})"


def default_backend(device: Any) -> str:
    """The backend to use on ``device`` when nothing asks for another:
    ``"triton"`` on a CUDA device where triton imports, otherwise ``"torch"``
    (the interpreter is for tests, never a default).

    :param device: a ``torch.device``, a device string or a tensor.
    """
    return "triton" if device_type(device) == "cuda" and triton_usable(device) else "torch"


def check_backend(backend: str, device: Any) -> None:
    """Refuse a backend that is unknown or cannot run on ``device``.

    :param backend: ``"torch"`` or ``"triton"``.
    :param device: where the op's tensors live (device, string or tensor).
    :raises ValueError: for an unknown backend.
    :raises RuntimeError: for ``"triton"`` where :func:`triton_usable` is False.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r} (backends: {', '.join(BACKENDS)})")
    if backend == "triton" and not triton_usable(device):
        raise RuntimeError(f"the triton backend cannot run on {device_type(device)} tensors: "
                           "it needs a CUDA device with triton installed (or TRITON_INTERPRET=1)")
