"""Lifecycle of agents: build, install, uninstall, destroy, down, grow.

The manager orchestrates files, stores, locks and signals, and asks families
through hooks for everything model-specific; it never looks inside a
family's tensors. ``up`` lives in :mod:`hera.runner`.
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import hera
from hera import identity, places
from hera.errors import HeraError, InstanceFileError, UsageError
from hera.hooks.types import FamilyInfo
from hera.instance import Header, InstanceFile, read_header
from hera.pidfile import Holder, read_holder
from hera.plugins import Plugins
from hera.store import UP_OPS, AgentStore


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# -- which agent ---------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a command addresses: an installed agent, or a file not yet installed."""

    store: AgentStore
    header: Header
    installed: bool
    file: Path | None = None

    @property
    def id(self) -> str:
        return self.header.id


def select_target(store: AgentStore, file: str | None, ident: str | None,
                  callsign: str | None, allow_uninstalled: bool = False) -> Target:
    """Resolve a file name, an id prefix or a callsign to one agent.

    :raises UsageError: both a file and an id/callsign are given, or none.
    """
    if file and (ident or callsign):
        raise UsageError("give an agent file or an identifier (--uuid/--callsign), not both")
    if ident and callsign:
        raise UsageError("give --uuid or --callsign, not both")
    if file:
        path = Path(file)
        header = read_header(path)
        if store.has(header.id):
            return Target(store, read_header(store.path(header.id)), True, path)
        if not allow_uninstalled:
            raise HeraError(f"agent {header.id} ({header.callsign}) from {file} is not installed")
        return Target(store, header, False, path)
    if ident is None and callsign is None:
        raise UsageError("which agent? give a file, --uuid ID or --callsign NAME")
    header = store.find(ident, callsign)
    return Target(store, header, True)


def running_target(store: AgentStore, file: str | None, ident: str | None,
                   callsign: str | None) -> Target:
    """Like :func:`select_target`, but with nothing given picks the one
    running agent (and says which when several run)."""
    if file or ident or callsign:
        return select_target(store, file, ident, callsign)
    running = [e for e in store.entries() if e.is_up]
    if not running:
        raise HeraError("no agent is running")
    if len(running) > 1:
        listed = ", ".join(f"{e.id[:8]} ({e.callsign})" for e in running)
        raise HeraError(f"{len(running)} agents are running; say which with --uuid: {listed}")
    return Target(store, running[0].header, True)


# -- families --------------------------------------------------------------------


def check_family(plugins: Plugins, instance: InstanceFile) -> FamilyInfo:
    """The installed family of ``instance``, refusing an unknown family or a
    data format that it neither reads nor upgrades from (the content of a
    file it upgrades from is converted by :func:`upgrade` where it is used)."""
    info = plugins.family(instance.family)
    wanted = instance.meta["family"]["data_format"]
    if wanted != info.data_format and wanted not in info.upgrades_from:
        readable = sorted({info.data_format, *info.upgrades_from})
        formats = f"format {readable[0]}" if len(readable) == 1 else \
            f"formats {', '.join(map(str, readable[:-1]))} and {readable[-1]}"
        raise InstanceFileError(
            f"agent {instance.id} was written by {info.name} data format {wanted}, "
            f"but the installed {info.name} {info.version} reads {formats}"
        )
    return info


def upgrade(plugins: Plugins, instance: InstanceFile, store: AgentStore | None = None) -> int | None:
    """Check the family of ``instance`` and bring the agent, in place, to the
    installed family's data format through its ``hera_upgrade``.

    Call it wherever an agent's content is used (``up``, ``grow``), so that a
    family only ever sees its current format. The meta's family version and
    data format become the installed family's, so the next save writes the
    new format. With ``store`` (``instance`` is the store's copy and the
    caller holds the agent's lock), the store's file is first kept as it is
    (:meth:`AgentStore.keep_older_format`), so that the save loses nothing.

    :return: the data format the agent was upgraded from, or ``None`` when
        it was already current.
    :raises InstanceFileError: the family cannot read the format, or its
        ``hera_upgrade`` failed or did not answer; nothing is written then.
    """
    info = check_family(plugins, instance)
    old = instance.meta["family"]["data_format"]
    if old == info.data_format:
        return None
    tensors, state = instance.tensors(), instance.state()
    failed = f"{info.name} {info.version} could not upgrade agent {instance.id} from data format {old}"
    try:
        upgraded = plugins.hook.hera_upgrade(
            family=instance.family, data_format=old, definition=dict(instance.definition),
            tensors=tensors, state=state)
        if upgraded is not None:
            instance.definition = dict(upgraded.definition)
            instance.set_tensors(upgraded.tensors, upgraded.state)
    except Exception as exc:  # noqa: BLE001 - a family's failure is one line; the file stays
        why = exc.message if isinstance(exc, HeraError) else f"{type(exc).__name__}: {exc}"
        raise InstanceFileError(f"{failed}: {why}") from exc
    if upgraded is None:
        raise InstanceFileError(f"{failed}: it lists that format in upgrades_from, "
                                "but its hera_upgrade gave nothing")
    if store is not None:
        store.keep_older_format(instance.id, old)
    instance.meta["family"] = {"name": info.name, "version": info.version,
                               "data_format": info.data_format}
    return old


# -- build -----------------------------------------------------------------------


def build(plugins: Plugins, family: str, layout: str, overrides: dict[str, Any],
          output: Path | None, callsign: str | None = None, force: bool = False) -> tuple[Path, InstanceFile]:
    """Build a dead instance file (weights as the family makes them, no
    dynamic state) in the working directory."""
    info = plugins.family(family)
    agent_id = identity.new_id()
    seed = secrets.randbits(63)
    built = plugins.hook.hera_build(family=family, layout=layout, overrides=dict(overrides), seed=seed)
    if built is None:  # pragma: no cover - plugins.family() found it
        raise HeraError(f"family {family!r} did not build layout {layout!r}")
    path = Path(output) if output else Path.cwd() / f"{agent_id}.json"
    if path.exists() and not force:
        raise HeraError(f"{path} exists; give another file name or --force")
    meta = {
        "id": agent_id,
        "callsign": identity.check_callsign(callsign) if callsign else identity.callsign_for(agent_id),
        "family": {"name": info.name, "version": info.version, "data_format": info.data_format},
        "layout": layout,
        "created": now_iso(),
        "seed": seed,
        "steps": 0,
        "incarnation": 0,
        "hera_version": hera.__version__,
    }
    instance = InstanceFile(meta=meta, definition=dict(built.definition), tensor_entries={})
    instance.set_tensors(built.tensors, None)
    _write_or_explain(instance, path)
    return path, instance


def _write_or_explain(instance: InstanceFile, path: Path) -> None:
    try:
        instance.write(path)
    except PermissionError:
        raise HeraError(f"cannot write {path}: permission denied") from None
    except FileNotFoundError:
        raise HeraError(f"cannot write {path}: no such directory") from None
    except OSError as exc:
        raise HeraError(f"cannot write {path}: {exc.strerror}") from None


# -- install / uninstall / destroy ---------------------------------------------------


def install(plugins: Plugins, store: AgentStore, file: Path) -> InstanceFile:
    """Copy an instance file into ``store`` with the install-time extras."""
    instance = InstanceFile.read(file)
    check_family(plugins, instance)
    lock = store.lock(instance.id, op="install")
    try:
        if store.has(instance.id):
            raise HeraError(
                f"agent {instance.id} ({instance.callsign}) is already installed for {store.scope.label}"
            )
        install_unlocked(instance, store)
    finally:
        lock.release()
    return instance


def install_unlocked(instance: InstanceFile, store: AgentStore) -> None:
    """Put ``instance`` into ``store`` with the extra initialisation of an
    install (when, by whom, for whom); the caller holds the agent's lock."""
    instance.meta["installed"] = {"at": now_iso(), "by": places.current_user(),
                                  "scope": store.scope.label}
    store.save(instance)


def uninstall(target: Target, destination: Path, force: bool = False) -> Path:
    """Move a downed agent out of the cache into ``destination`` (a
    directory or a file name); the copy is durable before the cache file
    goes."""
    store = target.store
    lock = store.lock(target.id, op="uninstall")
    try:
        instance = store.load(target.id)
        path = destination / f"{instance.id}.json" if destination.is_dir() else destination
        if path.resolve().parent == store.dir.resolve():
            raise HeraError(f"{path} is in the agent store; uninstall to a file elsewhere")
        if path.exists() and not force and not _older_copy_of(path, instance):
            raise HeraError(f"{path} exists; move it away, or pass --force to replace it")
        instance.meta.pop("installed", None)
        _write_or_explain(instance, path)
        store.remove(target.id)
    finally:
        lock.release()
    return path


def _older_copy_of(path: Path, instance: InstanceFile) -> bool:
    """Whether ``path`` holds an earlier state of the same agent (such as the
    file it was built as), which its cached state may replace."""
    try:
        header = read_header(path)
    except InstanceFileError:
        return False
    return header.id == instance.id and header.meta["steps"] <= instance.steps


def destroy(target: Target) -> None:
    """Remove an agent from the cache for good (it must not run)."""
    store = target.store
    lock = store.lock(target.id, op="destroy")
    try:
        store.remove(target.id)
    finally:
        lock.release()


# -- down --------------------------------------------------------------------------


def verified_holder(target: Target) -> Holder:
    """The running agent's process, checked to be the one that wrote its
    pid-file (same pid and start time), so a reused pid is never signalled."""
    holder = read_holder(target.store.pid_path(target.id))
    if holder is None or holder.info.get("op") not in UP_OPS:
        raise HeraError(f"agent {target.id} ({target.header.callsign}) is not running")
    if not holder.verified:
        raise HeraError(
            f"the pid-file of {target.id} names pid {holder.pid}, which is not the agent's "
            "process; not signalling it"
        )
    return holder


def down(target: Target, timeout: float = 120.0,
         progress: Callable[[float], None] | None = None) -> Header:
    """Ask a running agent to save and stop (SIGTERM), and wait until it has.

    :return: the agent's header as saved.
    """
    store = target.store
    holder = verified_holder(target)
    try:
        os.kill(holder.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise HeraError(f"not allowed to signal agent {target.id} (pid {holder.pid})") from None
    started = time.monotonic()
    while True:
        current = read_holder(store.pid_path(target.id))
        if current is None or current.pid != holder.pid:
            break
        waited = time.monotonic() - started
        if waited > timeout:
            raise HeraError(
                f"agent {target.id} has not stopped after {timeout:.0f} s; it is still running"
            )
        if progress is not None:
            progress(waited)
        time.sleep(0.05)
    return read_header(store.path(target.id))


# -- grow ----------------------------------------------------------------------------


def grow(plugins: Plugins, target: Target, changes: dict[str, Any]) -> InstanceFile:
    """Grow a downed agent through its family's ``hera_grow``."""
    if not changes:
        raise UsageError("nothing to grow: give PARAM=VALUE pairs, e.g. width=8")
    store = target.store
    lock = store.lock(target.id, op="grow")
    try:
        instance = store.load(target.id)
        upgrade(plugins, instance, store)
        grown = plugins.hook.hera_grow(
            family=instance.family, definition=dict(instance.definition),
            tensors=instance.tensors(), state=instance.state(), changes=dict(changes),
        )
        if grown is None:
            raise HeraError(f"family {instance.family} cannot grow its agents")
        instance.definition = dict(grown.definition)
        instance.set_tensors(grown.tensors, grown.state)
        instance.meta["grown"] = instance.meta.get("grown", 0) + 1
        store.save(instance)
    finally:
        lock.release()
    return instance
