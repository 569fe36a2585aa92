"""One step of leaky integrate-and-fire neurons with adaptive thresholds and
winner-take-all inside consecutive groups (the cells of one layer of one
column, say), on the torch or triton backend."""

from __future__ import annotations

import torch

from hera.kernels import check_backend
from hera.kernels._checks import expect
from hera.kernels.lif_wta_step import reference


def lif_wta_step(membrane: torch.Tensor, refractory: torch.Tensor,
                 threshold_adapt: torch.Tensor, current: torch.Tensor, noise: torch.Tensor,
                 decay: float, threshold: float, refractory_steps: int, theta_plus: float,
                 theta_decay: float, group_size: int, *, out: torch.Tensor | None = None,
                 theta_minus: float = 0.0, theta_floor: float = 0.0,
                 backend: str = "torch") -> torch.Tensor:
    """Advance ``N`` neurons one step, in place, and return who fired.

    In float32, each operation rounded on its own (no fused multiply-add)::

        v = membrane * decay + current + noise
        v = 0                      where refractory > 0
        margin = v - (threshold + threshold_adapt)

    In each group of ``group_size`` consecutive neurons, at most one fires:
    the one with the largest ``margin >= 0``, the lowest index among equal
    margins; a group without a margin ``>= 0`` stays silent. Then::

        fired:      membrane = 0,  refractory = refractory_steps
        not fired:  membrane = v,  refractory = max(refractory - 1, 0)
        threshold_adapt = max(threshold_adapt * theta_decay + theta_plus * spike
                              - theta_minus, theta_floor)

    A resting neuron's ``v`` is 0, so it can only win where
    ``threshold + threshold_adapt <= 0``.

    :param membrane: float32 ``[N]``, membrane potentials; updated in place.
    :param refractory: int32 ``[N]``, steps of rest left; updated in place.
    :param threshold_adapt: float32 ``[N]``, the adaptive part of each
        threshold (homeostasis); updated in place.
    :param current: float32 ``[N]``, synaptic input this step (e.g. from
        :func:`hera.kernels.deliver_spikes.take_slot`).
    :param noise: float32 ``[N]``, noise current this step (zeros for none).
    :param decay: membrane decay per step, a Python number used as float32
        (``exp(-1 / tau_membrane)``).
    :param threshold: the fixed part of the threshold, used as float32.
    :param refractory_steps: steps of rest after a spike, an int ``>= 0``.
    :param theta_plus: threshold rise per spike, used as float32.
    :param theta_decay: decay per step of the threshold rise, used as float32.
    :param theta_minus: fall per step of the threshold rise, used as float32
        (``theta_plus`` times a target rate holds each neuron's rate near
        it; 0 leaves the rule as it was, bit for bit).
    :param theta_floor: the lowest the threshold rise may fall, used as
        float32, ``<= 0``: below 0 a neuron that fires less than its target
        rate lowers its threshold below ``threshold``.
    :param group_size: neurons per winner-take-all group, ``>= 1``; ``N``
        must be a multiple of it (1 makes every neuron its own group: no
        competition).
    :param out: optional float32 ``[N]`` to write the spikes into.
    :param backend: ``"torch"`` (the reference, any device) or ``"triton"``
        (CUDA, or any device under ``TRITON_INTERPRET=1``).
    :returns: float32 ``[N]``, 1.0 where a neuron fired, else 0.0 (``out``
        when given).
    :raises ValueError: for a wrong dtype, shape or device, a bad
        ``group_size`` or ``refractory_steps``, or an unknown backend.
    :raises RuntimeError: for ``"triton"`` where Triton cannot run.
    """
    expect("membrane", membrane, (torch.float32,), (None,))
    check_backend(backend, membrane.device)
    shape, device = tuple(membrane.shape), membrane.device
    expect("refractory", refractory, (torch.int32,), shape, device)
    expect("threshold_adapt", threshold_adapt, (torch.float32,), shape, device)
    expect("current", current, (torch.float32,), shape, device)
    expect("noise", noise, (torch.float32,), shape, device)
    if out is not None:
        expect("out", out, (torch.float32,), shape, device)
    if int(group_size) != group_size or group_size < 1 or shape[0] % group_size:
        raise ValueError(f"group_size must be a positive divisor of N={shape[0]}, "
                         f"not {group_size!r}")
    if int(refractory_steps) != refractory_steps or not 0 <= refractory_steps < 2**31:
        raise ValueError(f"refractory_steps must be an int32 >= 0, not {refractory_steps!r}")
    if not float(theta_floor) <= 0:
        raise ValueError(f"theta_floor must be <= 0, not {theta_floor!r}")
    args = (membrane, refractory, threshold_adapt, current, noise, float(decay),
            float(threshold), int(refractory_steps), float(theta_plus), float(theta_decay),
            int(group_size), out, float(theta_minus), float(theta_floor))
    if backend == "torch":
        return reference.lif_wta_step(*args)
    from hera.kernels.lif_wta_step import triton_kernel

    return triton_kernel.lif_wta_step(*args)


__all__ = ["lif_wta_step"]
