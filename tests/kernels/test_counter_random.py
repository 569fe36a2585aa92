"""hera.kernels.counter_random: ``fill_uniform`` and ``fill_normal`` on their
Triton kernel against the PyTorch reference (odd sizes, keys near the
counter's wrap), the written definition of the counter-based generator and
its pinned streams (``stream_key``, ``splitmix64``), how independent its
draws look, and the arguments it refuses.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hera.kernels.counter_random import fill_normal, fill_uniform, stream_key
from hera.kernels.counter_random.keys import splitmix64
from tests.kernels.common import Case, _bits, _parity


def _random_case(n: int, seed: int, step: int, stream: int) -> Case:
    def build(g):
        return {"out": torch.full((n,), float("nan")), "key": stream_key(seed, step, stream)}
    return Case(f"N={n},step={step}", build)


RANDOM_CASES = [_random_case(1, 0, 0, 0), _random_case(1023, 3, 1, 1),
                _random_case(1025, (1 << 63) - 1, (1 << 56) - 1, 255),
                _random_case(3001, 12345, 77, 2)]


@pytest.mark.parametrize("normal", [False, True], ids=["uniform", "normal"])
@pytest.mark.parametrize("case", RANDOM_CASES, ids=[c.id for c in RANDOM_CASES])
def test_counter_random_matches_reference(triton_device, case, normal):
    fill = fill_normal if normal else fill_uniform

    def run(backend, t):
        return fill(t["out"], t["key"], backend=backend)
    _parity("counter_random", case, triton_device, run)


def test_counter_random_keys_near_the_counter_wrap(triton_device):
    """A key whose low half is near 2**32 makes the counter wrap mid-block."""
    key = (0xDEADBEEF << 32) | 0xFFFFFF00
    for fill in (fill_uniform, fill_normal):
        expected = fill(torch.empty(700), key)
        assert torch.equal(_bits(fill(torch.empty(700), key, backend="triton")), _bits(expected))


# -- counter_random: the definition, pinned ------------------------------------

def _mix32_by_hand(x: int) -> int:
    """The docstring's hash, one Python int at a time (independent of the
    reference's split multiplications)."""
    m = 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    return x ^ (x >> 16)


def _bits_by_hand(key: int, i: int) -> int:
    return _mix32_by_hand(_mix32_by_hand((i + key) & 0xFFFFFFFF) ^ (key >> 32))


@given(st.integers(0, 2**64 - 1), st.integers(1, 40))
def test_counter_random_follows_its_written_definition(key, n):
    uniform, normal = fill_uniform(torch.empty(n), key), fill_normal(torch.empty(n), key)
    scale = float(np.float32(1 / math.sqrt(21845)))
    for i in range(n):
        b = _bits_by_hand(key, i)
        assert uniform[i].item() == (b >> 8) * 2.0 ** -24
        total = sum((b >> shift) & 255 for shift in (0, 8, 16, 24)) - 510
        assert normal[i].item() == float(np.float32(np.float32(total) * np.float32(scale)))


def test_counter_random_streams_are_pinned():
    """Saved agents continue their streams after an upgrade only if the
    definition never changes: these values are the definition's, for good."""
    assert splitmix64(0) == 0xE220A8397B1DCDAF  # SplitMix64's first output from state 0
    assert stream_key(0, 0, 0) == splitmix64(splitmix64(0))
    assert stream_key(12345, 7, 0) == 0xBC98452A2CEB81FB
    assert fill_uniform(torch.empty(3), stream_key(12345, 7, 0)).tolist() == [
        0.4742111563682556, 0.04197877645492554, 0.12472403049468994]
    assert fill_normal(torch.empty(3), stream_key(12345, 7, 0)).tolist() == [
        0.4668453633785248, -0.36535724997520447, 1.143432855606079]


def test_counter_random_draws_look_independent():
    n = 200_000
    normal = fill_normal(torch.empty(n), stream_key(9, 0, 0)).double()
    assert abs(normal.mean()) < 0.01 and abs(normal.var() - 1) < 0.01
    assert normal.abs().max() <= 510 / math.sqrt(21845) + 1e-6
    uniform = fill_uniform(torch.empty(n), stream_key(9, 0, 1)).double()
    assert 0 <= uniform.min() and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.005
    # neighbours in a stream, the next step, and the other stream of a step
    others = {"neighbour": normal.roll(1), "next step": fill_normal(torch.empty(n),
                                                                    stream_key(9, 1, 0)).double(),
              "other stream": fill_normal(torch.empty(n), stream_key(9, 0, 1)).double(),
              "other seed": fill_normal(torch.empty(n), stream_key(10, 0, 0)).double()}
    for what, other in others.items():
        corr = torch.corrcoef(torch.stack([normal, other]))[0, 1].item()
        assert abs(corr) < 0.01, (what, corr)
    counts = torch.bincount((uniform * 16).long(), minlength=16).double()
    chi2 = (((counts - n / 16) ** 2) / (n / 16)).sum().item()
    assert chi2 < 40, chi2  # 15 degrees of freedom: p < 0.001 above 37.7


@pytest.mark.parametrize("call, message", [
    (lambda: fill_uniform(torch.empty(3), -1), r"key must be an int in \[0, 2\*\*64\)"),
    (lambda: fill_uniform(torch.empty(3), 1 << 64), r"key must be an int"),
    (lambda: fill_normal(torch.empty(3), 1.0), r"key must be an int"),
    (lambda: fill_normal(torch.empty(3, dtype=torch.float64), 1), "out must be float32"),
    (lambda: fill_normal(torch.empty(2, 2), 1), r"out must have shape \[\*\]"),
    (lambda: fill_uniform(torch.empty(2), 1, backend="cuda"), "unknown kernel backend"),
    (lambda: stream_key(1, -1, 0), r"step must be in \[0, 2\*\*56\)"),
    (lambda: stream_key(1, 1 << 56, 0), r"step must be in"),
    (lambda: stream_key(1, 0, 256), r"stream must be in \[0, 256\)"),
], ids=["negative-key", "wide-key", "float-key", "float64", "2d", "backend", "negative-step",
        "late-step", "stream"])
def test_counter_random_refuses_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
