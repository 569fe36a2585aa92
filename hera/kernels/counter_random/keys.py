"""Stream keys for counter-based random numbers, in plain Python (no torch):
the compiled CPU step of a family computes the same keys in C++."""

from __future__ import annotations

_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1

#: Streams per step: a family numbers the kinds of draw it makes in a step
#: (noise, input spikes, ...) ``0 .. MAX_STREAMS - 1``.
MAX_STREAMS = 256


def splitmix64(x: int) -> int:
    """One SplitMix64 output for state ``x`` (Steele, Lea and Flood's
    generator, as in Java's SplittableRandom), mod 2**64."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def stream_key(seed: int, step: int, stream: int) -> int:
    """The key of the random stream ``stream`` at step ``step`` of an agent
    seeded with ``seed``: ``splitmix64(seed ^ splitmix64(step * 256 + stream))``.

    :param seed: any int; its low 64 bits are used.
    :param step: the step, ``0 <= step < 2**56``.
    :param stream: which draw of the step, ``0 <= stream < MAX_STREAMS``.
    :raises ValueError: for a step or stream out of range.
    """
    if not 0 <= step < 1 << 56:
        raise ValueError(f"step must be in [0, 2**56), not {step}")
    if not 0 <= stream < MAX_STREAMS:
        raise ValueError(f"stream must be in [0, {MAX_STREAMS}), not {stream}")
    return splitmix64((seed & _M64) ^ splitmix64(step * MAX_STREAMS + stream))


def key_halves(key: int) -> tuple[int, int]:
    """``(lo, hi)``: the low and high 32 bits of a stream key, the two words
    the element hash takes."""
    return key & _M32, key >> 32
