"""depress_rows and potentiate_incoming in plain PyTorch: the definitions
the kernels must match."""

from __future__ import annotations

import math

import torch

from hera.kernels.deliver_spikes.reference import listed


def budget_units(budget: float, scale: float) -> int:
    """The synaptic-scaling cap in fixed-point units: ``floor(budget * scale
    + 0.5)`` computed in Python's float64 (once, on the host)."""
    return math.floor(budget * scale + 0.5)


def depress_rows(weights: torch.Tensor, targets: torch.Tensor, sources: torch.Tensor,
                 post_trace: torch.Tensor, a_minus: float, w_max: float) -> torch.Tensor:
    """Pre-synaptic event: for every row ``s`` in ``sources`` (distinct) and
    every slot ``k`` with ``targets[s, k] >= 0``::

        weights[s, k] = min(max(weights[s, k] - a_minus * post_trace[targets[s, k]], 0), w_max)

    in float32, the product rounded before the subtraction (no fused
    multiply-add). Negative entries of ``sources`` are skipped. In place;
    returns ``weights``."""
    rows = listed(sources)
    target = targets[rows]                                    # [M, K]
    live = target >= 0
    trace = post_trace[target.clamp(min=0).long()]
    old = weights[rows]
    new = (old - trace * a_minus).clamp(0.0, w_max)
    weights[rows] = torch.where(live, new, old)
    return weights


def potentiate_incoming(weights: torch.Tensor, pre_trace: torch.Tensor, neurons: torch.Tensor,
                        incoming_weight: torch.Tensor, incoming_source: torch.Tensor,
                        a_plus: float, w_max: float, budget: float,
                        scale: float, trace_offset: float = 0.0) -> torch.Tensor:
    """Post-synaptic event with synaptic scaling: for every neuron ``j`` in
    ``neurons`` (distinct) and every slot ``i`` with
    ``f = incoming_weight[j, i] >= 0`` (``f`` indexes the flat ``weights``)::

        x_i = pre_trace[incoming_source[j, i]] - trace_offset
        w_i = min(max(weights[f] + a_plus * x_i, 0), w_max)

    (float32, each operation rounded: no fused multiply-add). A source whose
    trace is under ``trace_offset`` is depressed (Diehl & Cook's
    ``x_tar``); ``trace_offset = 0`` leaves every trace as it is. Then, when
    ``budget > 0``, the neuron's incoming weights are measured in fixed point,
    ``total = sum_i floor(w_i * scale + 0.5)`` (each in float32, summed as
    int64: exact and order-free), and if ``total > cap``
    (:func:`budget_units`) every
    ``w_i`` becomes ``w_i * (float32(cap) / float32(total))`` (a correctly
    rounded float32 division, then one float32 multiply). Each weight must be
    an incoming synapse of at most one listed neuron; negative entries of
    ``neurons`` are skipped. In place on the flat view of ``weights``;
    returns ``weights``."""
    flat = weights.view(-1)
    rows = listed(neurons)
    index = incoming_weight[rows]                             # [M, J]
    live = index >= 0
    safe = index.clamp(min=0).long()
    old = flat[safe]
    trace = pre_trace[incoming_source[rows].clamp(min=0).long()] - trace_offset
    new = (old + trace * a_plus).clamp(0.0, w_max)
    new = torch.where(live, new, old)
    if budget > 0:
        units = torch.where(live, torch.floor(new * scale + 0.5), torch.zeros_like(new))
        total = units.to(torch.int64).sum(1, keepdim=True)
        cap = budget_units(budget, scale)
        factor = torch.tensor(float(cap), dtype=torch.float32) / total.to(torch.float32)
        new = torch.where(live & (total > cap), new * factor, new)
    flat[safe[live]] = new[live]
    return weights
