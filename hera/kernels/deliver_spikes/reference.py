"""deliver_spikes and take_slot in plain PyTorch: the definitions the
kernels must match."""

from __future__ import annotations

import torch


def listed(rows: torch.Tensor) -> torch.Tensor:
    """The entries ``>= 0`` of a list of spiking rows, as int64: a list may
    have holes (negative entries), so that it can keep one size."""
    return rows[rows >= 0].long()


def quantize(weights: torch.Tensor, scale: float) -> torch.Tensor:
    """Weights in units of ``1 / scale``: ``floor(weights * scale + 0.5)`` as
    int32 (round half up), each step in float32."""
    return torch.floor(weights * scale + 0.5).to(torch.int32)


def deliver_spikes(ring: torch.Tensor, t: int, sources: torch.Tensor, targets: torch.Tensor,
                   weights: torch.Tensor, delays: torch.Tensor, scale: float) -> torch.Tensor:
    """Add, for every spiking source row ``s`` and every slot ``k`` with
    ``targets[s, k] >= 0``, ``quantize(weights[s, k])`` to
    ``ring[(t + delay) % L, targets[s, k]]``, in place; negative entries of
    ``sources`` are skipped. Returns ``ring``."""
    length = ring.shape[0]
    rows = listed(sources)
    target = targets[rows]                                   # [M, K]
    delay = delays[rows] if delays.dim() == 2 else delays.expand_as(target)
    slot = (t % length + delay.long()) % length
    amount = quantize(weights[rows], scale)
    # An empty slot adds 0 to column 0: integer adds make that a no-op, and
    # it spares a boolean selection (three gathers through nonzero).
    live = target >= 0
    ring.index_put_((slot, target.clamp(min=0).long()), torch.where(live, amount, 0),
                    accumulate=True)
    return ring


def take_slot(ring: torch.Tensor, t: int, scale: float,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """Slot ``t % L`` of ``ring`` as float32 current, ``ring * (1 / scale)``
    (int to float32 rounds to nearest, then one float32 multiply); the slot is
    zeroed. Writes into ``out`` when given; returns the current."""
    slot = ring[t % ring.shape[0]]
    current = slot.to(torch.float32) * (1.0 / scale)
    if out is None:
        out = current
    else:
        out.copy_(current)
    slot.zero_()
    return out
