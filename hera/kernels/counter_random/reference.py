"""Counter-based random numbers in plain PyTorch: the definition the kernel
must match. 32-bit unsigned arithmetic is done exactly in int64."""

from __future__ import annotations

import math
import struct

import torch

from hera.kernels.counter_random.keys import key_halves

_M32 = 0xFFFFFFFF

#: float32(1 / sqrt(21845)): four uniform bytes sum to variance 21845.
NORMAL_SCALE = struct.unpack("f", struct.pack("f", 1.0 / math.sqrt(21845.0)))[0]
#: The mean of the sum of four uniform bytes.
NORMAL_OFFSET = 510


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for ``0 <= x, c < 2**32`` without leaving int64:
    the high half of ``c`` only reaches the low 16 bits it can affect."""
    low = x * (c & 0xFFFF)
    high = ((x * (c >> 16)) & 0xFFFF) << 16
    return (low + high) & _M32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """The integer hash of the package docstring on int64 values in ``[0, 2**32)``."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def bits(lo: int | torch.Tensor, hi: int | torch.Tensor, count: int,
         device: torch.device) -> torch.Tensor:
    """Elements ``0 .. count - 1`` of the stream whose key has halves ``lo``
    and ``hi``, as int64 in ``[0, 2**32)``."""
    counter = (torch.arange(count, dtype=torch.int64, device=device) + lo) & _M32
    return mix32(mix32(counter) ^ hi)


def fill(out: torch.Tensor, key: int, normal: bool) -> torch.Tensor:
    """Write the uniform (or normal) numbers of stream ``key`` into ``out``."""
    return fill_halves(out, *key_halves(key), normal)


def fill_halves(out: torch.Tensor, lo: int | torch.Tensor, hi: int | torch.Tensor,
                normal: bool) -> torch.Tensor:
    """:func:`fill` with the key's halves given apart; they may be int64
    scalar tensors, so that ``torch.compile`` keeps one graph for every key."""
    return _finish(out, bits(lo, hi, out.numel(), out.device), normal)


def fill_at(out: torch.Tensor, key: int, normal: bool, index: torch.Tensor) -> torch.Tensor:
    """Elements ``index`` (int64, each in ``[0, 2**32)``) of stream ``key``
    into ``out`` (same size as ``index``): the numbers :func:`fill` gives
    those elements, for a part of a population (one rank's neurons)."""
    lo, hi = key_halves(key)
    counter = (index + lo) & _M32
    return _finish(out, mix32(mix32(counter) ^ hi), normal)


def _finish(out: torch.Tensor, b: torch.Tensor, normal: bool) -> torch.Tensor:
    """Random bits ``b`` as uniform (or normal) float32 numbers in ``out``."""
    if normal:
        total = (b & 255) + ((b >> 8) & 255) + ((b >> 16) & 255) + (b >> 24) - NORMAL_OFFSET
        out.copy_(total.to(torch.float32) * NORMAL_SCALE)
    else:
        out.copy_((b >> 8).to(torch.float32) * 2.0 ** -24)
    return out
