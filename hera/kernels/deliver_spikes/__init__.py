"""Event-driven synaptic delivery through a fixed-point delay ring buffer.

The ring holds the input current of the next ``L`` steps: row ``step % L``
is what the neurons receive at ``step``, as int32 in units of ``1 / scale``.
A step reads and clears its row (:func:`take_slot`), then
:func:`deliver_spikes` adds each synapse of every neuron that fired to the
row of the step where it arrives. Synapses are rows of ``K`` slots per
source (``targets``, ``weights``, ``delays``), so the work is proportional to
the spikes, not to the synapses.

Fixed point makes delivery exact and order-free: a GPU's atomic adds land in
any order, and integer addition gives the same bits in every order, so both
backends, and every run, agree bit for bit. The price is the quantum: each
weight is rounded to a multiple of ``1 / scale`` (``scale = 65536.0`` gives
about 1.5e-5), and sums wrap around past ``±2**31 / scale`` (32768 at
65536.0). A power of two for ``scale`` keeps ``weight * scale`` and the
conversion back exact.
"""

from __future__ import annotations

import torch

from hera.kernels import check_backend
from hera.kernels._checks import expect
from hera.kernels.deliver_spikes import reference

#: A good default for ``scale``: a power of two, 1.5e-5 resolution, sums up to ±32768.
DEFAULT_SCALE = 65536.0


def deliver_spikes(ring: torch.Tensor, t: int, sources: torch.Tensor, targets: torch.Tensor,
                   weights: torch.Tensor, delays: torch.Tensor, scale: float = DEFAULT_SCALE,
                   *, backend: str = "torch") -> torch.Tensor:
    """Deliver the spikes of step ``t`` into the delay ring, in place.

    For every ``m`` and every slot ``k`` with ``targets[s, k] >= 0``, where
    ``s = sources[m]``::

        ring[(t + delay) % L, targets[s, k]] += floor(weights[s, k] * scale + 0.5)

    where ``delay`` is ``delays[s, k]`` (per synapse) or ``delays[k]`` (one
    delay per slot, shared by every row: the layout where slot ``k`` is a
    fixed geometric offset). The rounding is half up, computed in float32
    (``weights * scale`` rounds, ``+ 0.5`` rounds, then floor) and converted
    to int32. Duplicate targets in a row, and a row listed twice in
    ``sources``, each add their own amount.

    :param ring: int32 ``[L, N]``, ``L >= 2``: the input current of the next
        ``L`` steps in units of ``1 / scale``, row ``step % L``; updated in place.
    :param t: the current step, an int ``>= 0`` (any size: it is reduced
        modulo ``L`` first).
    :param sources: int32 or int64 ``[M]``: the source rows that spiked at
        ``t``, each in ``0..S-1``, or negative for a hole in the list
        (skipped: a list of one size every step needs no read-back to
        compact it); ``M`` may be 0.
    :param targets: int32 ``[S, K]``: the target neuron (``0..N-1``) of each
        synapse slot of each source row, ``-1`` for an empty slot.
    :param weights: float32 ``[S, K]``: synaptic weights; ``|weight * scale|``
        must stay below ``2**31``.
    :param delays: int32 ``[S, K]`` or ``[K]``: steps until arrival, each in
        ``1..L-1`` (so a delivery never lands in the row just taken).
    :param scale: ring units per unit of weight, a positive Python number
        (used as float32); a power of two is best.
    :param backend: ``"torch"`` (the reference, any device) or ``"triton"``
        (CUDA, or any device under ``TRITON_INTERPRET=1``).
    :returns: ``ring``.
    :raises ValueError: for a wrong dtype, shape or device, a negative ``t``,
        a non-positive ``scale`` or an unknown backend. Index values are not
        checked here (that would wait for the device): check them once with
        :func:`check_synapses`.
    :raises RuntimeError: for ``"triton"`` where Triton cannot run.
    """
    expect("ring", ring, (torch.int32,), (None, None))
    check_backend(backend, ring.device)
    if ring.shape[0] < 2:
        raise ValueError(f"ring needs at least 2 slots (delays are 1..L-1), not {ring.shape[0]}")
    if int(t) != t or t < 0:
        raise ValueError(f"t must be a step number >= 0, not {t!r}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, not {scale!r}")
    expect("sources", sources, (torch.int32, torch.int64), (None,), ring.device)
    expect("targets", targets, (torch.int32,), (None, None), ring.device)
    expect("weights", weights, (torch.float32,), tuple(targets.shape), ring.device)
    if delays.dim() == 1:
        expect("delays", delays, (torch.int32,), (targets.shape[1],), ring.device)
    else:
        expect("delays", delays, (torch.int32,), tuple(targets.shape), ring.device)
    if backend == "torch":
        return reference.deliver_spikes(ring, int(t), sources, targets, weights, delays,
                                        float(scale))
    from hera.kernels.deliver_spikes import triton_kernel

    return triton_kernel.deliver_spikes(ring, int(t), sources, targets, weights, delays,
                                        float(scale))


def take_slot(ring: torch.Tensor, t: int, scale: float = DEFAULT_SCALE, *,
              out: torch.Tensor | None = None, backend: str = "torch") -> torch.Tensor:
    """Take the input current of step ``t`` out of the ring: read row
    ``t % L`` as float32 and zero it, in place.

    The current is ``ring[t % L] * (1 / scale)``: the int32 converts to the
    nearest float32, then one float32 multiply by ``1 / scale`` (exact for a
    power-of-two ``scale`` while ``|units| < 2**24``).

    :param ring: int32 ``[L, N]``, see :func:`deliver_spikes`; row ``t % L``
        is zeroed.
    :param t: the current step, an int ``>= 0``.
    :param scale: the ``scale`` the ring was filled with, a positive Python number.
    :param out: optional float32 ``[N]`` on the ring's device to write the
        current into (no allocation per step); a new tensor otherwise.
    :param backend: ``"torch"`` or ``"triton"``, as for :func:`deliver_spikes`.
    :returns: float32 ``[N]``, ``out`` when given.
    :raises ValueError: for a wrong dtype, shape or device, a negative ``t``,
        a non-positive ``scale`` or an unknown backend.
    :raises RuntimeError: for ``"triton"`` where Triton cannot run.
    """
    expect("ring", ring, (torch.int32,), (None, None))
    check_backend(backend, ring.device)
    if int(t) != t or t < 0:
        raise ValueError(f"t must be a step number >= 0, not {t!r}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, not {scale!r}")
    if out is not None:
        expect("out", out, (torch.float32,), (ring.shape[1],), ring.device)
    if backend == "torch":
        return reference.take_slot(ring, int(t), float(scale), out)
    from hera.kernels.deliver_spikes import triton_kernel

    return triton_kernel.take_slot(ring, int(t), float(scale), out)


def check_synapses(targets: torch.Tensor, delays: torch.Tensor, neurons: int,
                   length: int) -> None:
    """Check the values of a synapse table once (when it is built or loaded,
    not per step: this waits for the device).

    :param targets: int32 ``[S, K]``, each ``-1`` or in ``0..neurons-1``.
    :param delays: int32 ``[S, K]`` or ``[K]``, each in ``1..length-1``.
    :param neurons: ``N``, the ring's width.
    :param length: ``L``, the ring's slot count.
    :raises ValueError: naming the first kind of bad value found.
    """
    if targets.numel() and (int(targets.min()) < -1 or int(targets.max()) >= neurons):
        raise ValueError(f"targets must be -1 or in 0..{neurons - 1}")
    if delays.numel() and (int(delays.min()) < 1 or int(delays.max()) > length - 1):
        raise ValueError(f"delays must be in 1..{length - 1} for a ring of {length} slots")


__all__ = ["DEFAULT_SCALE", "check_synapses", "deliver_spikes", "take_slot"]
