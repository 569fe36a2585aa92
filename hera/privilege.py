"""Root touching another user's files: do it as that user.

When root acts on the agents of ``--user NAME``, every directory below that
user's data directory is the user's to change: a symlink planted there
could turn root's pid-file write, log append or ``chown`` into a write to
any file on the host. OpenSSH's rule for a privileged process reading
users' files is to take on the user's identity for the access
(``temporarily_use_uid``); :func:`as_owner` does that here, so the kernel
checks each open, rename and unlink as the user would be checked, and a
planted link can only reach what the user could reach anyway. Files are
then created owned by the user without a separate ``chown``, which is
itself a link-following call.

The switch is of the effective ids only (the real and saved ids stay 0), so
root takes its identity back afterwards. It is process-wide: call it around
short file operations, not around work that other threads do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_PR_SET_DUMPABLE = 4
_lock = threading.RLock()
_depth = 0


@contextmanager
def as_owner(owner: tuple[int, int] | None) -> Iterator[None]:
    """Run the body with effective uid and gid ``owner`` (root only).

    :param owner: ``(uid, gid)`` of the user whose files are touched, or
        ``None`` (and for a process that is not root): no change.
    """
    global _depth
    # The real uid stays 0 while the effective one is switched, so this test
    # cannot be fooled by another thread's switch in progress.
    if owner is None or os.getuid() != 0:
        yield
        return
    with _lock:
        if _depth:  # already that user: nested calls change nothing
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        uid, gid = owner
        _prctl()  # looked up as root, before it is needed
        groups, egid = os.getgroups(), os.getegid()
        try:
            os.setgroups([gid])
            os.setegid(gid)
            os.seteuid(uid)
        except OSError:
            _restore(groups, egid)
            raise
        _depth = 1
        try:
            yield
        finally:
            _depth = 0
            _restore(groups, egid)


def _restore(groups: list[int], egid: int) -> None:
    """Take root's identity back."""
    os.seteuid(0)
    os.setegid(egid)
    os.setgroups(groups)
    _dumpable_again()


def _dumpable_again() -> None:
    """A change of effective uid clears the process's dumpable flag: that
    would stop SIGQUIT's core dump and close ``/proc/self/fd`` to it (which
    long socket paths go through). Set it back."""
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)


@functools.lru_cache(maxsize=1)
def _prctl() -> Any:
    """libc's ``prctl``, looked up once (``None`` where there is none)."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:  # pragma: no cover - no libc (not Linux)
        return None
    try:
        return ctypes.CDLL(libc_name, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return None
