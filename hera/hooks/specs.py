"""Hook specifications: the whole contract between hera and a family.

Every hook is called with keyword arguments only. hera routes the hooks of
an agent to the agent's family: it calls that family's implementation and
no other family's (:meth:`hera.plugins.Plugins.family_hooks`), so a family
implements each hook for its own agents alone and may leave out the
``family`` argument. Non-family plugins (a recorder, a metrics exporter) see
every call: they may wrap any hook with ``@hookimpl(wrapper=True)`` and read
``family``. The hooks are ``firstresult`` (the family's answer is the
hook's), except ``hera_family``, which hera asks of every plugin.

Families written for hera 0.1, whose hooks take ``family`` and return
``None`` for other families, keep working, with a warning, until hera 0.3.

Tensors cross the boundary as CPU ``torch.Tensor`` objects by name. A family's
plugin module must not import torch at module level: ``hera families`` and
``hera layouts`` load every plugin and must stay fast. Import it inside the
hooks that need it (``hera_build``, ``hera_load``, ...).

Grouped by lifecycle phase: discovery, build, resources and growth, upgrade,
running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hera.hooks import hookspec

if TYPE_CHECKING:  # pragma: no cover
    import numpy
    import torch
    from numpy.typing import ArrayLike

    from hera.hooks.types import (
        AgentHandle,
        Built,
        DynamicState,
        FamilyInfo,
        LayoutInfo,
        LoadedAgent,
        ResourceReport,
        Shard,
        Snapshot,
    )


# -- discovery ---------------------------------------------------------------


@hookspec
def hera_family() -> "FamilyInfo":
    """Describe the family this plugin provides.

    Called on every plugin; hera collects the answers to list families and to
    check that a file's family is installed. Plugins that are not families
    simply do not implement it.

    :return: the family's :class:`~hera.hooks.types.FamilyInfo`.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def hera_layouts(family: str) -> "list[LayoutInfo] | None":
    """List the layouts of ``family``.

    Must be cheap (no torch): ``hera layouts`` calls it on every family.

    :param family: the family (for wrappers: a family leaves it out).
    :return: the layouts, the family's ``example`` layout among them.

    .. versionadded:: 0.1
    """


# -- build -------------------------------------------------------------------


@hookspec(firstresult=True)
def hera_build(
    family: str, layout: str, overrides: "dict[str, Any]", seed: int
) -> "Built | None":
    """Build a dead instance of ``family``/``layout``.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param layout: the layout's name; raise
        :class:`~hera.errors.DefinitionError` when the family has none of
        that name.
    :param overrides: layout parameters to change (from ``~/.herarc``,
        ``./hera.json`` and ``build --set``, already merged in that order);
        raise :class:`~hera.errors.DefinitionError` for an unknown parameter
        or a bad value, naming it.
    :param seed: the instance's random seed, chosen by hera and stored in
        the file; use it for anything random so a build can be repeated.
    :return: the complete definition and the learned parameters (usually
        zero).

    .. versionadded:: 0.1
    """


# -- resources and growth ----------------------------------------------------


@hookspec(firstresult=True)
def hera_simulate(
    family: str, definition: "dict[str, Any]", device: str
) -> "ResourceReport | None":
    """Work out what an instance needs on ``device`` without allocating it.

    Used by ``up --simulate`` and ``layouts --device``; the total should be
    within 10% of what :func:`hera_load` actually allocates.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param definition: the instance's definition.
    :param device: ``cpu``, ``cuda:0``, ...
    :return: bytes by tensor class.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def hera_grow(
    family: str,
    definition: "dict[str, Any]",
    tensors: "dict[str, torch.Tensor]",
    state: "DynamicState | None",
    changes: "dict[str, Any]",
    seed: int,
) -> "Snapshot | None":
    """Grow a downed agent, keeping what it has learned.

    Old weights, thresholds and spikes in flight must stay where they were;
    new parts start as the family builds them: at zero, or drawn from
    ``seed``, so that growing the same agent the same way gives the same
    bits. Refuse anything that shrinks the agent (or that the family cannot
    grow) with :class:`~hera.errors.DefinitionError` whose message says why.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param definition: the current definition.
    :param tensors: the current learned parameters (CPU).
    :param state: the current dynamic state, or ``None`` if it never ran.
    :param changes: layout parameters with their new, larger values.
    :param seed: the agent's seed (as ``hera_load`` gets it); a family that
        starts new parts at zero may leave it out of its implementation.
    :return: the grown agent.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``seed``.
    """


# -- upgrade -----------------------------------------------------------------


@hookspec(firstresult=True)
def hera_upgrade(
    family: str,
    data_format: int,
    definition: "dict[str, Any]",
    tensors: "dict[str, torch.Tensor]",
    state: "DynamicState | None",
) -> "Snapshot | None":
    """Convert an agent written in an older data format of the family.

    hera calls it where it loads a file whose ``data_format`` is one of
    :attr:`~hera.hooks.types.FamilyInfo.upgrades_from` (``up``, ``up
    --simulate``, ``grow``), before any other hook sees the agent, so those
    hooks only ever get the current format. What it learned must survive
    the conversion: same weights, same state, in the new layout. The next
    save writes the current format; the store's file in the old format is
    kept beside it as ``<id>.format<N>.json``. Raise
    :class:`~hera.errors.InstanceFileError` for content that cannot be
    converted; any failure, or ``None`` for a format the family listed,
    refuses the agent in one line and leaves its file as it was.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param data_format: the format the file was written in (one of
        ``upgrades_from``).
    :param definition: the definition as stored in that format.
    :param tensors: the learned parameters as stored (CPU).
    :param state: the dynamic state as stored, or ``None`` if it never ran.
    :return: the agent in the family's current ``data_format`` (CPU
        tensors; keep ``state=None`` for a dead agent).

    .. versionadded:: 0.2
    """


# -- running -----------------------------------------------------------------


@hookspec(firstresult=True)
def hera_load(
    family: str,
    definition: "dict[str, Any]",
    tensors: "dict[str, torch.Tensor]",
    state: "DynamicState | None",
    device: str,
    seed: int,
) -> "LoadedAgent | None":
    """Bring an agent to life on ``device``.

    Called once per ``up``. When ``state`` is ``None`` the agent is dead
    (built, never run): create its first dynamic state, seeding any random
    generator from ``seed`` so the run can be repeated.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param definition: the instance's definition.
    :param tensors: learned parameters (CPU); move or copy them to the device.
    :param state: the dynamic state saved by the last ``down``, or ``None``.
    :param device: ``cpu``, ``cuda:0``, ... (hera has checked it exists).
    :param seed: the instance's seed.
    :return: the live agent.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def hera_load_shard(
    family: str,
    definition: "dict[str, Any]",
    tensors: "dict[str, torch.Tensor] | None",
    state: "DynamicState | None",
    device: str,
    seed: int,
    shard: "Shard",
) -> "LoadedAgent | None":
    """Bring this process's part of an agent that runs on several ranks
    (``hera up --ranks N``, or under ``torchrun`` with ``--distributed``)
    to life on ``device``. A family that implements it can be sharded.

    hera calls it on every rank at once. Rank 0 is given the whole agent
    (``tensors``, ``state`` as :func:`hera_load` is); the other ranks get
    ``None`` for both and receive their parts from rank 0 over
    ``shard.group``. From then on hera calls every running hook
    (``hera_step``, ``hera_serialize``, ``hera_encode_input``, ...) on every
    rank, with the same arguments and in the same order, so the family's
    collectives line up. ``hera_step`` must leave the agent whole: every
    spike in flight between ranks accounted for. Hooks that answer
    (``hera_serialize``, ``hera_decode_output``, ``hera_output_array``,
    ``hera_activity``, ``hera_probe``) answer for the whole agent on rank
    0; hera ignores what the other ranks return. ``hera_serialize`` on rank
    0 gives the same snapshot, bit for bit, as one process would, so the
    instance file does not depend on the number of ranks.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param definition: the instance's definition (on every rank).
    :param tensors: learned parameters on rank 0 (CPU), ``None`` elsewhere.
    :param state: the dynamic state on rank 0 (or ``None`` for a new
        agent), ``None`` elsewhere.
    :param device: this rank's device.
    :param seed: the instance's seed (on every rank).
    :param shard: this rank, the number of ranks and their process group.
    :return: this rank's part of the live agent.

    .. versionadded:: 0.3
    """


@hookspec(firstresult=True)
def hera_step(family: str, agent: "AgentHandle", steps: int) -> "int | None":
    """Advance a live agent by ``steps`` iterations; plasticity stays on.

    hera calls it with chunks of steps and checks for signals between calls,
    so one call should do all ``steps`` without returning early. Running
    ``a`` then ``b`` steps must give exactly the state of running ``a + b``.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param agent: the ``handle`` from :func:`hera_load`.
    :param steps: how many iterations to do (at least 1).
    :return: the number of iterations done.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def hera_serialize(family: str, agent: "AgentHandle") -> "Snapshot | None":
    """Take the complete state of a live agent off its device.

    Everything that a later :func:`hera_load` needs to continue exactly where
    this agent is now: weights, dynamic state, spikes in flight, random
    generator state. hera writes it to the cache atomically.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param agent: the ``handle`` from :func:`hera_load`.
    :return: the agent as CPU tensors.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def hera_encode_input(family: str, agent: "AgentHandle", line: str) -> "bool | None":
    """Put one line of input into the agent's input area.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param agent: the ``handle`` from :func:`hera_load`.
    :param line: the text, without its newline; the family decides how it
        becomes spikes (abraxas rate-codes numbers and byte-codes text).
    :return: ``True`` once taken.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def hera_decode_output(family: str, agent: "AgentHandle") -> "str | None":
    """Read the agent's output area as one line of text.

    Decodes the activity since the previous call and starts a new window.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param agent: the ``handle`` from :func:`hera_load`.
    :return: the line (without newline).

    .. versionadded:: 0.1
    """


# -- arrays and learning, for programs (the Python API) ----------------------
# Optional: a family without them takes lines only, and hera says so.


@hookspec(firstresult=True)
def hera_feed_array(family: str, agent: "AgentHandle", values: "ArrayLike | None",
                    spikes: "ArrayLike | None") -> "bool | None":
    """Put input into the agent's input area as an array, the fast form of
    an input line for programs.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param agent: the ``handle`` from :func:`hera_load`.
    :param values: one number per input channel (a NumPy array or a
        sequence), as a line of numbers would give them; or ``None``.
    :param spikes: the input channels (whole numbers) that spike exactly at
        the next step, as a ``spikes`` line would give them; or ``None``.
    :return: ``True`` once taken.
    :raises HeraError: for an array the agent cannot take (a channel it
        does not have, say), before anything is changed.

    .. versionadded:: 0.2
    """


@hookspec(firstresult=True)
def hera_output_array(family: str, agent: "AgentHandle") -> "numpy.ndarray | None":
    """Read the agent's output area as an array: what
    :func:`hera_decode_output` would write as a line, as numbers.

    Reads the activity since the previous read (by either hook) and starts
    a new window.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param agent: the ``handle`` from :func:`hera_load`.
    :return: a one-dimensional NumPy array.

    .. versionadded:: 0.2
    """


@hookspec(firstresult=True)
def hera_freeze(family: str, agent: "AgentHandle", frozen: bool) -> "bool | None":
    """Freeze or thaw all adaptation of a live agent from its next step on.

    Frozen, the agent runs on (its dynamics, spikes and output) but nothing
    it has learned changes: no plasticity, no threshold adaptation, nothing
    else that would make a later step differ from one before the freeze.
    The state is saved and resumed with the agent.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param agent: the ``handle`` from :func:`hera_load`.
    :param frozen: ``True`` to freeze, ``False`` to thaw.
    :return: ``True`` once done.

    .. versionadded:: 0.2
    """


@hookspec(firstresult=True)
def hera_activity(family: str, agent: "AgentHandle") -> "dict[str, tuple[int, int]] | None":
    """Count what a live agent has done: the spikes of each of its
    populations since it was loaded, and the population's size.

    Cheap enough to call several times a second: ``hera top``, the progress
    line (spikes/s) and recordings (rates per population over time) read
    it, and work out rates from the differences between two calls.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param agent: the ``handle`` from :func:`hera_load`.
    :return: ``{name: (spikes, size)}`` in the family's order (abraxas:
        ``inputs``, ``layer 1`` … ``layer D``, the last being the output
        area).

    .. versionadded:: 0.2
    """


@hookspec(firstresult=True)
def hera_probe(family: str, agent: "AgentHandle", variable: str,
               neurons: "numpy.ndarray") -> "numpy.ndarray | None":
    """Read one variable of chosen neurons of a live agent, for recordings.

    Neurons are numbered across the populations of :func:`hera_activity`,
    in its order: the first population's are 0 … size-1, the next's follow.

    :param family: the agent's family (for wrappers: a family leaves it out).
    :param agent: the ``handle`` from :func:`hera_load`.
    :param variable: ``spikes`` (each neuron's spikes since the agent was
        loaded, counted up: a recording takes differences), or one of the
        family's own (abraxas: ``membrane``, ``threshold``).
    :param neurons: a one-dimensional NumPy array of neuron numbers.
    :return: a NumPy array, one value per neuron.
    :raises HeraError: for a variable the family does not have, or a neuron
        it does not have or that has no such variable (naming what it has).

    .. versionadded:: 0.2
    """
