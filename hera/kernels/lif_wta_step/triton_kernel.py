"""lif_wta_step as a Triton kernel: one program per block of groups, the
block a 2-D tile ``[groups, cells]`` so the winner-take-all is a reduction
over the tile's second axis."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from hera.kernels._checks import expect_contiguous

NUM_WARPS = 4
# Neurons per program (the tile's size, before rounding each group up to a
# power of two): 1024 is 8 per thread at 4 warps, like the elementwise ops;
# the step reads five and writes four float32/int32 arrays, so it is
# memory-bound and wants many elements in flight.
TILE = 1024


def tile_shape(group_size: int, groups: int) -> tuple[int, int]:
    """``(BLOCK_GROUPS, BLOCK_CELLS)`` for groups of ``group_size`` neurons.

    ``BLOCK_CELLS`` is the group size rounded up to a power of two (what
    ``tl.arange`` needs), at least 2 (a length-1 axis has been fragile in
    older Triton versions; the masked lane costs nothing). ``BLOCK_GROUPS``
    fills the tile up to ``TILE`` neurons but no further than the groups
    there are, and is at least 1 (a huge group is one program).
    """
    block_cells = max(2, triton.next_power_of_2(group_size))
    block_groups = max(1, min(TILE // block_cells, triton.next_power_of_2(groups)))
    return block_groups, block_cells


@triton.jit
def _lif_wta_step_kernel(
    membrane_ptr,         # float32 [N], updated in place
    refractory_ptr,       # int32 [N], steps left of rest; updated in place
    threshold_adapt_ptr,  # float32 [N], adaptive part of the threshold; updated in place
    current_ptr,          # float32 [N], input this step
    noise_ptr,            # float32 [N], noise this step
    spikes_ptr,           # float32 [N], written: 1.0 where a neuron fired, else 0.0
    decay,                # float32, membrane decay per step
    threshold,            # float32, fixed part of the threshold
    refractory_steps,     # int, rest after a spike
    theta_plus,           # float32, threshold rise per spike
    theta_decay,          # float32, decay of the threshold rise per step
    theta_minus,          # float32, threshold fall per step (toward a target rate)
    theta_floor,          # float32, the lowest the threshold rise may go (<= 0)
    group_size,           # int, neurons per winner-take-all group
    groups,               # int, N // group_size
    BLOCK_GROUPS: tl.constexpr,  # groups per program (tile rows)
    BLOCK_CELLS: tl.constexpr,   # group_size rounded up to a power of two (tile columns)
):
    group = tl.program_id(0) * BLOCK_GROUPS + tl.arange(0, BLOCK_GROUPS)
    cell = tl.arange(0, BLOCK_CELLS)
    mask = (group < groups)[:, None] & (cell < group_size)[None, :]
    offsets = group.to(tl.int64)[:, None] * group_size + cell[None, :]

    membrane = tl.load(membrane_ptr + offsets, mask=mask, other=0.0)
    refractory = tl.load(refractory_ptr + offsets, mask=mask, other=0)
    theta = tl.load(threshold_adapt_ptr + offsets, mask=mask, other=0.0)
    current = tl.load(current_ptr + offsets, mask=mask, other=0.0)
    noise = tl.load(noise_ptr + offsets, mask=mask, other=0.0)

    v = membrane * decay + current + noise
    v = tl.where(refractory > 0, 0.0, v)
    margin = v - (threshold + theta)

    # The first neuron with the group's largest margin >= 0 fires. Padding
    # lanes are never candidates; a group without candidates has best -inf
    # and its winner index BLOCK_CELLS, which matches no lane.
    candidate = mask & (margin >= 0)
    ranked = tl.where(candidate, margin, float("-inf"))
    best = tl.max(ranked, axis=1)
    at_best = candidate & (ranked == best[:, None])
    winner = tl.min(tl.where(at_best, cell[None, :], BLOCK_CELLS), axis=1)
    fired = cell[None, :] == winner[:, None]
    spikes = fired.to(tl.float32)

    tl.store(membrane_ptr + offsets, tl.where(fired, 0.0, v), mask=mask)
    tl.store(refractory_ptr + offsets,
             tl.where(fired, refractory_steps, tl.maximum(refractory - 1, 0)), mask=mask)
    theta = theta * theta_decay + theta_plus * spikes - theta_minus
    tl.store(threshold_adapt_ptr + offsets, tl.maximum(theta, theta_floor), mask=mask)
    tl.store(spikes_ptr + offsets, spikes, mask=mask)


def lif_wta_step(membrane: torch.Tensor, refractory: torch.Tensor,
                 threshold_adapt: torch.Tensor, current: torch.Tensor, noise: torch.Tensor,
                 decay: float, threshold: float, refractory_steps: int, theta_plus: float,
                 theta_decay: float, group_size: int,
                 out: torch.Tensor | None = None, theta_minus: float = 0.0,
                 theta_floor: float = 0.0) -> torch.Tensor:
    """Launch the step on checked arguments (see the package docstring)."""
    if out is None:
        out = torch.empty_like(membrane)
    expect_contiguous(membrane=membrane, refractory=refractory,
                      threshold_adapt=threshold_adapt, current=current, noise=noise, out=out)
    groups = membrane.numel() // group_size
    if groups:
        block_groups, block_cells = tile_shape(group_size, groups)
        # enable_fp_fusion=False: every multiply and add rounds on its own,
        # as in the reference, so spikes agree bit for bit near threshold.
        _lif_wta_step_kernel[(triton.cdiv(groups, block_groups),)](
            membrane, refractory, threshold_adapt, current, noise, out,
            decay, threshold, refractory_steps, theta_plus, theta_decay, theta_minus, theta_floor,
            group_size, groups,
            BLOCK_GROUPS=block_groups, BLOCK_CELLS=block_cells, num_warps=NUM_WARPS,
            enable_fp_fusion=False)
    return out
