"""What the kernel tests of several ops share: the kernel modules, each op's
tolerance (all exact), the parity check that runs an op on its PyTorch
reference and twice on its Triton kernel from the same start and compares
every output and the final state bit for bit (``Case`` and ``_parity``), and
the small helpers and constants more than one op's file uses (seeded
generators, inputs pushed away from zero, holes in a list of spiking rows,
the LIF constants, the transpose of a synapse table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


KERNEL_MODULES = ("hera.kernels.counter_random.triton_kernel",
                  "hera.kernels.decay_accumulate.triton_kernel",
                  "hera.kernels.deliver_spikes.triton_kernel",
                  "hera.kernels.lif_wta_step.triton_kernel",
                  "hera.kernels.stdp.triton_kernel")

# (dtype, atol, rtol, why) for each op's outputs and state. All are exact:
# the kernels do the reference's operations in the reference's order and are
# launched with enable_fp_fusion=False, and anything looser would let a
# spike (a comparison with a threshold) differ between backends.
TOLERANCES: dict[str, tuple[torch.dtype, float, float, str]] = {
    "counter_random": (torch.float32, 0.0, 0.0,
                       "32-bit integer hashing wraps the same everywhere; the integer is "
                       "exact in float32 and one multiply rounds it"),
    "decay_accumulate": (torch.float32, 0.0, 0.0,
                         "one float32 multiply, then one add, each rounded; no FMA"),
    "deliver_spikes": (torch.int32, 0, 0,
                       "integer adds commute: atomics in any order give the same sum"),
    "take_slot": (torch.float32, 0.0, 0.0,
                  "int32 -> float32 rounds to nearest, then one multiply by float32(1/scale)"),
    "lif_wta_step": (torch.float32, 0.0, 0.0,
                     "elementwise float32 in the reference's order, no FMA; the winner "
                     "is found by exact comparisons; refractory is int32"),
    "depress_rows": (torch.float32, 0.0, 0.0,
                     "one float32 multiply, then one subtract, each rounded; no FMA; the "
                     "clamp is exact"),
    "potentiate_incoming": (torch.float32, 0.0, 0.0,
                            "the reference's float32 operations in order, no FMA; the scaling "
                            "total is an int64 sum (the same in any order) and the factor a "
                            "correctly rounded division (div_rn)"),
}


def _assert_close(op: str, actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    _, atol, rtol, why = TOLERANCES[op]
    assert actual.dtype == expected.dtype, f"{what}: {actual.dtype} != {expected.dtype}"
    assert not actual.is_floating_point() or not actual.isnan().any(), f"{what}: NaN left"
    torch.testing.assert_close(actual.cpu(), expected.cpu(), atol=atol, rtol=rtol,
                               msg=lambda m: f"{op} {what} ({why}): {m}")


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """The raw bits of a float32 tensor (so -0.0 != 0.0 and NaN == NaN)."""
    return tensor.view(torch.int32) if tensor.dtype == torch.float32 else tensor


def _assert_same_bits(first: torch.Tensor, second: torch.Tensor, what: str) -> None:
    assert torch.equal(_bits(first), _bits(second)), f"{what} differs between two kernel runs"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _nonzero_randn(n: int, g: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """Normal values pushed away from zero, so a kernel that skips an input shows."""
    x = torch.randn(n, generator=g)
    return (x + torch.where(x >= 0, 0.1, -0.1)) * scale


@dataclass
class Case:
    """One parity case: ``build(generator)`` gives the named arguments of one
    call (state updated in place, inputs, and outputs pre-filled with NaN);
    ``params`` are the ones the call needs besides those."""

    id: str
    build: Callable[[torch.Generator], dict[str, Any]]
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)


def _parity(op: str, case: Case, device: str, run: Callable[..., Any]) -> None:
    """Run ``run(backend, **tensors)`` on the reference and twice on the
    kernel, each from the same start, and compare every tensor."""
    start = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
             for k, v in case.build(_gen(case.seed)).items()}

    def fresh() -> dict[str, Any]:
        return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in start.items()}

    expected, first, second = fresh(), fresh(), fresh()
    expected_result = run("torch", expected)
    first_result = run("triton", first)
    second_result = run("triton", second)
    if expected_result is not None:
        _assert_close(op, first_result, expected_result, "result")
        _assert_same_bits(first_result, second_result, "result")
    for name, value in start.items():
        if isinstance(value, torch.Tensor):
            _assert_close(op, first[name], expected[name], name)
            _assert_same_bits(first[name], second[name], name)


def _with_holes(name: str) -> Callable[[dict[str, Any], torch.Generator], None]:
    """Turn about half the entries of the list ``name`` into holes (-1, or
    the most negative value): a fixed-size list of the rows that spiked."""
    def tweak(t, g):
        rows = t[name]
        holes = torch.rand(rows.numel(), generator=g) < 0.5
        holes[0] = True
        rows[holes] = -1
        rows[-1:][holes[-1:]] = torch.iinfo(rows.dtype).min
    return tweak


LIF_CONSTANTS = {"decay": math.exp(-1 / 20), "refractory_steps": 2, "theta_plus": 0.05,
                 "theta_decay": math.exp(-1 / 1000)}


def _incoming(targets: torch.Tensor, neurons: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The transpose of a synapse table: each neuron's row lists the flat
    positions of the synapses onto it and, beside them, their source rows;
    both padded with -1."""
    slots = targets.shape[1]
    flat = targets.reshape(-1)
    positions = [(flat == n).nonzero().flatten() for n in range(neurons)]
    incoming_weight = torch.full((neurons, max([len(p) for p in positions] + [1])), -1,
                                 dtype=torch.int32)
    for n, p in enumerate(positions):
        incoming_weight[n, :len(p)] = p
    incoming_source = torch.where(incoming_weight >= 0, incoming_weight // slots, -1)
    return incoming_weight, incoming_source.to(torch.int32)
