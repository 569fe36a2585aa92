"""Plain data types that cross the hook boundary.

They import nothing heavy: a family's plugin module can use them at import
time without pulling in torch, which keeps ``hera families`` fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: A live agent: the family's own object, which ``hera_load`` returns in
#: :attr:`LoadedAgent.handle` and hera hands back to that family's hooks
#: (abraxas types its hooks with its ``Sheet``). Any object will do; one
#: that is a :class:`LiveAgent` also answers the running hooks itself.
AgentHandle = object


@runtime_checkable
class LiveAgent(Protocol):
    """A live agent that answers hera's running hooks with its own methods:
    a family whose ``hera_load`` returns one need not implement
    ``hera_step``, ``hera_serialize``, ``hera_encode_input`` and
    ``hera_decode_output`` (hera calls these methods where the family has
    no implementation of the hook; see :mod:`hera.agent_protocol`). The
    contract of each method is its hook's."""

    def step(self, steps: int) -> int:
        """``hera_step``: advance ``steps`` iterations; return how many."""

    def snapshot(self) -> "Snapshot":
        """``hera_serialize``: the complete agent as CPU tensors."""

    def feed(self, line: str) -> bool:
        """``hera_encode_input``: put a line into the input area."""

    def read(self) -> str:
        """``hera_decode_output``: the output area since the last read."""


@dataclass(frozen=True)
class FamilyInfo:
    """What a family says about itself.

    :param name: the family's name as users type it (``--family NAME``).
    :param version: the family package's version.
    :param data_format: version of the family's tensor layout inside instance
        files, the format it writes; a file written with another
        ``data_format`` is refused unless it is in ``upgrades_from``.
    :param summary: one line shown by ``hera families``.
    :param upgrades_from: older data formats the family's ``hera_upgrade``
        converts to ``data_format``; hera upgrades such a file where it loads
        it (``up``, ``grow``), keeping the store's original as
        ``<id>.format<N>.json`` before the first save over it.
    """

    name: str
    version: str
    data_format: int = 1
    summary: str = ""
    upgrades_from: tuple[int, ...] = ()


@dataclass(frozen=True)
class LayoutInfo:
    """One layout of a family, as ``hera layouts`` shows it.

    :param name: the layout's name (``--layout NAME``).
    :param summary: one line describing what it is for.
    :param parameters: the layout's default definition (JSON values).
    :param neurons: number of neurons an instance of it has.
    :param synapses: number of synapses an instance of it has.
    :param bytes: bytes of device memory an upped instance needs.
    """

    name: str
    summary: str
    parameters: dict[str, Any]
    neurons: int
    synapses: int
    bytes: int


@dataclass
class Built:
    """What ``hera_build`` returns: a dead instance.

    :param definition: the complete definition after overrides (JSON values);
        it is stored in the instance file and handed back to every later hook.
    :param tensors: learned parameters (weights, thresholds, ...) by name,
        CPU tensors; usually all zero.
    """

    definition: dict[str, Any]
    tensors: dict[str, "torch.Tensor"]


@dataclass
class DynamicState:
    """The part of an agent that only exists once it has run.

    :param tensors: membrane potentials, traces, spikes in flight, the
        random generator's state, ... by name; CPU tensors.
    :param values: small JSON values (counters and the like).
    """

    tensors: dict[str, "torch.Tensor"]
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Snapshot:
    """What ``hera_serialize``, ``hera_grow`` and ``hera_upgrade`` return: a
    complete agent.

    :param definition: the definition (changed by ``hera_grow``, converted
        by ``hera_upgrade``).
    :param tensors: the learned parameters, CPU tensors.
    :param state: the dynamic state, or ``None`` for a dead instance.
    """

    definition: dict[str, Any]
    tensors: dict[str, "torch.Tensor"]
    state: DynamicState | None


@dataclass(frozen=True)
class Shard:
    """Which part of a sharded agent a process holds (``hera_load_shard``).

    :param rank: this process's rank, ``0 .. ranks - 1``; rank 0 is the
        agent's face (hera's runner) and is given the whole agent to load.
    :param ranks: how many processes hold the agent.
    :param group: the ``torch.distributed`` process group of the agent's
        ranks (gloo on CPUs, NCCL on GPUs). Its collectives time out after
        hera's rank timeout, which is how a hung rank is found: use it for
        every collective and point-to-point transfer.
    """

    rank: int
    ranks: int
    group: Any = None


@dataclass
class LoadedAgent:
    """What ``hera_load`` returns: a live agent on a device.

    :param handle: the family's own object; hera passes it back to
        ``hera_step``, ``hera_serialize``, ``hera_encode_input`` and
        ``hera_decode_output`` and never looks inside.
    :param device: the device it lives on (``cpu``, ``cuda:0``).
    :param backend: what computes its steps (``torch``, ``triton``, ...);
        shown in the ``up`` banner and in agent status.
    """

    handle: "AgentHandle | LiveAgent"
    device: str
    backend: str


@dataclass(frozen=True)
class ResourceReport:
    """What ``hera_simulate`` returns: what an agent needs on a device.

    :param device: the device the report is for.
    :param tensors: bytes by tensor class (``weights``, ``delay buffers``, ...).
    :param dominant: the layout parameter that drives the total most.
    :param snapshot: bytes of what :func:`hera_serialize` returns (the
        copy a save makes beside the live agent); not part of ``total``.
        hera counts it, where the agent lives in host memory, with the
        process's own (:mod:`hera.estimates`); 0: the size of the tensors
        in the agent's file.

    .. versionchanged:: 0.2 ``snapshot``
    """

    device: str
    tensors: dict[str, int]
    dominant: str = ""
    snapshot: int = 0

    @property
    def total(self) -> int:
        """All bytes together."""
        return sum(self.tensors.values())
