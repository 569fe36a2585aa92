"""Crash-safe file replacement: temp file, fsync, rename, fsync the directory.

A reader sees the old file or the new one, never a mix, whatever moment the
writer dies at. Temp files are named ``.<target name>.<random>.tmp`` beside
the target so :func:`remove_leftovers` can find those of a writer that died.
"""

from __future__ import annotations

import glob
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

TEMP_SUFFIX = ".tmp"
_TOKEN_BYTES = 6

# Small chunks are gathered up to this size before they are written.
_GATHER = 1 << 20

# Every this many bytes written, the kernel is asked to start writing them
# out and to drop them from its cache once written: the final fsync then has
# little left to wait for, and a large file does not crowd memory out.
_WRITEBACK = 64 << 20


def temp_name(target: Path) -> Path:
    """A fresh temp path in the target's directory."""
    return target.with_name(f".{target.name}.{secrets.token_hex(_TOKEN_BYTES)}{TEMP_SUFFIX}")


def write_atomically(target: Path, chunks: Iterable[bytes], mode: int = 0o600,
                     exclusive: bool = False) -> None:
    """Replace ``target`` by the concatenation of ``chunks``, durably.

    :param exclusive: never replace: if ``target`` exists (even if another
        writer made it a moment ago), raise :class:`FileExistsError` and
        leave it as it is.
    """
    target = Path(target)
    tmp = temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            _write_all(out.fileno(), chunks)
            os.fsync(out.fileno())
        if exclusive:  # link fails if the name exists: of two racing writers, one wins
            os.link(tmp, target)
            os.unlink(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_directory(target.parent)


def _write_all(fd: int, chunks: Iterable[bytes]) -> None:
    """Write every chunk to ``fd``, gathering small ones, starting
    write-back as it goes."""
    gathered = bytearray()
    written = started = 0
    for chunk in chunks:
        if len(gathered) + len(chunk) <= _GATHER:
            gathered += chunk
            continue
        written += _write_fully(fd, gathered) + _write_fully(fd, chunk)
        gathered = bytearray()
        if written - started >= _WRITEBACK:
            _start_writeback(fd, started, written - started)
            started = written
    _write_fully(fd, gathered)


def _write_fully(fd: int, data: bytes | bytearray) -> int:
    """Write all of ``data`` (``os.write`` may take part of it); its length."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    if hasattr(os, "posix_fadvise"):  # Linux starts write-back of dirty pages for DONTNEED
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_leftovers(target: Path) -> list[Path]:
    """Remove temp files a dead writer of ``target`` left behind.

    Call it only while holding whatever lock serialises writers of
    ``target``; otherwise a live writer's temp file could be removed.
    """
    target = Path(target)
    # Exactly our token, so that the temp files of "agent.json.bak" (or of a
    # name with glob characters) are never taken for those of "agent.json".
    token = "[0-9a-f]" * (2 * _TOKEN_BYTES)
    removed = []
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.{token}{TEMP_SUFFIX}"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed
