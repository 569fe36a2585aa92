"""decay_accumulate in plain PyTorch: the definition the kernel must match."""

from __future__ import annotations

import torch


def decay_accumulate(trace: torch.Tensor, decay: float, events: torch.Tensor) -> torch.Tensor:
    """``trace <- trace * decay + events``, in place, in float32 (the multiply
    rounds, then the add rounds). Returns ``trace``."""
    trace.mul_(decay).add_(events)
    return trace
