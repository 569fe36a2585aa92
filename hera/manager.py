"""Lifecycle of agents: build, install, uninstall, destroy, down, grow.

The manager orchestrates files, stores, locks and signals, and asks families
through hooks for everything model-specific; it never looks inside a
family's tensors. ``up`` lives in :mod:`hera.runner`.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
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
from hera.output import human_bytes
from hera.pidfile import Holder, open_regular, record_at
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
    #: ``up FILE --keep file``: run ``file`` in place of the installed agent,
    #: whose copy goes to this path once ``file`` has loaded
    replaces: Path | None = None

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
        if not os.path.lexists(path):
            _suggest_identifier(store, file)
        header = read_header(path)
        if store.has(header.id):
            return Target(store, store.header(header.id), True, path)
        if not allow_uninstalled:
            raise HeraError(f"agent {header.id} ({header.callsign}) from {file} is not installed")
        return Target(store, header, False, path)
    if ident is None and callsign is None:
        raise UsageError("which agent? give a file, --uuid ID or --callsign NAME")
    header = store.find(ident, callsign)
    return Target(store, header, True)


def _suggest_identifier(store: AgentStore, file: str) -> None:
    """Raise a hint when ``file`` names no file but an installed agent: an
    id prefix or a callsign given where a file name goes."""
    try:  # the lookup --uuid would make: no match, an ambiguous one, or not hex
        header = store.find(ident=file)
    except HeraError:
        pass
    else:
        raise HeraError(f"{file}: no such file; agent {header.id} ({header.callsign}) is "
                        f"installed: name it with --uuid {file}")
    try:
        header = store.find(callsign=file)
    except HeraError:
        return
    raise HeraError(f"{file}: no such file; agent {header.id} is installed with that "
                    f"callsign: name it with --callsign {file}")


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


def check_definition(plugins: Plugins, instance: InstanceFile) -> None:
    """Have the family check the agent's definition (through its resource
    estimate, which needs nothing loaded), so that no agent is installed
    that could never be upped."""
    try:
        plugins.family_hooks(instance.family).hera_simulate(
            definition=dict(instance.definition), device="cpu")
    except Exception as exc:  # noqa: BLE001 - a family's refusal is one line
        why = exc.message if isinstance(exc, HeraError) else f"{type(exc).__name__}: {exc}"
        raise InstanceFileError(f"agent {instance.id}: {instance.family} refuses its "
                                f"definition: {why}") from None


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
        upgraded = plugins.family_hooks(instance.family).hera_upgrade(
            data_format=old, definition=dict(instance.definition),
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


def build(plugins: Plugins, family: str | None, layout: str, overrides: dict[str, Any],
          output: Path | None, callsign: str | None = None, force: bool = False,
          seed: int | None = None) -> tuple[Path, InstanceFile]:
    """Build a dead instance file (weights as the family makes them, no
    dynamic state) in the working directory; ``seed`` (default: drawn at
    random) is the agent's for life: the same seed, the same bits.
    ``family`` ``None``: the one installed (:meth:`Plugins.family_to_build`)."""
    family = plugins.family_to_build(family)
    info = plugins.family(family)
    agent_id = identity.new_id()
    if seed is None:
        seed = secrets.randbits(63)
    elif type(seed) is not int or not 0 <= seed < 2 ** 63:
        raise HeraError(f"a seed is a whole number from 0 to 2**63 - 1, not {seed!r}")
    try:
        built = plugins.family_hooks(family).hera_build(layout=layout, overrides=dict(overrides),
                                                        seed=seed)
    except HeraError:
        raise
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "allocate" not in str(exc):
            raise
        raise HeraError(f"not enough memory to build {family}/{layout} with these "
                        f"parameters{_asked_bytes(exc)}; choose a smaller layout or parameters"
                        ) from None
    if built is None:  # pragma: no cover - plugins.family() found it
        raise HeraError(f"family {family!r} did not build layout {layout!r}")
    _check_build_memory(family, layout, built.tensors)
    path = Path(output) if output else Path.cwd() / f"{agent_id}.json"
    if os.path.lexists(path) and not force:  # lexists: False, not an error, for a bad name
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
    instance = InstanceFile(meta=meta, definition=dict(built.definition))
    instance.set_tensors(built.tensors, None)
    _write_or_explain(instance, path, exclusive=not force)
    return path, instance


def _check_build_memory(family: str, layout: str, tensors: dict[str, Any]) -> None:
    """Refuse an agent whose learned tensors this machine's memory can't
    hold: every reader of its file must (a family may hand its zeros over
    without their memory, so that building itself takes none)."""
    import psutil

    need = sum(t.numel() * t.element_size() for t in tensors.values())
    available = psutil.virtual_memory().available
    if need > available:
        raise HeraError(
            f"not enough memory to build {family}/{layout} with these parameters: its learned "
            f"tensors take {human_bytes(need)}, and this machine has {human_bytes(available)} "
            "available; choose a smaller layout or parameters")


def _asked_bytes(exc: BaseException) -> str:
    """`` (N bytes at once)`` from an allocator's message, when it says."""
    import re

    found = re.search(r"allocate (\d+) bytes", str(exc))
    return f" (it asked for {human_bytes(int(found.group(1)))} at once)" if found else ""


def _write_or_explain(instance: InstanceFile, path: Path, exclusive: bool = False) -> None:
    try:
        instance.write(path, exclusive=exclusive)
    except FileExistsError:
        raise HeraError(f"{path} exists; give another file name or --force") from None
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
    info = check_family(plugins, instance)
    if instance.meta["family"]["data_format"] == info.data_format:
        check_definition(plugins, instance)
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


def set_aside(store: AgentStore, agent_id: str, path: Path) -> None:
    """Write the installed agent to ``path`` (which must not exist), as
    ``uninstall`` would, before another copy is installed over it; the
    caller holds the agent's lock."""
    instance = store.load(agent_id)
    instance.meta.pop("installed", None)
    _write_or_explain(instance, path, exclusive=True)


def install_unlocked(instance: InstanceFile, store: AgentStore) -> None:
    """Put ``instance`` into ``store`` with the extra initialisation of an
    install (when, by whom, for whom); the caller holds the agent's lock."""
    instance.meta["installed"] = {"at": now_iso(), "by": places.current_user(),
                                  "scope": store.scope.label}
    store.save(instance)
    store.forget_uninstall(instance.id)


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
        store.remember_uninstall(instance.meta, path)
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
    return header.id == instance.id and is_earlier_state(header.meta, instance.meta)


def is_earlier_state(meta: dict[str, Any], than: dict[str, Any]) -> bool:
    """Whether the agent state of ``meta`` is the state of ``than`` or one it
    passed through (fewer or as many steps and runs): such a copy, e.g. the
    file an agent was built as, may stand for it."""
    return meta["steps"] <= than["steps"] and meta["incarnation"] <= than["incarnation"]


def choose_copy(target: Target, keep: str | None = None) -> Target:
    """For ``up FILE``: refuse, unless ``keep`` says which, to run one copy
    of an agent when the other holds a later or different state.

    - Installed, and FILE holds a state the installed agent did not pass
      through (a copy uninstalled earlier and run elsewhere, say): with
      ``keep="file"`` FILE is installed in its place once its family has
      loaded it, and the installed copy is written to
      ``./<id>.step<N>.json`` first (see :attr:`Target.replaces`); with
      ``keep="installed"`` FILE is ignored.
    - Not installed, but uninstalled earlier to a file with a later state
      than FILE (the build file upped after an uninstall): ``keep="file"``
      runs FILE all the same.
    """
    if target.file is None or keep == "installed":
        return target
    store, label = target.store, f"agent {target.id} ({target.header.callsign})"
    file_meta = read_header(target.file).meta
    at = f"step {file_meta['steps']}, run {file_meta['incarnation']}"
    if target.installed:
        mine = target.header.meta
        if keep != "file" and is_earlier_state(file_meta, mine):
            return target
        here = f"step {mine['steps']}, run {mine['incarnation']}"
        if keep != "file":
            raise HeraError(
                f"{target.file} holds {label} at {at}, but the installed agent is at {here}: "
                f"they differ. Run the installed one with --keep installed, or this file "
                f"with --keep file (the installed copy is then saved to ./{target.id}"
                f".step{mine['steps']}.json)")
        return Target(store, read_header(target.file), False, target.file,
                      replaces=Path.cwd() / f"{target.id}.step{mine['steps']}.json")
    gone = store.uninstall_record(target.id)
    if gone is None or keep == "file" or not is_earlier_state(file_meta, gone) \
            or (file_meta["steps"], file_meta["incarnation"]) == (gone["steps"], gone["incarnation"]):
        return target
    raise HeraError(
        f"{label} was uninstalled at step {gone['steps']}, run {gone['incarnation']}, to "
        f"{gone.get('path')}; {target.file} holds an earlier state ({at}). Up that file, "
        f"or pass --keep file to run this one")


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
    holder = target.store.holder(target.id)
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
    """Ask a running agent to save and stop (SIGTERM), wait until it has,
    and check that it saved.

    The agent writes how its run ended into its pid-file just before it
    lets go of it; this holds the pid-file open from before the signal, so
    it reads that last record even after the file is removed.

    :return: the agent's header as saved.
    :raises HeraError: it did not stop in time, or it stopped without
        saving to the cache (the message says where its state went).
    """
    store = target.store
    holder = verified_holder(target)
    try:
        fd = open_regular(store.pid_path(target.id), os.O_RDONLY, store.owner)
    except FileNotFoundError:
        return store.header(target.id)  # it ended meanwhile
    try:
        with store.acting():
            if os.fstat(fd).st_ino != os.stat(store.pid_path(target.id)).st_ino:
                raise FileNotFoundError
        try:
            os.kill(holder.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise HeraError(f"not allowed to signal agent {target.id} (pid {holder.pid})") from None
        record = _last_record(fd, target, timeout, progress)
    except FileNotFoundError:  # it ended between reading the holder and opening
        return store.header(target.id)
    finally:
        os.close(fd)
    label = f"agent {target.id} ({target.header.callsign})"
    outcome = record.get("outcome")
    if outcome == "saved":
        return store.header(target.id)
    if outcome is None:
        raise HeraError(f"{label} ended without a save (killed?); the cache keeps its last "
                        f"save, at step {record.get('saved_steps', '?')}")
    if outcome == "not started":
        raise HeraError(f"{label} stopped before it ran, and the cache keeps it as it was: "
                        f"{record.get('error')}")
    raise HeraError(f"{label} was not saved to the cache: {record.get('error', outcome)}")


def _last_record(fd: int, target: Target, timeout: float,
                 progress: Callable[[float], None] | None) -> dict[str, Any]:
    """Wait until nobody holds the pid-file open as ``fd``; return the
    record its holder left in it."""
    started = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            pass
        waited = time.monotonic() - started
        if waited > timeout:
            raise HeraError(
                f"agent {target.id} has not stopped after {timeout:.0f} s; it is still running"
            )
        if progress is not None:
            progress(waited)
        time.sleep(0.05)
    return record_at(fd)


# -- grow ----------------------------------------------------------------------------


def grow(plugins: Plugins, target: Target, changes: dict[str, Any]) -> InstanceFile:
    """Grow a downed agent through its family's ``hera_grow``."""
    if not changes:
        raise UsageError("nothing to grow: give PARAM=VALUE pairs of the agent's layout "
                         "parameters ('hera layouts --json' lists them)")
    store = target.store
    lock = store.lock(target.id, op="grow")
    try:
        instance = store.load(target.id)
        upgrade(plugins, instance, store)
        grown = plugins.family_hooks(instance.family).hera_grow(
            definition=dict(instance.definition),
            tensors=instance.tensors(), state=instance.state(), changes=dict(changes),
            seed=instance.meta["seed"],
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
