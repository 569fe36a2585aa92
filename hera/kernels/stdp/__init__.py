"""Pair-based spike-timing-dependent plasticity, event-driven: the work is
proportional to the spikes, not to the synapses.

When a source spikes (a pre-synaptic event), :func:`depress_rows` weakens
each synapse of its row by ``a_minus`` times the postsynaptic trace of the
target (a target that fired just before). When a neuron spikes (a
post-synaptic event), :func:`potentiate_incoming` strengthens each synapse
onto it by ``a_plus`` times the presynaptic trace of the source, then, with a
``budget``, scales its incoming weights down when their sum is over the
budget (synaptic scaling: a neuron that learns more inputs gives each one
less). Weights stay in ``[0, w_max]``.

The synapses are the rows of :func:`hera.kernels.deliver_spikes.deliver_spikes`:
``targets [S, K]`` and ``weights [S, K]``. Potentiation needs them the other
way round, the synapses *onto* each neuron: ``incoming_weight [N, J]`` holds
the flat positions in ``weights`` (``s * K + k``) of neuron ``n``'s incoming
synapses, ``-1`` for an empty slot, and ``incoming_source [N, J]`` the source
of each (its index into ``pre_trace``). Potentiation only sees the flat
positions, so ``weights`` may also be one buffer that several tables are
views of (input synapses and recurrent ones, say).

The scaling total is measured in fixed point, like delivery: each weight is
rounded to units of ``1 / scale`` and the units are summed as int64, so the
total, and whether it is over the cap, is exact and the same in any order on
either backend; the factor is one correctly rounded float32 division.
"""

from __future__ import annotations

import math

import torch

from hera.kernels import check_backend
from hera.kernels._checks import expect
from hera.kernels.stdp import reference
from hera.kernels.stdp.reference import budget_units


def _expect_number(name: str, value: float, *, positive: bool = False) -> float:
    """``value`` as a float, refused unless finite and ``>= 0`` (``> 0``
    with ``positive``).

    :raises ValueError: naming the argument.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, not {value!r}")
    return number


def depress_rows(weights: torch.Tensor, targets: torch.Tensor, sources: torch.Tensor,
                 post_trace: torch.Tensor, a_minus: float, w_max: float, *,
                 backend: str = "torch") -> torch.Tensor:
    """Depress the synapses of the source rows that spiked, in place.

    For every row ``s`` in ``sources`` and every slot ``k`` with
    ``targets[s, k] >= 0``::

        weights[s, k] = min(max(weights[s, k] - a_minus * post_trace[targets[s, k]], 0), w_max)

    in float32, the product rounded before the subtraction (no fused
    multiply-add on either backend, so they agree bit for bit). Empty slots
    and unlisted rows are left as they are.

    :param weights: float32 ``[S, K]``: synaptic weights, the listed rows
        updated in place.
    :param targets: int32 ``[S, K]``: the target neuron of each slot (an
        index into ``post_trace``), ``-1`` for an empty slot.
    :param sources: int32 or int64 ``[M]``: the source rows that spiked, each
        in ``0..S-1`` and distinct (a row listed twice is depressed once on
        the torch backend, once or twice on the triton one), or negative for
        a hole in the list (skipped); ``M`` may be 0.
    :param post_trace: float32 ``[N]``: the postsynaptic trace of each neuron.
    :param a_minus: depression per unit of trace, a finite number ``>= 0``
        (used as float32).
    :param w_max: the largest weight, a finite number ``>= 0`` (used as float32).
    :param backend: ``"torch"`` (the reference, any device) or ``"triton"``
        (CUDA, or any device under ``TRITON_INTERPRET=1``).
    :returns: ``weights``.
    :raises ValueError: for a wrong dtype, shape or device, a bad number or
        an unknown backend. Index values are not checked (that would wait
        for the device).
    :raises RuntimeError: for ``"triton"`` where Triton cannot run.
    """
    expect("weights", weights, (torch.float32,), (None, None))
    check_backend(backend, weights.device)
    expect("targets", targets, (torch.int32,), tuple(weights.shape), weights.device)
    expect("sources", sources, (torch.int32, torch.int64), (None,), weights.device)
    expect("post_trace", post_trace, (torch.float32,), (None,), weights.device)
    args = (weights, targets, sources, post_trace, _expect_number("a_minus", a_minus),
            _expect_number("w_max", w_max))
    if backend == "torch":
        return reference.depress_rows(*args)
    from hera.kernels.stdp import triton_kernel

    return triton_kernel.depress_rows(*args)


def potentiate_incoming(weights: torch.Tensor, pre_trace: torch.Tensor, neurons: torch.Tensor,
                        incoming_weight: torch.Tensor, incoming_source: torch.Tensor,
                        a_plus: float, w_max: float, budget: float, scale: float,
                        trace_offset: float = 0.0, *, backend: str = "torch") -> torch.Tensor:
    """Potentiate the incoming synapses of the neurons that spiked, then
    scale them to the budget, in place.

    For every neuron ``n`` in ``neurons`` and every slot ``i`` with
    ``f = incoming_weight[n, i] >= 0``, in float32 (each product rounded
    before the add)::

        x_i = pre_trace[incoming_source[n, i]] - trace_offset
        w_i = min(max(weights.flat[f] + a_plus * x_i, 0), w_max)

    With ``budget > 0`` the neuron's total is then measured in fixed point,
    ``total = sum_i floor(w_i * scale + 0.5)`` (each term in float32, the sum
    in int64), against ``cap = budget_units(budget, scale)``; where
    ``total > cap`` every ``w_i`` becomes ``w_i * (float32(cap) /
    float32(total))``, the division correctly rounded, so a scaled neuron's
    total lands at most about one unit per synapse over the cap. ``budget = 0``
    turns scaling off. ``weights.flat[f] = w_i`` for every live slot; empty
    slots and the synapses of unlisted neurons are left as they are.

    :param weights: float32, contiguous, any shape (``incoming_weight``
        indexes its flat view): the ``[S, K]`` synaptic weights, or one
        buffer holding several tables; updated in place.
    :param pre_trace: float32 ``[P]``: the presynaptic trace of each source.
    :param neurons: int32 or int64 ``[M]``: the neurons that spiked, each in
        ``0..N-1`` and distinct, or negative for a hole in the list
        (skipped); ``M`` may be 0.
    :param incoming_weight: int32 or int64 ``[N, J]``: flat positions in
        ``weights`` of each neuron's incoming synapses, ``-1`` for an empty
        slot. A position may appear once per row, and in the rows of at most
        one listed neuron (the transpose of a synapse table has both).
    :param incoming_source: int32 or int64 ``[N, J]``: the source of each
        live slot, its index ``0..P-1`` into ``pre_trace`` (``-1`` or any
        index in an empty slot).
    :param a_plus: potentiation per unit of trace, a finite number ``>= 0``
        (used as float32).
    :param w_max: the largest weight, a finite number ``>= 0`` (used as float32).
    :param budget: the most total incoming weight a neuron keeps, a finite
        number ``>= 0``; 0 for no scaling. ``budget * scale`` must stay below
        ``2**63`` (the cap is an int64).
    :param scale: fixed-point units per unit of weight, a finite number
        ``> 0`` (float32 in the units, float64 in the cap); a power of two is
        best. ``w_max * scale * J`` must stay below ``2**63``.
    :param trace_offset: subtracted from every presynaptic trace (used as
        float32), a finite number ``>= 0``: a source whose trace is under
        it is depressed when its target fires (Diehl & Cook's ``x_tar``);
        0 (the default) for plain potentiation.
    :param backend: ``"torch"`` (the reference, any device) or ``"triton"``
        (CUDA, or any device under ``TRITON_INTERPRET=1``).
    :returns: ``weights``.
    :raises ValueError: for a wrong dtype, shape, device or layout, a bad
        number or an unknown backend. Index values are not checked (that
        would wait for the device).
    :raises RuntimeError: for ``"triton"`` where Triton cannot run.
    """
    expect("weights", weights, (torch.float32,))
    check_backend(backend, weights.device)
    if not weights.is_contiguous():
        raise ValueError("weights must be contiguous (incoming_weight indexes its flat view)")
    expect("pre_trace", pre_trace, (torch.float32,), (None,), weights.device)
    expect("neurons", neurons, (torch.int32, torch.int64), (None,), weights.device)
    expect("incoming_weight", incoming_weight, (torch.int32, torch.int64), (None, None),
           weights.device)
    expect("incoming_source", incoming_source, (torch.int32, torch.int64),
           tuple(incoming_weight.shape), weights.device)
    budget = _expect_number("budget", budget)
    scale = _expect_number("scale", scale, positive=True)
    if budget_units(budget, scale) >= 2**63:
        raise ValueError(f"budget * scale must stay below 2**63, not {budget * scale!r}")
    args = (weights, pre_trace, neurons, incoming_weight, incoming_source,
            _expect_number("a_plus", a_plus), _expect_number("w_max", w_max), budget, scale,
            _expect_number("trace_offset", trace_offset))
    if backend == "torch":
        return reference.potentiate_incoming(*args)
    from hera.kernels.stdp import triton_kernel

    return triton_kernel.potentiate_incoming(*args)


__all__ = ["budget_units", "depress_rows", "potentiate_incoming"]
