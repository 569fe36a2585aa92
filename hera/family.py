"""Everything a family author imports from hera, in one module.

::

    from hera.family import FamilyInfo, Built, LoadedAgent, Snapshot, hookimpl

- ``hookimpl``: the marker of a hook implementation. A family implements
  each hook for its own agents only: hera calls a family's hooks for that
  family's agents and for nobody else's (see docs/writing-a-family.md).
- The data types that cross the hook boundary: :class:`FamilyInfo`,
  :class:`LayoutInfo`, :class:`Built`, :class:`DynamicState`,
  :class:`Snapshot`, :class:`LoadedAgent`, :class:`ResourceReport`,
  :class:`Shard` (a process's part of an agent on several ranks), and
  :class:`LiveAgent`, the protocol of an agent that answers the running
  hooks with its own methods.
- The errors hera prints as one line: :class:`HeraError`,
  :class:`DefinitionError`, :class:`InstanceFileError`.
- The reusable kernels (``hera.kernels``), each a plain-PyTorch reference
  and a Triton kernel with the same bits: :func:`stream_key`,
  :func:`fill_uniform`, :func:`fill_normal`, :func:`decay_accumulate`,
  :func:`deliver_spikes`, :func:`take_slot`, :func:`lif_wta_step`,
  :func:`depress_rows`, :func:`potentiate_incoming`, and the backend
  helpers :func:`default_backend`, :func:`check_backend`,
  :func:`triton_usable`, :func:`missing_triton`.

Importing it imports neither torch nor triton (``hera families`` loads
every family's module and must start fast): the kernels' names are looked up
the first time they are used, and that imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from hera.errors import DefinitionError, HeraError, InstanceFileError
from hera.hooks import hookimpl
from hera.hooks.types import (
    AgentHandle,
    Built,
    DynamicState,
    FamilyInfo,
    LayoutInfo,
    LiveAgent,
    LoadedAgent,
    ResourceReport,
    Shard,
    Snapshot,
)
from hera.kernels import check_backend, default_backend, missing_triton, triton_usable

#: The kernels' public names, by the module that defines them (imported on
#: first use: they import torch).
_KERNELS = {
    "stream_key": "hera.kernels.counter_random",
    "fill_uniform": "hera.kernels.counter_random",
    "fill_normal": "hera.kernels.counter_random",
    "decay_accumulate": "hera.kernels.decay_accumulate",
    "deliver_spikes": "hera.kernels.deliver_spikes",
    "take_slot": "hera.kernels.deliver_spikes",
    "lif_wta_step": "hera.kernels.lif_wta_step",
    "depress_rows": "hera.kernels.stdp",
    "potentiate_incoming": "hera.kernels.stdp",
}

__all__ = [
    "hookimpl",
    "AgentHandle",
    "Built",
    "DynamicState",
    "FamilyInfo",
    "LayoutInfo",
    "LiveAgent",
    "LoadedAgent",
    "ResourceReport",
    "Shard",
    "Snapshot",
    "HeraError",
    "DefinitionError",
    "InstanceFileError",
    "check_backend",
    "default_backend",
    "missing_triton",
    "triton_usable",
    *_KERNELS,
]


def __getattr__(name: str) -> Any:
    """The kernels, imported the first time one is asked for."""
    if name in _KERNELS:
        value = getattr(importlib.import_module(_KERNELS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hera.family' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
