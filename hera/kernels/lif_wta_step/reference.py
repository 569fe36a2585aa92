"""lif_wta_step in plain PyTorch: the definition the kernel must match."""

from __future__ import annotations

import torch


def lif_wta_step(membrane: torch.Tensor, refractory: torch.Tensor,
                 threshold_adapt: torch.Tensor, current: torch.Tensor, noise: torch.Tensor,
                 decay: float, threshold: float, refractory_steps: int, theta_plus: float,
                 theta_decay: float, group_size: int,
                 out: torch.Tensor | None = None, theta_minus: float = 0.0,
                 theta_floor: float = 0.0) -> torch.Tensor:
    """One step, in place on ``membrane``, ``refractory`` and
    ``threshold_adapt``; returns the spikes (float32 0/1)."""
    v = membrane * decay + current + noise
    v = torch.where(refractory > 0, torch.zeros_like(v), v)
    margin = v - (threshold + threshold_adapt)

    # Winner-take-all: in each group, the first neuron whose margin is the
    # largest margin >= 0 fires; a group without such a neuron stays silent.
    groups = margin.view(-1, group_size)
    candidate = groups >= 0
    best = torch.where(candidate, groups, torch.full_like(groups, -torch.inf))
    best = best.amax(dim=1, keepdim=True)
    position = torch.arange(group_size, device=margin.device).expand_as(groups)
    winner = torch.where(candidate & (groups == best), position,
                         torch.full_like(position, group_size)).amin(dim=1, keepdim=True)
    fired = (position == winner).reshape(-1)
    spikes = fired.to(torch.float32)

    membrane.copy_(torch.where(fired, torch.zeros_like(v), v))
    refractory.copy_(torch.where(fired, torch.full_like(refractory, refractory_steps),
                                 (refractory - 1).clamp(min=0)))
    threshold_adapt.copy_((threshold_adapt * theta_decay + theta_plus * spikes - theta_minus)
                          .clamp(min=theta_floor))
    if out is None:
        return spikes
    return out.copy_(spikes)
