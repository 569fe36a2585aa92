"""Crash-safe file replacement: temp file, fsync, rename, fsync the directory.

A reader sees the old file or the new one, never a mix, whatever moment the
writer dies at. Temp files are named ``.<target name>.<random>.tmp`` beside
the target so :func:`remove_leftovers` can find those of a writer that died.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def temp_name(target: Path) -> Path:
    """A fresh temp path in the target's directory."""
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def write_atomically(target: Path, chunks: Iterable[bytes], mode: int = 0o600) -> None:
    """Replace ``target`` by the concatenation of ``chunks``, durably."""
    target = Path(target)
    tmp = temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_directory(target.parent)


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
    removed = []
    for tmp in target.parent.glob(f".{target.name}.*{TEMP_SUFFIX}"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed
