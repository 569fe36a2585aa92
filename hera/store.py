"""AgentStore: the installed agents of one scope (this user, the system,
another user) and their pid-files."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hera import atomic, identity, places
from hera.errors import AgentRunningError, HeraError, InstanceFileError
from hera.instance import Header, InstanceFile, read_header
from hera.pidfile import Holder, PidLock, read_holder


#: pid-file ops of an agent's own process: loading it, or running its loop.
UP_OPS = ("starting", "up")

#: Names of agent files kept in an older data format of their family (see
#: :meth:`AgentStore.keep_older_format`); they are not installed agents.
_OLDER_FORMAT_NAME = re.compile(r"\.format[0-9]+\.json$")


@dataclass(frozen=True)
class AgentEntry:
    """An installed agent as listed: its header and whether it runs."""

    header: Header
    scope: places.Scope
    holder: Holder | None

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

    def has(self, agent_id: str) -> bool:
        return self.path(agent_id).is_file()

    # -- listing and lookup --------------------------------------------------

    def headers(self) -> list[Header]:
        """Headers of all installed agents (unreadable files are skipped)."""
        if not self.dir.is_dir():
            return []
        found = []
        for path in sorted(self.dir.glob("*.json")):
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
        return [AgentEntry(h, self.scope, read_holder(self.pid_path(h.id))) for h in self.headers()]

    def find(self, ident: str | None = None, callsign: str | None = None) -> Header:
        """The installed agent named by an id prefix or a callsign."""
        return identity.resolve(self.headers(), ident, callsign, where=self._where())

    def entry(self, header: Header) -> AgentEntry:
        return AgentEntry(header, self.scope, read_holder(self.pid_path(header.id)))

    def _where(self) -> str:
        return "among installed agents" if self.scope.kind == "user" else \
            f"among agents installed for {self.scope.label}"

    # -- locking -------------------------------------------------------------

    def lock(self, agent_id: str, op: str) -> PidLock:
        """Take the agent's pid-file lock for ``op`` or raise
        :class:`AgentRunningError`; temp files of a dead writer are removed."""
        places.ensure_private_dir(self.run_dir, self.owner, must_own=self.scope.kind == "user")
        lock = PidLock(self.pid_path(agent_id))
        if not lock.acquire():
            holder = read_holder(lock.path)
            doing = (holder.info.get("op") if holder else None) or "busy"
            pid = f" (pid {holder.pid})" if holder and holder.pid else ""
            if doing in UP_OPS:
                raise AgentRunningError(f"agent {agent_id} is running{pid}; down it first")
            raise AgentRunningError(f"agent {agent_id} is busy: {doing}{pid}")
        try:
            lock.record(op=op)
            atomic.remove_leftovers(self.path(agent_id))
        except BaseException:
            lock.release()
            raise
        return lock

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
        if not kept.exists():
            atomic.remove_leftovers(kept)
            self._write(kept, [self.path(agent_id).read_bytes()])
        return kept

    def _write(self, path: Path, chunks: Iterable[bytes]) -> None:
        """Write ``path`` in the store atomically, owned by the scope's
        owner; a failure is one line."""
        places.ensure_private_dir(self.dir, self.owner)
        try:
            atomic.write_atomically(path, chunks)
            if self.owner is not None:
                os.chown(path, *self.owner)
        except PermissionError:
            raise HeraError(f"cannot write {path}: permission denied") from None
        except OSError as exc:
            raise HeraError(f"cannot write {path}: {exc.strerror}") from None

    def load(self, agent_id: str) -> InstanceFile:
        """Read and check the agent's file."""
        return InstanceFile.read(self.path(agent_id))

    def remove(self, agent_id: str) -> None:
        """Delete the agent's file durably."""
        path = self.path(agent_id)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except PermissionError:
            raise HeraError(f"cannot remove {path}: permission denied") from None
        atomic.fsync_directory(path.parent)
