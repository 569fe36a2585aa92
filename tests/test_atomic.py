"""Crash-safe replacement: the target holds the old bytes or the new ones,
is private, durable, and no temp file outlives its writer."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hera import atomic
from hera.atomic import remove_leftovers, write_atomically


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_creates_the_target(tmp_path):
    target = tmp_path / "agent.json"
    write_atomically(target, [b"first ", b"", b"second"])
    assert target.read_bytes() == b"first second"
    assert listing(tmp_path) == ["agent.json"]


def test_replaces_content(tmp_path):
    target = tmp_path / "agent.json"
    target.write_bytes(b"old content that is longer than the new one")
    write_atomically(target, iter([b"new"]))
    assert target.read_bytes() == b"new"
    assert listing(tmp_path) == ["agent.json"]


def test_replaces_by_rename_not_in_place(tmp_path):
    """A reader holding the old file open keeps reading the old bytes."""
    target = tmp_path / "agent.json"
    target.write_bytes(b"old")
    with open(target, "rb") as reader:
        write_atomically(target, [b"new"])
        assert reader.read() == b"old"
    assert target.read_bytes() == b"new"


def test_large_content_in_many_chunks(tmp_path):
    target = tmp_path / "agent.json"
    chunks = [bytes([i]) * 300_000 for i in range(10)]  # more than the 1 MiB buffer
    write_atomically(target, (c for c in chunks))
    assert target.read_bytes() == b"".join(chunks)


def test_empty_content(tmp_path):
    target = tmp_path / "agent.json"
    target.write_bytes(b"old")
    write_atomically(target, [])
    assert target.read_bytes() == b""


@pytest.mark.parametrize("before", [None, 0o644, 0o666])
def test_file_mode_is_private(tmp_path, before):
    target = tmp_path / "agent.json"
    if before is not None:
        target.write_bytes(b"old")
        target.chmod(before)
    old_umask = os.umask(0)  # even a permissive umask must not widen it
    try:
        write_atomically(target, [b"data"])
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_fsyncs_the_file_then_its_directory(tmp_path, monkeypatch):
    target = tmp_path / "agent.json"
    target.write_bytes(b"old")
    content = b"x" * 5000
    calls = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        info = os.fstat(fd)
        calls.append({
            "is_dir": stat.S_ISDIR(info.st_mode),
            "inode": info.st_ino,
            "size": info.st_size,
            "target_content": target.read_bytes(),
        })
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_atomically(target, [content[:1000], content[1000:]])

    assert len(calls) == 2
    file_call, dir_call = calls
    # The file: fsynced with all its bytes, before it replaced the target.
    assert not file_call["is_dir"]
    assert file_call["inode"] == target.stat().st_ino
    assert file_call["size"] == len(content)
    assert file_call["target_content"] == b"old"
    # Then the directory, after the rename, so the rename is durable.
    assert dir_call["is_dir"]
    assert dir_call["inode"] == tmp_path.stat().st_ino
    assert dir_call["target_content"] == content


def test_fsync_directory_syncs_that_directory(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.fstat(fd).st_ino))
    atomic.fsync_directory(tmp_path)
    assert synced == [tmp_path.stat().st_ino]


class Boom(Exception):
    pass


def _failing_chunks(size: int, error: BaseException):
    yield b"n" * size
    yield b"e" * size
    raise error


@pytest.mark.parametrize("error", [Boom("disk on fire"), KeyboardInterrupt()],
                         ids=["exception", "interrupt"])
@pytest.mark.parametrize("size", [10, 3_000_000], ids=["buffered", "partly-written"])
def test_failure_mid_write_keeps_the_old_file(tmp_path, error, size):
    target = tmp_path / "agent.json"
    target.write_bytes(b"old content")
    inode = target.stat().st_ino
    with pytest.raises(type(error)):
        write_atomically(target, _failing_chunks(size, error))
    assert target.read_bytes() == b"old content"
    assert target.stat().st_ino == inode
    assert listing(tmp_path) == ["agent.json"]


def test_failure_mid_write_creates_no_target(tmp_path):
    target = tmp_path / "agent.json"
    with pytest.raises(Boom):
        write_atomically(target, _failing_chunks(2_000_000, Boom()))
    assert listing(tmp_path) == []


def test_failed_fsync_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "agent.json"
    target.write_bytes(b"old")

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        write_atomically(target, [b"new"])
    assert target.read_bytes() == b"old"
    assert listing(tmp_path) == ["agent.json"]


def test_missing_directory_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "absent" / "agent.json", [b"x"])
    assert listing(tmp_path) == []


def test_temp_names_are_hidden_fresh_and_beside_the_target(tmp_path):
    target = tmp_path / "agent.json"
    names = {atomic.temp_name(target) for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert name.parent == tmp_path
        assert name.name.startswith(".agent.json.")
        assert name.name.endswith(atomic.TEMP_SUFFIX)


def test_remove_leftovers_removes_only_this_targets_temp_files(tmp_path):
    target = tmp_path / "agent.json"
    target.write_bytes(b"keep")
    mine = [atomic.temp_name(target) for _ in range(3)]
    others = [
        atomic.temp_name(tmp_path / "other.json"),
        atomic.temp_name(tmp_path / "agent.json.bak"),  # a target whose name extends ours
        atomic.temp_name(tmp_path / "xagent.json"),
        tmp_path / "agent.json.tmp",
        tmp_path / f"{atomic.temp_name(target).name}.keep",
        tmp_path / atomic.temp_name(target).name[1:],  # not hidden: not ours
    ]
    for path in mine + others:
        path.write_bytes(b"leftover")

    removed = remove_leftovers(target)

    assert sorted(removed) == sorted(mine)
    assert listing(tmp_path) == sorted(["agent.json", *(p.name for p in others)])
    assert remove_leftovers(target) == []


def test_remove_leftovers_of_a_name_with_glob_characters(tmp_path):
    target = tmp_path / "agent[1]*.json"
    tmp = atomic.temp_name(target)
    tmp.write_bytes(b"leftover")
    unrelated = atomic.temp_name(tmp_path / "agent1x.json")
    unrelated.write_bytes(b"other writer")
    assert remove_leftovers(target) == [tmp]
    assert listing(tmp_path) == [unrelated.name]


def test_remove_leftovers_cleans_up_after_a_writer_that_died(tmp_path, monkeypatch):
    """A writer killed between creating its temp file and the rename leaves
    the temp file; remove_leftovers finds exactly that one."""
    target = tmp_path / "agent.json"
    target.write_bytes(b"old")

    def die(src, dst):
        raise SystemExit("killed")  # the temp file is still there when this runs

    monkeypatch.setattr(os, "replace", die)
    monkeypatch.setattr(os, "unlink", lambda path: None)  # a dead writer cleans nothing up
    with pytest.raises(SystemExit):
        write_atomically(target, [b"new"])
    monkeypatch.undo()
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].read_bytes() == b"new"
    assert remove_leftovers(target) == leftovers
    assert listing(tmp_path) == ["agent.json"]
    assert target.read_bytes() == b"old"


def test_remove_leftovers_in_a_missing_directory(tmp_path):
    assert remove_leftovers(tmp_path / "absent" / "agent.json") == []
