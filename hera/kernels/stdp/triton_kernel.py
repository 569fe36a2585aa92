"""depress_rows and potentiate_incoming as Triton kernels.

Depression runs one program per (spiking source row, block of its synapse
slots), like delivery: each weight is updated on its own. Potentiation runs
one program per spiking neuron, looping over its incoming slots in blocks:
with a budget, no weight can be stored before the neuron's whole fixed-point
total is known, so a first pass sums the total and a second pass computes
each potentiated weight again and stores it, scaled where the total is over
the cap. Computing again, rather than storing and reading back, keeps every
load reading a weight that no program has written yet.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from hera.kernels._checks import expect_contiguous
from hera.kernels.deliver_spikes.triton_kernel import spiking_row_slots, synapse_block
from hera.kernels.stdp.reference import budget_units

NUM_WARPS = 4


def incoming_block(j: int) -> int:
    """Incoming slots per loop iteration of a potentiation program, for rows
    of ``j`` slots.

    A power of two covering the row when it can, at least 32 (one warp's
    lanes) and at most 1024 (8 per thread at 4 warps, like the elementwise
    ops): a program owns a whole row, so the wider block keeps more of its
    scattered weight loads in flight.
    """
    return max(32, min(1024, triton.next_power_of_2(max(j, 1))))


@triton.jit
def _clamp(x, w_max):
    """``min(max(x, 0), w_max)``, keeping a NaN as torch's clamp does (a
    GPU's plain max and min would drop it)."""
    return tl.minimum(tl.maximum(x, 0.0, propagate_nan=tl.PropagateNan.ALL), w_max,
                      propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _depress_rows_kernel(
    weights_ptr,      # float32 [S, K], contiguous; the listed rows are updated in place
    targets_ptr,      # int32 [S, K], contiguous: target neuron of each slot, -1 for none
    sources_ptr,      # int32 or int64 [M]: the source rows that spiked, < 0 for none (grid axis 0)
    post_trace_ptr,   # float32 [N]: the postsynaptic trace of each target neuron
    k_slots,          # int, K: synapse slots per source row
    a_minus,          # float32, depression per unit of postsynaptic trace
    w_max,            # float32, the largest weight
    BLOCK_K: tl.constexpr,  # synapse slots per program (synapse_block)
):
    _, synapse, target, live = spiking_row_slots(sources_ptr, targets_ptr, k_slots, BLOCK_K)
    weight = tl.load(weights_ptr + synapse, mask=live, other=0.0)
    trace = tl.load(post_trace_ptr + target, mask=live, other=0.0)
    tl.store(weights_ptr + synapse, _clamp(weight - trace * a_minus, w_max), mask=live)


@triton.jit
def _potentiated(weights_ptr, pre_trace_ptr, index_row_ptr, source_row_ptr, j, j_slots,
                 a_plus, w_max, trace_offset):
    """Slots ``j`` of one neuron's incoming row: the flat weight index, whether
    the slot holds a synapse, and its weight after potentiation (unscaled)."""
    in_row = j < j_slots
    index = tl.load(index_row_ptr + j, mask=in_row, other=-1)
    live = in_row & (index >= 0)
    # The reference reads a source of -1 as 0 (its clamp): the same here.
    source = tl.maximum(tl.load(source_row_ptr + j, mask=live, other=0), 0)
    old = tl.load(weights_ptr + index, mask=live, other=0.0)
    trace = tl.load(pre_trace_ptr + source, mask=live, other=0.0) - trace_offset
    return index, live, _clamp(old + trace * a_plus, w_max)


# cap is not specialized: Triton would turn a cap of 1 into a constant (which
# has no .to()) and compile apart the caps divisible by 16.
@triton.jit(do_not_specialize=["cap"])
def _potentiate_incoming_kernel(
    weights_ptr,          # float32, the flat view the positions index; updated in place
    pre_trace_ptr,        # float32 [P]: the presynaptic trace of each source
    neurons_ptr,          # int32 or int64 [M]: the neurons that spiked, < 0 for none (grid axis 0)
    incoming_weight_ptr,  # int32 or int64 [N, J], contiguous: flat weight position, -1 for none
    incoming_source_ptr,  # int32 or int64 [N, J], contiguous: source of each slot (in pre_trace)
    j_slots,              # int, J: incoming slots per neuron
    a_plus,               # float32, potentiation per unit of presynaptic trace
    trace_offset,         # float32, subtracted from every presynaptic trace
    w_max,                # float32, the largest weight
    scale,                # float32, fixed-point units per unit of weight
    cap,                  # int64 (any int width; widened here), the budget in units
    cap_float,            # float32, float32(cap), rounded on the host as the reference does
    SCALING: tl.constexpr,  # budget > 0: measure the total and scale
    BLOCK_J: tl.constexpr,  # incoming slots per loop iteration (incoming_block)
):
    neuron = tl.load(neurons_ptr + tl.program_id(0)).to(tl.int64)
    index_row_ptr = incoming_weight_ptr + neuron * j_slots
    source_row_ptr = incoming_source_ptr + neuron * j_slots
    # A negative entry is a hole in the list: its program loops over nothing.
    j_slots = tl.where(neuron >= 0, j_slots, 0)
    if SCALING:
        # int64 lane sums, added up at the end: integer addition makes the
        # total the same in any order, so it is the reference's exactly.
        units = tl.zeros((BLOCK_J,), dtype=tl.int64)
        for start in range(0, j_slots, BLOCK_J):
            j = start + tl.arange(0, BLOCK_J)
            index, live, new = _potentiated(weights_ptr, pre_trace_ptr, index_row_ptr,
                                            source_row_ptr, j, j_slots, a_plus, w_max,
                                            trace_offset)
            units += tl.where(live, tl.floor(new * scale + 0.5).to(tl.int64), 0)
        total = tl.sum(units, axis=0)
        over = total > cap.to(tl.int64)
        # div_rn: correctly rounded, as torch's float32 division (a GPU's
        # plain `/` may be approximate). The divisor is only used when over,
        # where total > cap >= 0; max(.., 1) keeps the unused lanes finite.
        factor = tl.math.div_rn(cap_float, tl.maximum(total, 1).to(tl.float32))
    for start in range(0, j_slots, BLOCK_J):
        j = start + tl.arange(0, BLOCK_J)
        index, live, new = _potentiated(weights_ptr, pre_trace_ptr, index_row_ptr,
                                        source_row_ptr, j, j_slots, a_plus, w_max,
                                        trace_offset)
        if SCALING:
            new = tl.where(over, new * factor, new)
        tl.store(weights_ptr + index, new, mask=live)


def depress_rows(weights: torch.Tensor, targets: torch.Tensor, sources: torch.Tensor,
                 post_trace: torch.Tensor, a_minus: float, w_max: float) -> torch.Tensor:
    """Launch depression on checked arguments (see the package docstring)."""
    expect_contiguous(weights=weights, targets=targets, sources=sources, post_trace=post_trace)
    spiking, k_slots = sources.numel(), targets.shape[1]
    if spiking and k_slots:
        block_k = synapse_block(k_slots)
        # enable_fp_fusion=False: the product rounds before the subtraction,
        # as in the reference.
        _depress_rows_kernel[(spiking, triton.cdiv(k_slots, block_k))](
            weights, targets, sources, post_trace, k_slots, float(a_minus), float(w_max),
            BLOCK_K=block_k, num_warps=NUM_WARPS, enable_fp_fusion=False)
    return weights


def potentiate_incoming(weights: torch.Tensor, pre_trace: torch.Tensor, neurons: torch.Tensor,
                        incoming_weight: torch.Tensor, incoming_source: torch.Tensor,
                        a_plus: float, w_max: float, budget: float,
                        scale: float, trace_offset: float = 0.0) -> torch.Tensor:
    """Launch potentiation on checked arguments (see the package docstring)."""
    expect_contiguous(weights=weights, pre_trace=pre_trace, neurons=neurons,
                      incoming_weight=incoming_weight, incoming_source=incoming_source)
    spiking, j_slots = neurons.numel(), incoming_weight.shape[1]
    if spiking and j_slots:
        scaling = budget > 0
        cap = budget_units(budget, scale) if scaling else 0
        # float32(cap) exactly as the reference rounds it (a float32 tensor
        # made from float(cap)), passed as a float32 the launch keeps exact.
        cap_float = float(torch.tensor(float(cap), dtype=torch.float32))
        # enable_fp_fusion=False: products round before the add, and
        # w * scale rounds before + 0.5, as in the reference.
        _potentiate_incoming_kernel[(spiking,)](
            weights, pre_trace, neurons, incoming_weight, incoming_source, j_slots,
            float(a_plus), float(trace_offset), float(w_max), float(scale), cap, cap_float,
            SCALING=scaling,
            BLOCK_J=incoming_block(j_slots), num_warps=NUM_WARPS, enable_fp_fusion=False)
    return weights
