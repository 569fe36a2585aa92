"""pid-files as locks: one holder at a time across processes, a SIGKILLed
holder's file is recognised as stale, and a recorded pid is only believed
together with its process start time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hera
from hera import pidfile
from hera.pidfile import Holder, PidLock, process_start_time, read_holder

REPO = Path(hera.__file__).resolve().parents[1]

# Holds the lock until its stdin closes, or is killed; says what it did on stdout.
HOLDER = """
import sys
from hera.pidfile import PidLock
lock = PidLock(sys.argv[1])
if not lock.acquire():
    print("busy", flush=True)
    sys.exit(3)
lock.record(op=sys.argv[2])
print("locked", flush=True)
sys.stdin.read()
lock.release()
print("released", flush=True)
"""

# Tries once and reports.
TRY_ACQUIRE = """
import sys
from hera.pidfile import PidLock
lock = PidLock(sys.argv[1])
print("acquired" if lock.acquire() else "busy", flush=True)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture
def spawn():
    """Start holder processes; kill whatever is left of them afterwards."""
    started: list[subprocess.Popen] = []

    def start(path: Path, op: str = "up") -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), op],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env=_env())
        started.append(proc)
        line = proc.stdout.readline().strip()
        assert line == "locked", f"holder said {line!r}"
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            stream.close()


def try_in_other_process(path: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", TRY_ACQUIRE, str(path)], capture_output=True,
                          text=True, env=_env(), timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def quick_patience(monkeypatch):
    """An acquirer facing an unverifiable holder retries for a while; keep
    that short here."""
    monkeypatch.setattr(pidfile, "_ACQUIRE_PATIENCE_S", 0.2)


# -- in one process ------------------------------------------------------------------


def test_acquire_record_release(tmp_path):
    path = tmp_path / "agent.pid"
    lock = PidLock(path)
    assert not lock.held
    assert read_holder(path) is None

    assert lock.acquire()
    assert lock.held and path.exists()
    assert stat_mode(path) == 0o600
    lock.record(op="build", note="x")
    record = json.loads(path.read_text())
    assert record == {"pid": os.getpid(), "started": process_start_time(os.getpid()),
                      "op": "build", "note": "x"}

    holder = read_holder(path)
    assert holder == Holder(os.getpid(), process_start_time(os.getpid()),
                            {"op": "build", "note": "x"})
    assert holder.verified

    lock.release()
    assert not lock.held and not path.exists()
    assert read_holder(path) is None
    lock.release()  # twice is harmless



def test_record_again_replaces_the_record(tmp_path):
    path = tmp_path / "agent.pid"
    with PidLock(path) as lock:
        assert lock.acquire()
        lock.record(op="a-rather-long-operation-name")
        lock.record(op="up")
        assert read_holder(path).info == {"op": "up"}
    assert not path.exists()


def test_context_manager_releases(tmp_path):
    path = tmp_path / "agent.pid"
    with PidLock(path) as lock:
        assert lock.acquire()
    assert not lock.held and not path.exists()
    assert PidLock(path).acquire()


def test_second_lock_in_the_same_process_is_refused_at_once(tmp_path):
    path = tmp_path / "agent.pid"
    first = PidLock(path)
    assert first.acquire()
    first.record(op="up")
    began = time.monotonic()
    assert not PidLock(path).acquire()
    assert time.monotonic() - began < pidfile._ACQUIRE_PATIENCE_S / 2  # verified: no waiting
    first.release()
    assert PidLock(path).acquire()


def test_record_needs_the_lock(tmp_path):
    with pytest.raises(AssertionError):
        PidLock(tmp_path / "agent.pid").record(op="up")


# -- across processes ------------------------------------------------------------------


def test_other_process_cannot_acquire_while_we_hold_it(tmp_path):
    path = tmp_path / "agent.pid"
    lock = PidLock(path)
    assert lock.acquire()
    lock.record(op="up")
    assert try_in_other_process(path) == "busy"
    lock.release()
    assert try_in_other_process(path) == "acquired"


def test_holder_in_other_process(tmp_path, spawn):
    path = tmp_path / "agent.pid"
    proc = spawn(path, op="up")

    assert not PidLock(path).acquire()
    assert try_in_other_process(path) == "busy"
    holder = read_holder(path)
    assert holder.pid == proc.pid
    assert holder.started == process_start_time(proc.pid)
    assert holder.info == {"op": "up"}
    assert holder.verified

    proc.stdin.close()  # let it release
    assert proc.stdout.readline().strip() == "released"
    assert proc.wait(timeout=30) == 0
    assert read_holder(path) is None
    lock = PidLock(path)
    assert lock.acquire()
    lock.release()


def test_sigkilled_holder_leaves_a_stale_file(tmp_path, spawn):
    path = tmp_path / "agent.pid"
    proc = spawn(path, op="up")
    assert read_holder(path).pid == proc.pid

    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    assert path.exists()  # the file outlives its holder...
    assert json.loads(path.read_text())["pid"] == proc.pid
    assert read_holder(path) is None  # ...but nobody holds it
    lock = PidLock(path)
    assert lock.acquire()
    lock.record(op="down")
    holder = read_holder(path)
    assert (holder.pid, holder.info, holder.verified) == (os.getpid(), {"op": "down"}, True)
    lock.release()


def test_holder_with_matching_start_time_is_verified():
    me = os.getpid()
    assert Holder(me, process_start_time(me)).verified


@pytest.mark.parametrize("offset", [1.0, -1.0, 0.05, 3600.0])
def test_holder_with_another_start_time_is_not_verified(offset):
    me = os.getpid()
    assert not Holder(me, process_start_time(me) + offset).verified


def test_holder_without_pid_or_start_or_process_is_not_verified():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_start_time(proc.pid)
    proc.wait()
    assert process_start_time(proc.pid) is None
    assert not Holder(proc.pid, started).verified
    assert not Holder(None, process_start_time(os.getpid())).verified
    assert not Holder(os.getpid(), None).verified


def test_held_file_recording_another_start_time_is_not_verified(tmp_path, spawn,
                                                                quick_patience):
    """As if the pid had been reused: the recorded pid lives, but it is not
    the process that wrote the file."""
    path = tmp_path / "agent.pid"
    proc = spawn(path)
    real = process_start_time(proc.pid)
    path.write_text(json.dumps({"pid": proc.pid, "started": real - 1000, "op": "up"}))

    holder = read_holder(path)
    assert holder is not None  # the lock is held
    assert (holder.pid, holder.started) == (proc.pid, real - 1000)
    assert not holder.verified
    # Held all the same: an acquirer waits out its patience, then gives up.
    began = time.monotonic()
    assert not PidLock(path).acquire()
    assert time.monotonic() - began >= 0.2


def test_held_file_with_garbage_is_held_but_unverified(tmp_path, spawn, quick_patience):
    path = tmp_path / "agent.pid"
    spawn(path)
    path.write_text("not json")
    holder = read_holder(path)
    assert holder == Holder(None, None, {})
    assert not holder.verified
    assert not PidLock(path).acquire()


def test_unlocked_file_naming_a_live_process_is_stale(tmp_path):
    """Liveness is the lock's, never the pid's: a file nobody locks is
    stale even if the pid it names (ours) is alive."""
    path = tmp_path / "agent.pid"
    me = os.getpid()
    path.write_text(json.dumps({"pid": me, "started": process_start_time(me), "op": "up"}))
    assert read_holder(path) is None
    lock = PidLock(path)
    assert lock.acquire()
    lock.release()
