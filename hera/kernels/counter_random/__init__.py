"""Counter-based random numbers: draw ``i`` of a stream is a pure function
of ``(seed, step, stream, i)``, on the torch or triton backend.

Nothing carries over from one draw to the next, so a model's random numbers
need no generator state: the same agent draws the same numbers on any
device, after any save and load, and a GPU kernel can make its own draws
without a round trip to a generator. A stream is fixed by a 64-bit key
(:func:`stream_key`); element ``i`` of it is 32 random bits::

    bits(key, i) = mix32(mix32((i + lo) mod 2**32) ^ hi)
    lo, hi       = key mod 2**32, key // 2**32
    mix32(x)     = x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15;
                   x *= 0x846CA68B; x ^= x >> 16          (mod 2**32)

``mix32`` is an invertible integer hash with very low bias (Wellons'
"lowbias32"); :func:`stream_key` is two rounds of SplitMix64. From the bits:

``fill_uniform``
    ``(bits >> 8) * 2**-24``: float32 in ``[0, 1)``, exact, 2**24 levels.
``fill_normal``
    ``(b0 + b1 + b2 + b3 - 510) * float32(1 / sqrt(21845))`` over the four
    bytes of the bits: mean 0, variance 1, in ``[-3.451, 3.451]`` (an
    Irwin-Hall sum, close to a normal: excess kurtosis -0.3). The integer
    sum is exact in float32 and the multiply rounds once, so every backend
    gives the same bits.

Importing this package imports torch; :func:`stream_key` needs nothing.
"""

from __future__ import annotations

import torch

from hera.kernels import check_backend
from hera.kernels._checks import expect
from hera.kernels.counter_random.keys import MAX_STREAMS, stream_key

#: Elements a stream can give (the counter is 32 bits).
MAX_COUNT = 1 << 32


def fill_uniform(out: torch.Tensor, key: int, *, backend: str = "torch") -> torch.Tensor:
    """Fill ``out`` with elements ``0 .. len(out) - 1`` of stream ``key`` as
    uniform float32 numbers in ``[0, 1)`` (multiples of 2**-24).

    :param out: float32 ``[N]``, written in place (``N <= 2**32``).
    :param key: the stream, an int in ``[0, 2**64)`` (:func:`stream_key`).
    :param backend: ``"torch"`` (the reference, any device) or ``"triton"``
        (CUDA, or any device under ``TRITON_INTERPRET=1``).
    :returns: ``out``.
    :raises ValueError: for a wrong dtype or shape, a key out of range or an
        unknown backend.
    :raises RuntimeError: for ``"triton"`` where Triton cannot run.
    """
    return _fill(out, key, backend, normal=False)


def fill_normal(out: torch.Tensor, key: int, *, backend: str = "torch") -> torch.Tensor:
    """Fill ``out`` with elements ``0 .. len(out) - 1`` of stream ``key`` as
    float32 numbers of mean 0 and variance 1, bounded by ``+-3.451`` (the
    sum of four uniform bytes; see the package docstring).

    :param out: float32 ``[N]``, written in place (``N <= 2**32``).
    :param key: the stream, an int in ``[0, 2**64)`` (:func:`stream_key`).
    :param backend: ``"torch"`` or ``"triton"``, as for :func:`fill_uniform`.
    :returns: ``out``.
    :raises ValueError: for a wrong dtype or shape, a key out of range or an
        unknown backend.
    :raises RuntimeError: for ``"triton"`` where Triton cannot run.
    """
    return _fill(out, key, backend, normal=True)


def _fill(out: torch.Tensor, key: int, backend: str, normal: bool) -> torch.Tensor:
    expect("out", out, (torch.float32,), (None,))
    check_backend(backend, out.device)
    if type(key) is not int or not 0 <= key < 1 << 64:
        raise ValueError(f"key must be an int in [0, 2**64), not {key!r}")
    if out.numel() > MAX_COUNT:
        raise ValueError(f"a stream gives at most 2**32 elements, not {out.numel()}")
    if backend == "torch":
        from hera.kernels.counter_random import reference

        return reference.fill(out, key, normal)
    from hera.kernels.counter_random import triton_kernel

    return triton_kernel.fill(out, key, normal)


__all__ = ["MAX_COUNT", "MAX_STREAMS", "fill_normal", "fill_uniform", "stream_key"]
