"""``trace <- trace * decay + events``: the decay and accumulation of a
per-neuron trace (presynaptic and postsynaptic STDP traces, eligibility
traces, firing-rate estimates), on the torch or triton backend."""

from __future__ import annotations

import torch

from hera.kernels import check_backend
from hera.kernels._checks import expect
from hera.kernels.decay_accumulate import reference


def decay_accumulate(trace: torch.Tensor, decay: float, events: torch.Tensor, *,
                     backend: str = "torch") -> torch.Tensor:
    """Decay ``trace`` and add ``events``, in place: ``trace <- trace * decay + events``.

    Float32 throughout: ``trace * decay`` is rounded, then the add is rounded
    (no fused multiply-add on either backend, so they agree bit for bit).

    :param trace: float32 ``[N]``, updated in place.
    :param decay: the factor every element is multiplied by, a Python number
        (used as float32), typically ``exp(-1 / tau)``.
    :param events: float32 ``[N]`` on the same device, added after the decay
        (spikes as 0/1, or any increment).
    :param backend: ``"torch"`` (the reference, any device) or ``"triton"``
        (CUDA, or any device under ``TRITON_INTERPRET=1``).
    :returns: ``trace``.
    :raises ValueError: for a wrong dtype, shape or device, or an unknown backend.
    :raises RuntimeError: for ``"triton"`` where Triton cannot run.
    """
    expect("trace", trace, (torch.float32,), (None,))
    check_backend(backend, trace.device)
    expect("events", events, (torch.float32,), tuple(trace.shape), trace.device)
    if backend == "torch":
        return reference.decay_accumulate(trace, float(decay), events)
    from hera.kernels.decay_accumulate import triton_kernel

    return triton_kernel.decay_accumulate(trace, float(decay), events)


__all__ = ["decay_accumulate"]
