"""hera.kernels.lif_wta_step: the leaky integrate-and-fire step with
winner-take-all groups on its Triton kernel against the PyTorch reference
(group sizes from 1 to 1151, ties, resting neurons, adaptive thresholds with
and without a target rate and a floor), the arguments it refuses, and
properties of the reference: at most the first largest candidate of a group
fires, and ties go to the lowest index.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hera.kernels.lif_wta_step import lif_wta_step
from tests.kernels.common import LIF_CONSTANTS, Case, _gen, _nonzero_randn, _parity


def _neuron_case(id: str, group_size: int, groups: int, *, threshold=0.5, resting=0.3,
                 seed=0, tweak=None) -> Case:
    n = group_size * groups

    def build(g):
        tensors = {
            "membrane": _nonzero_randn(n, g),
            "refractory": torch.where(torch.rand(n, generator=g) < resting,
                                      torch.randint(1, 4, (n,), generator=g), 0).to(torch.int32),
            "threshold_adapt": torch.rand(n, generator=g) * 0.3 + 0.01,
            "current": _nonzero_randn(n, g),
            "noise": _nonzero_randn(n, g, 0.35),
            "out": torch.full((n,), math.nan),
            "threshold": threshold,
        }
        if tweak is not None:
            tweak(tensors, g)
        return tensors
    return Case(f"{id}(group={group_size}x{groups})", build, seed=seed,
                params={"group_size": group_size})


def _ties(t, g):
    # Margins from a few exact values (threshold 0.25): many equal maxima in
    # a group, and groups whose best margin is exactly 0 (which fires).
    n = t["membrane"].numel()
    t["membrane"].zero_()
    t["noise"].zero_()
    t["threshold_adapt"].zero_()
    t["refractory"].zero_()
    values = torch.tensor([0.0625, 0.125, 0.25, 0.25, 0.25, 0.25, 0.5, 0.75])
    t["current"] = values[torch.randint(0, len(values), (n,), generator=g)]


def _all_resting(t, g):
    t["refractory"].fill_(2)


LIF_CASES = [
    _neuron_case("no-competition", 1, 63),
    _neuron_case("random", 6, 9, seed=1),
    _neuron_case("odd-groups", 7, 37, seed=2),
    _neuron_case("wider-than-a-warp", 33, 5, seed=3),
    _neuron_case("power-of-two", 16, 3, seed=4),
    _neuron_case("one-big-group", 1151, 1, seed=5),
    _neuron_case("several-programs", 3, 683, seed=6),
    _neuron_case("no-candidates", 6, 9, threshold=100.0, seed=7),
    _neuron_case("mostly-candidates", 7, 9, threshold=-1.0, seed=8),
    _neuron_case("ties", 5, 13, threshold=0.25, tweak=_ties, seed=9),
    _neuron_case("resting-neurons-can-win(threshold<0)", 6, 7, threshold=-2.0,
                 tweak=_all_resting, seed=10),
]


@pytest.mark.parametrize("theta_minus, theta_floor", [(0.0, 0.0), (0.03, 0.0), (0.03, -0.0123)],
                         ids=["no-target", "target-rate", "target-rate-floor"])
@pytest.mark.parametrize("case", LIF_CASES, ids=[c.id for c in LIF_CASES])
def test_lif_wta_step_matches_reference(triton_device, case, theta_minus, theta_floor):
    """theta_minus 0.03 takes some thresholds below 0 before the clamp, and
    some below a floor under 0 where there is one."""
    def run(backend, t):
        return lif_wta_step(t["membrane"], t["refractory"], t["threshold_adapt"], t["current"],
                            t["noise"], threshold=t["threshold"],
                            group_size=case.params["group_size"], out=t["out"],
                            theta_minus=theta_minus, theta_floor=theta_floor, backend=backend,
                            **LIF_CONSTANTS)
    _parity("lif_wta_step", case, triton_device, run)


def test_lif_wta_step_allocates_spikes_when_no_out_is_given(triton_device):
    case = _neuron_case("random", 6, 9, seed=1)
    spikes = {}
    for backend in ("torch", "triton"):
        t = {k: v.to(triton_device) if isinstance(v, torch.Tensor) else v
             for k, v in case.build(_gen(1)).items()}
        spikes[backend] = lif_wta_step(t["membrane"], t["refractory"], t["threshold_adapt"],
                                       t["current"], t["noise"], threshold=t["threshold"],
                                       group_size=6, backend=backend, **LIF_CONSTANTS).cpu()
    assert all(s.dtype == torch.float32 and s.shape == (54,) for s in spikes.values())
    assert torch.equal(spikes["triton"], spikes["torch"])


# -- arguments ---------------------------------------------------------------

def test_lif_wta_step_refuses_bad_arguments():
    state = [torch.zeros(6), torch.zeros(6, dtype=torch.int32), torch.zeros(6),
             torch.zeros(6), torch.zeros(6)]
    constants = dict(LIF_CONSTANTS, threshold=1.0)
    with pytest.raises(ValueError, match="group_size must be a positive divisor of N=6"):
        lif_wta_step(*state, group_size=4, **constants)
    with pytest.raises(ValueError, match="group_size must be a positive divisor"):
        lif_wta_step(*state, group_size=0, **constants)
    with pytest.raises(ValueError, match="refractory must be int32"):
        lif_wta_step(state[0], state[0], *state[2:], group_size=3, **constants)
    with pytest.raises(ValueError, match=r"noise must have shape \[6\]"):
        lif_wta_step(*state[:4], torch.zeros(5), group_size=3, **constants)
    with pytest.raises(ValueError, match="refractory_steps must be an int32"):
        lif_wta_step(*state, group_size=3, **dict(constants, refractory_steps=-1))
    with pytest.raises(ValueError, match="theta_floor must be <= 0"):
        lif_wta_step(*state, group_size=3, theta_floor=0.5, **constants)


# -- properties of the reference (fast: torch only) -------------------------

@given(st.integers(1, 8), st.integers(1, 8), st.integers(0, 2**31),
       st.sampled_from([-1.0, 0.0, 0.5, 3.0]), st.sampled_from([0.0, 0.0625, 0.125]),
       st.sampled_from([0.0, -0.0625, -1.0]))
def test_at_most_the_first_largest_candidate_of_a_group_fires(group_size, groups, seed,
                                                              threshold, theta_minus,
                                                              theta_floor):
    n = group_size * groups
    g = _gen(seed)
    membrane = (torch.randint(-4, 5, (n,), generator=g) / 4).float()  # coarse: ties happen
    refractory = torch.randint(0, 3, (n,), generator=g, dtype=torch.int32)
    theta = (torch.randint(0, 3, (n,), generator=g) / 8).float()
    current = (torch.randint(-4, 5, (n,), generator=g) / 4).float()
    noise = torch.zeros(n)
    before = (membrane.clone(), refractory.clone(), theta.clone())
    spikes = lif_wta_step(membrane, refractory, theta, current, noise, decay=0.5,
                          threshold=threshold, refractory_steps=3, theta_plus=0.25,
                          theta_decay=0.5, group_size=group_size, theta_minus=theta_minus,
                          theta_floor=theta_floor)
    v = torch.where(before[1] > 0, 0.0, before[0] * 0.5 + current)
    margin = (v - (threshold + before[2])).view(groups, group_size).tolist()
    fired = spikes.view(groups, group_size).tolist()
    for group_margin, group_fired in zip(margin, fired):
        candidates = [m for m in group_margin if m >= 0]
        if not candidates:
            assert sum(group_fired) == 0
        else:
            assert group_fired == [float(i == group_margin.index(max(candidates)))
                                   for i in range(group_size)]
    assert torch.equal(refractory, torch.where(spikes > 0, 3, (before[1] - 1).clamp(min=0))
                       .to(torch.int32))
    assert torch.equal(membrane, torch.where(spikes > 0, 0.0, v))
    assert torch.equal(theta, (before[2] * 0.5 + 0.25 * spikes - theta_minus)
                       .clamp(min=theta_floor))
    assert (theta >= theta_floor).all()


def test_ties_go_to_the_lowest_index():
    current = torch.tensor([0.5, 0.75, 0.75, 0.1, 0.2, 0.2, 0.2, 0.2])
    spikes = lif_wta_step(torch.zeros(8), torch.zeros(8, dtype=torch.int32), torch.zeros(8),
                          current, torch.zeros(8), decay=0.9, threshold=0.25,
                          refractory_steps=1, theta_plus=0.0, theta_decay=1.0, group_size=4)
    assert spikes.tolist() == [0, 1, 0, 0, 0, 0, 0, 0], "second group: all below threshold"
