"""AgentStore: the installed agents of one scope (this user, the system,
another user) and their pid-files."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

from hera import atomic, identity, places, privilege
from hera.errors import AgentRunningError, HeraError, InstanceFileError
from hera.instance import Header, InstanceFile, read_header
from hera.pidfile import Holder, PidLock, open_regular, read_holder, read_stale


#: pid-file ops of an agent's own process: loading it, or running its loop.
UP_OPS = ("starting", "up")

# Bytes copied at a time when a file is kept as it was.
_COPY_PIECE = 4 << 20

#: Names of agent files kept in an older data format of their family (see
#: :meth:`AgentStore.keep_older_format`); they are not installed agents.
_OLDER_FORMAT_NAME = re.compile(r"\.format[0-9]+\.json$")


@dataclass(frozen=True)
class AgentEntry:
    """An installed agent as listed: its header and whether it runs."""

    header: Header
    scope: places.Scope
    holder: Holder | None
    #: the record of a run that ended without cleaning up (killed), if any
    stale: dict[str, Any] | None = None
    #: how its last run ended, as noted at its end
    ended: dict[str, Any] | None = None

    @property
    def killed(self) -> bool:
        """Whether the last run was killed (SIGKILL, a crash) after its last
        save: its steps since then are lost."""
        return (not self.is_up and self.stale is not None
                and self.stale.get("op") in UP_OPS)

    @property
    def id(self) -> str:
        return self.header.id

    @property
    def callsign(self) -> str:
        return self.header.callsign

    @property
    def is_up(self) -> bool:
        """Whether an ``up`` holds the agent (whatever its inner loop does)."""
        return self.holder is not None and self.holder.info.get("op") in UP_OPS

    @property
    def status(self) -> str:
        """Up: ``running``, ``paused`` or ``standby``; else ``down`` (has
        state) or ``dead`` (never ran)."""
        if self.is_up:
            if self.holder.info.get("op") == "starting":
                return "starting"
            return str(self.holder.info.get("state") or "running")
        if self.killed:
            return "killed"
        return "down" if self.header.meta.get("alive") else "dead"


class AgentStore:
    """The agents of one scope: ``<data>/agents/<id>.json`` plus pid-files."""

    def __init__(self, scope: places.Scope | None = None):
        self.scope = scope or places.Scope("user")
        self.dir = places.agents_dir(self.scope)
        self.run_dir = places.scope_runtime_dir(self.scope)
        #: ``(uid, gid)`` that root hands what it creates for another user.
        self.owner = self.scope.owner() if os.geteuid() == 0 else None

    def __repr__(self) -> str:
        return f"AgentStore({self.scope.label}: {self.dir})"

    # -- places --------------------------------------------------------------

    def path(self, agent_id: str) -> Path:
        """The agent's file (its only durable copy)."""
        return self.dir / f"{agent_id}.json"

    def pid_path(self, agent_id: str) -> Path:
        """The agent's pid-file, named by its id."""
        return self.run_dir / f"{agent_id}.pid"

    def socket_path(self, agent_id: str) -> Path:
        """The running agent's control socket."""
        return self.run_dir / f"{agent_id}.sock"

    def token_path(self, agent_id: str) -> Path:
        """The running agent's control token (0600)."""
        return self.run_dir / f"{agent_id}.token"

    def log_path(self, agent_id: str) -> Path:
        """Where a detached agent's output goes."""
        return self.run_dir / f"{agent_id}.log"

    def older_format_path(self, agent_id: str, data_format: int) -> Path:
        """Where the agent's file as it was in ``data_format`` of its family
        is kept once it has been upgraded."""
        return self.dir / f"{agent_id}.format{data_format}.json"

    def uninstalled_path(self, agent_id: str) -> Path:
        """The note an uninstall leaves: where the agent went, at which step."""
        return self.dir / f"{agent_id}.uninstalled"

    def ended_path(self, agent_id: str) -> Path:
        """The note of how the agent's last run ended."""
        return self.dir / f"{agent_id}.ended"

    def note_ended(self, agent_id: str, record: dict[str, Any]) -> None:
        """Keep how the agent's run ended (the pid-file that said so goes
        with the lock); a store that cannot take it costs the note only."""
        try:
            self._write(self.ended_path(agent_id), [json.dumps(record).encode()])
        except HeraError:
            pass

    def last_run(self, agent_id: str) -> dict[str, Any] | None:
        """How the agent's last run ended, as :meth:`note_ended` kept it."""
        return self._read_note(self.ended_path(agent_id))

    def _read_note(self, path: Path) -> dict[str, Any] | None:
        """A small JSON object the store keeps beside an agent, or ``None``."""
        try:
            with self.acting():
                fd = open_regular(path, os.O_RDONLY)
                with os.fdopen(fd, "rb") as note:
                    record = json.loads(note.read(4096))
        except (OSError, HeraError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def remember_uninstall(self, meta: dict[str, Any], where: Path) -> None:
        """Note that the agent of ``meta`` left the store for ``where``, so that
        an earlier copy (its build file) is not quietly installed in its place."""
        note = {"steps": meta["steps"], "incarnation": meta["incarnation"],
                "path": str(Path(where).absolute())}
        self._write(self.uninstalled_path(meta["id"]), [json.dumps(note).encode()])

    def uninstall_record(self, agent_id: str) -> dict[str, Any] | None:
        """The note of the agent's uninstall, if it was uninstalled from here."""
        record = self._read_note(self.uninstalled_path(agent_id))
        if not (isinstance(record, dict) and type(record.get("steps")) is int
                and type(record.get("incarnation")) is int):
            return None
        return record

    def forget_uninstall(self, agent_id: str) -> None:
        """Drop the uninstall note (the agent is installed again)."""
        try:
            with self.acting():
                os.unlink(self.uninstalled_path(agent_id))
        except OSError:
            pass

    def has(self, agent_id: str) -> bool:
        with self.acting():
            return self.path(agent_id).is_file()

    def acting(self) -> ContextManager[None]:
        """A context in which file operations on this store are done as its
        owner (root on another user's agents; see :mod:`hera.privilege`)."""
        return privilege.as_owner(self.owner)

    def prepare(self, directory: Path) -> Path:
        """Make ``directory`` (the store or its run dir) if it is missing."""
        if self.owner is not None:
            places.prepare_user_base(places.data_dir(self.scope), self.owner)
        with self.acting():
            return places.ensure_private_dir(directory, must_own=self.scope.kind == "user"
                                             and directory == self.run_dir)

    # -- listing and lookup --------------------------------------------------

    def headers(self) -> list[Header]:
        """Headers of all installed agents (unreadable files are skipped)."""
        found = []
        with self.acting():
            try:
                if not self.dir.is_dir():
                    return []
                paths = sorted(self.dir.glob("*.json"))
            except OSError as exc:
                raise HeraError(f"cannot list {self.dir}: {exc.strerror}") from None
            for path in paths:
                if _OLDER_FORMAT_NAME.search(path.name):
                    continue
                try:
                    found.append(read_header(path))
                except InstanceFileError as exc:
                    # Never hide a damaged agent: it may be someone's only copy.
                    print(f"hera: warning: skipping unreadable agent file: {exc.message}",
                          file=sys.stderr)
        return found

    def entries(self) -> list[AgentEntry]:
        """All installed agents with their running status."""
        return [self.entry(h) for h in self.headers()]

    def find(self, ident: str | None = None, callsign: str | None = None) -> Header:
        """The installed agent named by an id prefix or a callsign."""
        return identity.resolve(self.headers(), ident, callsign, where=self._where())

    def entry(self, header: Header) -> AgentEntry:
        """The installed agent of ``header`` with its running status."""
        pid_path = self.pid_path(header.id)
        holder = read_holder(pid_path, self.owner)
        stale = read_stale(pid_path, self.owner) if holder is None else None
        ended = self.last_run(header.id) if holder is None else None
        return AgentEntry(header, self.scope, holder, stale, ended)

    def holder(self, agent_id: str) -> Holder | None:
        """Who holds the agent's pid-file now, if anyone."""
        return read_holder(self.pid_path(agent_id), self.owner)

    def _where(self) -> str:
        return "among installed agents" if self.scope.kind == "user" else \
            f"among agents installed for {self.scope.label}"

    # -- locking -------------------------------------------------------------

    def lock(self, agent_id: str, op: str) -> PidLock:
        """Take the agent's pid-file lock for ``op`` or raise
        :class:`AgentRunningError`; temp files of a dead writer are removed."""
        self.prepare(self.run_dir)
        self.sweep_stale_locks()
        lock = PidLock(self.pid_path(agent_id), self.owner)
        if not lock.acquire():
            holder = self.holder(agent_id)
            doing = holder.info.get("op") if holder else None
            pid = f"pid {holder.pid}" if holder and holder.pid else "pid unknown"
            if doing in UP_OPS:
                raise AgentRunningError(f"agent {agent_id} is running ({pid}); down it first")
            raise AgentRunningError(f"agent {agent_id} is busy: another hera command "
                                    f"({doing or 'starting'}, {pid}) holds it; try again")
        try:
            lock.record(op=op)
            with self.acting():
                atomic.remove_leftovers(self.path(agent_id))
        except OSError as exc:
            lock.release()
            raise HeraError(f"cannot take the lock of agent {agent_id} in {self.run_dir}: "
                            f"{exc.strerror}") from None
        except BaseException:
            lock.release()
            raise
        return lock

    def sweep_stale_locks(self) -> list[str]:
        """Remove the pid-files (with socket and token) that processes
        killed before their agent was installed left behind; return their
        ids. Those of installed agents stay: they tell that a run was killed
        (see :attr:`AgentEntry.killed`), and the agent's next lock reuses them."""
        swept = []
        with self.acting():
            try:
                names = [p.name for p in self.run_dir.glob("*.pid")]
            except OSError:
                return swept
            for name in names:
                agent_id = name[:-len(".pid")]
                if not identity.is_canonical_id(agent_id) or self.path(agent_id).exists():
                    continue
                pid_path = self.pid_path(agent_id)
                try:
                    fd = open_regular(pid_path, os.O_RDWR)
                except (OSError, HeraError):
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    if os.stat(pid_path).st_ino != os.fstat(fd).st_ino:
                        continue  # replaced meanwhile: not the file we hold
                    for path in (self.socket_path(agent_id), self.token_path(agent_id),
                                 pid_path):
                        try:
                            path.unlink()
                        except FileNotFoundError:
                            pass
                    swept.append(agent_id)
                except OSError:
                    continue  # held (a live process) or gone
                finally:
                    os.close(fd)
        return swept

    # -- writing (callers hold the agent's lock) -----------------------------

    def save(self, instance: InstanceFile) -> Path:
        """Write the agent's file atomically."""
        path = self.path(instance.id)
        self._write(path, instance.chunks())
        return path

    def keep_older_format(self, agent_id: str, data_format: int) -> Path:
        """Copy the agent's file, written in ``data_format`` of its family, to
        :meth:`older_format_path` byte for byte before the first save over
        it. Written once, atomically: a copy that exists is never replaced."""
        kept = self.older_format_path(agent_id, data_format)
        with self.acting():
            if kept.exists():
                return kept
            atomic.remove_leftovers(kept)
            try:
                original = open(self.path(agent_id), "rb")
            except OSError as exc:
                raise HeraError(f"cannot read {self.path(agent_id)}: {exc.strerror}") from None
        with original:  # copied a piece at a time: a big agent's file needn't fit in memory
            self._write(kept, iter(functools.partial(original.read, _COPY_PIECE), b""))
        return kept

    def _write(self, path: Path, chunks: Iterable[bytes]) -> None:
        """Write ``path`` in the store atomically, as the scope's owner; a
        failure is one line."""
        self.prepare(self.dir)
        try:
            with self.acting():
                atomic.write_atomically(path, chunks)
        except PermissionError:
            raise HeraError(f"cannot write {path}: permission denied") from None
        except OSError as exc:
            raise HeraError(f"cannot write {path}: {exc.strerror}") from None

    def header(self, agent_id: str) -> Header:
        """The metadata of the agent's file, read without its tensors."""
        with self.acting():
            return read_header(self.path(agent_id))

    def load(self, agent_id: str) -> InstanceFile:
        """Read and check the agent's file."""
        with self.acting():
            return InstanceFile.read(self.path(agent_id))

    def remove(self, agent_id: str) -> None:
        """Delete the agent's file durably; a failure is one line and
        leaves the agent installed."""
        path = self.path(agent_id)
        try:
            with self.acting():
                os.unlink(path)
                atomic.fsync_directory(path.parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise HeraError(f"cannot remove {path}: {exc.strerror}") from None
        try:  # the note of its last run goes with it
            with self.acting():
                os.unlink(self.ended_path(agent_id))
        except OSError:
            pass
