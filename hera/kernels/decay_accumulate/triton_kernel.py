"""decay_accumulate as a Triton kernel: one program per block of neurons."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from hera.kernels._checks import expect_contiguous

# Elements per program: 1024 float32 are 8 per thread at 4 warps, enough
# loads in flight to saturate memory bandwidth on an elementwise op (the
# vector-add tutorial's choice); the interpreter also prefers few programs.
BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def _decay_accumulate_kernel(
    trace_ptr,          # float32 [N], updated in place
    events_ptr,         # float32 [N], added after the decay
    decay,              # float32 scalar, the factor applied to every element
    n,                  # int, N
    BLOCK: tl.constexpr,  # elements per program
):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    trace = tl.load(trace_ptr + offsets, mask=mask, other=0.0)
    events = tl.load(events_ptr + offsets, mask=mask, other=0.0)
    tl.store(trace_ptr + offsets, trace * decay + events, mask=mask)


def decay_accumulate(trace: torch.Tensor, decay: float, events: torch.Tensor) -> torch.Tensor:
    """Launch the kernel on checked arguments (see the package docstring)."""
    expect_contiguous(trace=trace, events=events)
    n = trace.numel()
    if n:
        # enable_fp_fusion=False: no fused multiply-add, so the float32
        # rounding is the reference's (multiply rounds, then add rounds).
        _decay_accumulate_kernel[(triton.cdiv(n, BLOCK),)](
            trace, events, float(decay), n, BLOCK=BLOCK, num_warps=NUM_WARPS,
            enable_fp_fusion=False)
    return trace
