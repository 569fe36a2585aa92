"""hera's Python API: drive an agent from a program or a notebook.

:func:`up` brings an agent up in this process with every guarantee ``hera
up`` gives: it is installed on its first up, locked against a second up,
checkpointed, saved when it goes down (and when the program ends), and
resumed exactly by whoever ups it next. :func:`attach` drives an agent
that a daemon runs, over its control channel, with the same methods:
slower, with the same results. See docs/python-api.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from hera import places
from hera.driven import AgentDown, Driven
from hera.errors import HeraError
from hera.program_agent import Agent
from hera.remote_agent import RemoteAgent
from hera.store import AgentStore

if TYPE_CHECKING:  # pragma: no cover
    from hera.manager import Target

__all__ = ["build", "up", "attach", "plot", "Agent", "RemoteAgent", "AgentDown", "Driven"]

#: Seconds between checkpoints when neither the call nor a config file says.
DEFAULT_CHECKPOINT = 600.0


def build(layout: str = "example", path: str | os.PathLike | None = None, *,
          family: str | None = None, name: str | None = None, force: bool = False,
          seed: int | None = None, **overrides: Any) -> Path:
    """Build an instance file, as ``hera build`` does, and return its path.

    :param layout: the family's layout (``hera layouts``).
    :param path: the file to write (default: ``<uuid>.json`` here).
    :param family: the family (``hera families``); default: the one of
        ``~/.herarc`` or ``./hera.json``, else the one installed (with
        several installed, name one).
    :param name: the agent's callsign (default: made from its id).
    :param force: replace ``path`` if it exists.
    :param seed: the agent's seed (its noise and input draws for life);
        default: drawn at random. The same seed gives the same bits.
    :param overrides: layout parameters, over the ``[definition]`` of
        ``~/.herarc`` and ``./hera.json``, as ``--set`` is.
    """
    from hera import manager
    from hera.config import load_config
    from hera.plugins import load_plugins

    config = load_config()
    definition = {**config.definition, **overrides}
    family = family or config.options.get("family")
    built, _ = manager.build(load_plugins(), family, layout, definition,
                             None if path is None else Path(path), name, force, seed)
    return Path(built)


def plot(kind: str, source: Any, path: str | os.PathLike | None = None, **options: Any) -> Any:
    """Draw ``kind`` (``raster``, ``rates``, ``fields``, ``weights`` or
    ``thresholds``) from ``source``: a recording (or its ``.npz``), an
    agent of :func:`up`, or an instance file. Return the matplotlib figure
    (a notebook shows it); with ``path``, also write it as PNG or SVG.

    :param options: ``shape=(8, 8)``, ``neurons=[...]``, ``tensor=...`` for
        fields, ``title=...`` for any (see docs/python-api.md).
    :raises HeraError: a source without what ``kind`` needs, or no matplotlib.
    """
    from hera import plotting

    fig = plotting.figure(kind, plotting.data_of(source), **options)
    if path is not None:
        plotting.save(fig, path)
    return fig


def up(agent: str | os.PathLike, *, device: str | None = None,
       checkpoint: float | None = None, system: bool = False, user: str | None = None,
       keep: str | None = None, say: Callable[[str], None] | None = None) -> "Agent":
    """Bring an agent up in this process and return it, running.

    :param agent: an instance file (installed on its first up), or an
        installed agent's id, id prefix or callsign.
    :param device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (default).
    :param checkpoint: seconds between saves while it steps, so that a crash
        loses at most that much (0: only at down); default: the ``checkpoint``
        option of ``~/.herarc`` or ``./hera.json``, else 600.
    :param system: an agent of the system store.
    :param user: an agent of user ``user`` (root only).
    :param keep: when ``agent`` is a file whose state differs from the
        installed copy's: ``"installed"`` or ``"file"``, as ``hera up --keep``.
    :param say: where to send the lines ``hera up`` would print (installed,
        upgraded, up, down); default: nowhere.
    :raises HeraError: with one line saying what is wrong, and nothing left
        behind (no lock, no half-installed agent).
    """
    from hera import manager
    from hera.config import load_config
    from hera.plugins import load_plugins
    from hera.runner import Run

    if checkpoint is None:
        checkpoint = float(load_config().options.get("checkpoint", DEFAULT_CHECKPOINT))
    if not checkpoint >= 0 or checkpoint == float("inf"):
        raise HeraError(f"checkpoint must be a finite number of seconds >= 0, not {checkpoint!r}")
    store = AgentStore(places.Scope.of(system, user))
    target = manager.choose_copy(_target(store, agent), keep)
    plugins = load_plugins()
    run = Run(plugins, target, "program", silent=True, say=say or (lambda line: None))
    try:
        run.start()
        run.load(device)
        live = Agent(run, checkpoint)
        run.serve(live._handle_request, live._stream)
    except BaseException:
        run.close()  # records why it did not start, and lets go of the lock
        raise
    live._begin()
    return live


def attach(agent: str | os.PathLike | None = None, *, system: bool = False,
           user: str | None = None, pause: bool = True) -> "RemoteAgent":
    """Drive an agent that is up in another process (a daemon, say) over its
    control channel.

    :param agent: as for :func:`up`; ``None``: the one agent that is up.
    :param pause: stop the agent's own running while attached, so it moves
        only when told to (``step``), as an agent of :func:`up` does. Without
        it the agent runs on until the first ``step``, which pauses it. A
        running agent runs on again at :meth:`RemoteAgent.detach`.
    :raises HeraError: the agent is not up, or refuses the connection.
    """
    from hera import manager
    from hera.control import ControlClient

    store = AgentStore(places.Scope.of(system, user))
    if agent is None:
        target = manager.running_target(store, None, None, None)
    else:
        target = _target(store, agent)
        if not target.installed:
            raise HeraError(f"agent {target.id} ({target.header.callsign}) is not installed")
    holder = store.holder(target.id)
    if holder is None or holder.info.get("op") != "up":
        raise HeraError(f"agent {target.id} ({target.header.callsign}) is not up")
    client = ControlClient(store.socket_path(target.id), store.token_path(target.id),
                           owner=store.owner)
    return RemoteAgent(target, client, pause)


def _target(store: AgentStore, agent: str | os.PathLike) -> "Target":
    """The agent named by a file, an id or id prefix, or a callsign."""
    from hera import manager

    text = os.fspath(agent)
    if not text:
        raise HeraError("which agent? give a file, an id or a callsign")
    if isinstance(agent, Path) or os.path.lexists(text):
        return manager.select_target(store, text, None, None, allow_uninstalled=True)
    try:
        header = store.find(ident=text)
    except HeraError:
        try:
            header = store.find(callsign=text)
        except HeraError:
            raise HeraError(f"{text}: no such file, and no installed agent has that id or "
                            "callsign") from None
    return manager.Target(store, header, True)
