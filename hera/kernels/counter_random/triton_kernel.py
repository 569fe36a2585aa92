"""Counter-based random numbers as a Triton kernel: one program per block of
elements, 32-bit unsigned arithmetic that wraps as the reference's does."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from hera.kernels._checks import expect_contiguous
from hera.kernels.counter_random.keys import key_halves
from hera.kernels.counter_random.reference import NORMAL_OFFSET, NORMAL_SCALE

# Elements per program: an elementwise op with a dozen integer operations
# per element; 1024 at 4 warps, as the other elementwise kernels.
BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def _mix32(x):
    x = x ^ (x >> 16)
    x = x * tl.full((), 0x7FEB352D, tl.uint32)
    x = x ^ (x >> 15)
    x = x * tl.full((), 0x846CA68B, tl.uint32)
    return x ^ (x >> 16)


@triton.jit
def _fill_kernel(
    out_ptr,            # float32 [N], written
    lo,                 # int32: the key's low 32 bits, as a signed value
    hi,                 # int32: the key's high 32 bits, as a signed value
    n,                  # int, N
    offset,             # int32: subtracted from the byte sum (normal only)
    scale,              # float32: multiplies the byte sum (normal only)
    NORMAL: tl.constexpr,  # sum of four bytes, else 24-bit uniform
    BLOCK: tl.constexpr,
):
    index = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = index < n
    counter = index.to(tl.uint32) + lo.to(tl.uint32, bitcast=True)
    x = _mix32(_mix32(counter) ^ hi.to(tl.uint32, bitcast=True))
    if NORMAL:
        total = ((x & 255) + ((x >> 8) & 255) + ((x >> 16) & 255) + (x >> 24)).to(tl.int32)
        value = (total - offset).to(tl.float32) * scale
    else:
        value = (x >> 8).to(tl.float32) * 5.9604644775390625e-08  # 2**-24, exact
    tl.store(out_ptr + index, value, mask=mask)


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def fill(out: torch.Tensor, key: int, normal: bool) -> torch.Tensor:
    """Launch the kernel on checked arguments (see the package docstring)."""
    expect_contiguous(out=out)
    n = out.numel()
    lo, hi = key_halves(key)
    if n:
        _fill_kernel[(triton.cdiv(n, BLOCK),)](
            out, _signed32(lo), _signed32(hi), n, NORMAL_OFFSET,
            NORMAL_SCALE, NORMAL=normal, BLOCK=BLOCK, num_warps=NUM_WARPS,
            enable_fp_fusion=False)
    return out
