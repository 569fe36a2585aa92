"""deliver_spikes and take_slot as Triton kernels.

Delivery runs one program per (spiking source, block of its synapse slots)
and adds into the int32 ring with ``tl.atomic_add``: the adds land in any
order, and integer addition makes the sum the same in every order.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from hera.kernels._checks import expect_contiguous

NUM_WARPS = 4
# Ring elements per take_slot program: an elementwise copy-and-clear, sized
# like the vector-add tutorial (8 int32 per thread at 4 warps).
SLOT_BLOCK = 1024


def synapse_block(k: int) -> int:
    """Synapse slots per delivery program, for rows of ``k`` slots.

    A power of two (``tl.arange`` needs one) covering the row when it can,
    so one program does a whole row; at least 32 (one warp's lanes, fewer
    would idle them) and at most 256 (two per thread at 4 warps: longer rows
    become several programs, which keeps the grid wide when few sources
    spike).
    """
    return max(32, min(256, triton.next_power_of_2(max(k, 1))))


@triton.jit
def spiking_row_slots(sources_ptr, targets_ptr, k_slots, BLOCK_K: tl.constexpr):
    """This program's block of slots of its spiking source row (grid axis 0
    picks the row in ``sources``, axis 1 the block): ``(k, synapse, target,
    live)``, the slot numbers, their flat positions in the ``[S, K]``
    tables, their targets (-1 past the row) and which hold a synapse. A
    negative entry of ``sources`` is a hole in the list: nothing is live."""
    row = tl.load(sources_ptr + tl.program_id(0)).to(tl.int64)
    k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    in_row = k < tl.where(row >= 0, k_slots, 0)
    synapse = row * k_slots + k
    target = tl.load(targets_ptr + synapse, mask=in_row, other=-1)
    return k, synapse, target, in_row & (target >= 0)


@triton.jit(do_not_specialize=["t_slot"])
def _deliver_spikes_kernel(
    ring_ptr,         # int32 [L, N], contiguous: ring[slot, neuron] at slot * N + neuron
    sources_ptr,      # int32 or int64 [M]: the source rows that spiked, < 0 for none (grid axis 0)
    targets_ptr,      # int32 [S, K], contiguous: target neuron of each slot, -1 for none
    weights_ptr,      # float32 [S, K], contiguous
    delays_ptr,       # int32 [S, K] (DELAYS_PER_ROW) or [K], contiguous: steps until arrival
    t_slot,           # int, t % L (reduced on the host: t itself may outgrow int32)
    length,           # int, L: slots in the ring
    neurons,          # int, N: neurons per slot
    k_slots,          # int, K: synapse slots per source row
    scale,            # float32, weight units per ring unit (see quantize)
    DELAYS_PER_ROW: tl.constexpr,  # delays is [S, K] (True) or one delay per slot [K]
    BLOCK_K: tl.constexpr,         # synapse slots per program (synapse_block)
):
    k, synapse, target, live = spiking_row_slots(sources_ptr, targets_ptr, k_slots, BLOCK_K)
    weight = tl.load(weights_ptr + synapse, mask=live, other=0.0)
    if DELAYS_PER_ROW:
        delay = tl.load(delays_ptr + synapse, mask=live, other=0)
    else:
        delay = tl.load(delays_ptr + k, mask=live, other=0)
    amount = tl.floor(weight * scale + 0.5).to(tl.int32)
    slot = ((t_slot + delay) % length).to(tl.int64)
    # relaxed: nothing is read back, only the sum matters.
    tl.atomic_add(ring_ptr + slot * neurons + target, amount, mask=live, sem="relaxed")


@triton.jit(do_not_specialize=["slot"])
def _take_slot_kernel(
    ring_ptr,         # int32 [L, N], contiguous; row `slot` is read and zeroed
    out_ptr,          # float32 [N], written
    slot,             # int, t % L
    neurons,          # int, N
    inv_scale,        # float32, 1 / scale
    BLOCK: tl.constexpr,  # neurons per program
):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < neurons
    row_ptr = ring_ptr + slot.to(tl.int64) * neurons + offsets
    units = tl.load(row_ptr, mask=mask, other=0)
    tl.store(out_ptr + offsets, units.to(tl.float32) * inv_scale, mask=mask)
    tl.store(row_ptr, tl.zeros_like(units), mask=mask)


def deliver_spikes(ring: torch.Tensor, t: int, sources: torch.Tensor, targets: torch.Tensor,
                   weights: torch.Tensor, delays: torch.Tensor, scale: float) -> torch.Tensor:
    """Launch delivery on checked arguments (see the package docstring)."""
    expect_contiguous(ring=ring, sources=sources, targets=targets, weights=weights,
                      delays=delays)
    spiking, k_slots = sources.numel(), targets.shape[1]
    length, neurons = ring.shape
    if spiking and k_slots:
        block_k = synapse_block(k_slots)
        grid = (spiking, triton.cdiv(k_slots, block_k))
        # enable_fp_fusion=False: weight * scale + 0.5 rounds twice, as in
        # the reference (a fused multiply-add could round a half differently).
        _deliver_spikes_kernel[grid](
            ring, sources, targets, weights, delays, t % length, length, neurons, k_slots,
            float(scale), DELAYS_PER_ROW=delays.dim() == 2, BLOCK_K=block_k,
            num_warps=NUM_WARPS, enable_fp_fusion=False)
    return ring


def take_slot(ring: torch.Tensor, t: int, scale: float,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """Launch take_slot on checked arguments (see the package docstring)."""
    length, neurons = ring.shape
    if out is None:
        out = torch.empty(neurons, dtype=torch.float32, device=ring.device)
    expect_contiguous(ring=ring, out=out)
    if neurons:
        _take_slot_kernel[(triton.cdiv(neurons, SLOT_BLOCK),)](
            ring, out, t % length, neurons, 1.0 / scale, BLOCK=SLOT_BLOCK,
            num_warps=NUM_WARPS, enable_fp_fusion=False)
    return out
