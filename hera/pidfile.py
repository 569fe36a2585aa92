"""pid-files that are also locks: whoever holds the flock owns the agent.

A running agent holds ``<runtime>/<id>.pid`` locked for its whole life and
writes its pid and process start time into it. Liveness is decided by the
lock, never by the pid alone: a file left by a process killed with SIGKILL
is unlocked and so recognised as stale, and the recorded start time keeps a
reused pid from ever being signalled.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hera import privilege
from hera.errors import HeraError

# A reader's shared lock lasts microseconds; an acquirer that meets one
# retries for this long before it believes the agent is held.
_ACQUIRE_PATIENCE_S = 1.0


def process_start_time(pid: int) -> float | None:
    """The start time of process ``pid``, or ``None`` if there is none."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


@dataclass(frozen=True)
class Holder:
    """Who holds a pid-file, as it recorded itself."""

    pid: int | None
    started: float | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        """The recorded process exists and is the one that wrote the file."""
        if self.pid is None or self.started is None:
            return False
        actual = process_start_time(self.pid)
        return actual is not None and abs(actual - self.started) < 0.01


class PidLock:
    """An exclusive, non-blocking lock on a pid-file."""

    def __init__(self, path: Path, owner: tuple[int, int] | None = None):
        self.path = Path(path)
        #: whose directory it lies in (root running another user's agent)
        self.owner = owner
        self._fd: int | None = None
        self._started: float | None = None
        self._last = b""  # the record last written whole

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock; ``False`` if another process holds it."""
        deadline = time.monotonic() + _ACQUIRE_PATIENCE_S
        while True:
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, self.owner)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = read_holder(self.path, self.owner)
                if holder is not None and holder.verified or time.monotonic() > deadline:
                    return False
                time.sleep(0.02)
                continue
            # The file may have been unlinked by its previous holder between
            # our open and our lock: then we locked an orphan. Try again.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)

    def record(self, **info: Any) -> None:
        """Write this process's pid, start time and ``info`` into the file."""
        assert self._fd is not None, "record() needs the lock"
        pid = os.getpid()
        if self._started is None:  # looked up once: record() runs at every state change
            self._started = process_start_time(pid)
        payload = {**info, "pid": pid, "started": self._started}
        data = json.dumps(payload).encode()
        # Write, then cut: a reader never sees an empty file (it may see the
        # old record's tail after the new one; read_holder takes the first
        # JSON value only).
        written = os.pwrite(self._fd, data, 0)
        if written < len(data):  # a full disk or a file-size limit: keep the old record whole
            if self._last:
                os.pwrite(self._fd, self._last, 0)
                os.ftruncate(self._fd, len(self._last))
            raise OSError(errno.EFBIG, f"the pid-file record was cut short ({written} of "
                          f"{len(data)} bytes written)", str(self.path))
        os.ftruncate(self._fd, len(data))
        self._last = data

    def release(self) -> None:
        """Remove the pid-file and drop the lock."""
        if self._fd is None:
            return
        try:
            with privilege.as_owner(self.owner):
                os.unlink(self.path)
        except OSError:  # gone, or a read-only directory: the lock ends all the same
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "PidLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def open_regular(path: Path, flags: int, owner: tuple[int, int] | None = None,
                 mode: int = 0o600) -> int:
    """Open a file of hera's own (a pid-file, a log) without following a
    symbolic link, as ``owner`` (see :mod:`hera.privilege`), and refuse
    anything but a regular file; errors are one line."""
    try:
        with privilege.as_owner(owner):
            fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise HeraError(f"{path} is a symbolic link; refusing to follow it") from None
        if isinstance(exc, FileNotFoundError):
            raise
        raise HeraError(f"cannot open {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise HeraError(f"{path} is not a regular file; refusing to use it")
    os.set_blocking(fd, True)
    return fd


def read_holder(path: Path, owner: tuple[int, int] | None = None) -> Holder | None:
    """The live holder of a pid-file, or ``None`` if nobody holds it (no
    file, or a stale one)."""
    record = read_record(path, owner, live=True)
    if record is None:
        return None
    pid = record.pop("pid", None)
    started = record.pop("started", None)
    return Holder(pid if isinstance(pid, int) else None,
                  started if isinstance(started, (int, float)) else None, record)


def read_stale(path: Path, owner: tuple[int, int] | None = None) -> dict[str, Any] | None:
    """The record of a pid-file that nobody holds: what a process killed
    without cleaning up (SIGKILL, a crash) last wrote; ``None`` if there is
    no such file or it is held."""
    return read_record(path, owner, live=False)


def read_record(path: Path, owner: tuple[int, int] | None, live: bool) -> dict[str, Any] | None:
    """The JSON record of a pid-file if it is held (``live``) or not."""
    try:
        fd = open_regular(path, os.O_RDONLY, owner)
    except (FileNotFoundError, HeraError):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held = True
        except OSError as exc:  # pragma: no cover - e.g. NFS without locks
            if exc.errno not in (errno.ENOLCK, errno.EINVAL):
                raise
            held = True  # cannot tell: believe the record
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            held = False
        if held != live:
            return None
        return record_at(fd)
    finally:
        os.close(fd)


def record_at(fd: int) -> dict[str, Any]:
    """The JSON record in the pid-file open as ``fd`` (``{}`` if unreadable)."""
    raw = os.pread(fd, 4096, 0)
    try:  # the first JSON value: a record being rewritten may trail the old one's tail
        record = json.JSONDecoder().raw_decode(raw.decode())[0] if raw else {}
    except (ValueError, UnicodeDecodeError):
        record = {}
    return record if isinstance(record, dict) else {}
