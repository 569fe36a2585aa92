"""Root acting on other users' agents, and users acting on each other.

These need root and two unprivileged users, which they create (CI runs as
root); elsewhere they skip and say why. Their world lies in a directory the
users can reach, as a real users directory would."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

USERS = ("hera-test-a", "hera-test-b")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("runuser") is None,
    reason="needs root, useradd and runuser to act as two other users")


@pytest.fixture(scope="module")
def users():
    made = []
    for name in USERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                           check=True, capture_output=True)
            made.append(name)
    yield USERS
    for name in made:
        subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture
def shared_world(users, reachable_world):
    return reachable_world


def as_user(name: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", name, "--", *command], capture_output=True, text=True)


def _victim(world, name: str) -> Path:
    secret = world.root / "secret"
    secret.mkdir(mode=0o700, exist_ok=True)
    victim = secret / name
    victim.write_text("precious\n")
    victim.chmod(0o600)
    return victim


def _unchanged(victim: Path) -> None:
    info = victim.stat()
    assert victim.read_text() == "precious\n"
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o600)


def test_root_follows_no_link_a_user_plants_in_its_run_dir(shared_world):
    world, user = shared_world, USERS[0]
    agent_id, path = world.build()
    world.run("install", "--user", user, path.name)
    run_dir = world.root / "users" / user / "run"
    assert run_dir.stat().st_uid == pwd.getpwnam(user).pw_uid
    pid_victim, log_victim = _victim(world, "pid-victim"), _victim(world, "log-victim")
    assert as_user(user, "ln", "-s", str(pid_victim), str(run_dir / f"{agent_id}.pid")).returncode == 0
    assert as_user(user, "ln", "-s", str(log_victim), str(run_dir / f"{agent_id}.log")).returncode == 0

    refused = world.run("--uuid", agent_id, "up", "--user", user, "--daemon", check=False)
    assert refused.returncode == 1 and "hera: error:" in refused.stderr
    _unchanged(pid_victim)
    (run_dir / f"{agent_id}.pid").unlink()
    refused = world.run("--uuid", agent_id, "up", "--user", user, "--daemon", check=False)
    assert refused.returncode == 1 and "symbolic link" in refused.stderr
    _unchanged(log_victim)

    (run_dir / f"{agent_id}.log").unlink()
    world.run("--uuid", agent_id, "up", "--user", user, "--daemon")
    try:
        uid = pwd.getpwnam(user).pw_uid
        for made in run_dir.iterdir():  # made by the user's identity, not chowned after
            assert made.lstat().st_uid == uid, made
    finally:
        down = world.run("--uuid", agent_id, "down", "--user", user, check=False)
    assert down.returncode == 0, down.stderr
    [row] = world.agents("--user", user)
    assert row["status"] == "down" and row["steps"] > 0
    _unchanged(pid_victim)
    _unchanged(log_victim)


def test_no_user_can_hide_another_users_agents(shared_world):
    world = shared_world
    _, first = world.build()
    _, second = world.build()
    world.run("install", "--user", USERS[0], first.name)
    world.run("install", "--user", USERS[1], second.name)
    users_dir = world.root / "users"
    info = users_dir.stat()
    assert info.st_uid == 0 and info.st_mode & 0o777 == 0o711
    for name in USERS:
        mine = (users_dir / name).stat()
        assert mine.st_uid == pwd.getpwnam(name).pw_uid and mine.st_mode & 0o077 == 0
    moved = as_user(USERS[0], "mv", str(users_dir / USERS[1]), str(users_dir / "gone"))
    assert moved.returncode != 0
    assert len(world.agents("--user", USERS[1])) == 1


def test_a_users_directory_that_someone_else_controls_is_refused(shared_world):
    world = shared_world
    users_dir = world.root / "users"
    users_dir.mkdir()
    os.chown(users_dir, pwd.getpwnam(USERS[0]).pw_uid, -1)  # as an older hera left it
    _, path = world.build()
    refused = world.run("install", "--user", USERS[1], path.name, check=False)
    assert refused.returncode == 1 and "refusing" in refused.stderr
    assert not (users_dir / USERS[1]).exists()


def test_another_user_cannot_point_our_runtime_dir_at_a_directory_of_ours(shared_world):
    world = shared_world
    ours = world.root / "ours"
    ours.mkdir(mode=0o700)
    world.runtime.symlink_to(ours)  # what /tmp/hera-<uid> -> a 0700 dir of ours would be
    agent_id, path = world.build()
    refused = world.run("up", path.name, "--steps", "1", check=False)
    assert refused.returncode == 1 and "symbolic link" in refused.stderr
    assert not list(ours.iterdir())
