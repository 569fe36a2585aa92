"""hera.kernels.decay_accumulate: the Triton kernel against the PyTorch
reference (odd sizes, decays from 0.5 to 1), and the property that the
reference is one float32 multiply and one float32 add per element, with no
fused multiply-add.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hera.kernels.decay_accumulate import decay_accumulate
from tests.kernels.common import Case, _gen, _nonzero_randn, _parity


def _trace_case(n: int, decay: float) -> Case:
    def build(g):
        return {"trace": _nonzero_randn(n, g), "events": (torch.rand(n, generator=g) < 0.3)
                .float() + _nonzero_randn(n, g, 0.01), "decay": decay}
    return Case(f"N={n},decay={decay:.4g}", build, seed=n)


TRACE_CASES = [_trace_case(1, 0.5), _trace_case(63, math.exp(-1 / 20)),
               _trace_case(1151, math.exp(-1 / 7)), _trace_case(2049, 1.0)]


@pytest.mark.parametrize("case", TRACE_CASES, ids=[c.id for c in TRACE_CASES])
def test_decay_accumulate_matches_reference(triton_device, case):
    def run(backend, t):
        return decay_accumulate(t["trace"], t["decay"], t["events"], backend=backend)
    _parity("decay_accumulate", case, triton_device, run)


# -- properties of the reference (fast: torch only) -------------------------

@given(st.integers(1, 40), st.floats(0.0, 1.0, width=32), st.integers(0, 2**31))
def test_decay_accumulate_is_one_multiply_and_one_add_in_float32(n, decay, seed):
    g = _gen(seed)
    trace, events = torch.randn(n, generator=g), torch.randn(n, generator=g)
    expected = [float(np.float32(x) * np.float32(decay) + np.float32(e))
                for x, e in zip(trace.tolist(), events.tolist())]
    assert decay_accumulate(trace, decay, events).tolist() == expected
