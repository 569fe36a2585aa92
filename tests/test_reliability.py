"""Faults that must never lose an agent or end in a traceback: failed
saves, exhausted descriptors, races, bad names and values. Each runs the
real ``hera`` command."""

from __future__ import annotations

import os
import resource
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from hera.control import with_socket_path
from hera.instance import InstanceFile


def _one_line_error(proc) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hera: error: "), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    return lines[0]


def _up_running(world, *extra, preexec_fn=None):
    agent_id, path = world.build()
    world.run("up", path.name, "--steps", "20")
    proc = world.popen("--uuid", agent_id, "up", "--checkpoint", "0", *extra,
                       preexec_fn=preexec_fn)
    world.wait_for(agent_id, "running", proc)
    return agent_id, world.agents_dir / f"{agent_id}.json", proc


def _stop(proc) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def _limit_file_size() -> None:
    # Bigger than a pid-file record, smaller than the agent's file: the save
    # fails with EFBIG, as on a full disk, while the agent runs on.
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))


def test_down_reports_a_failed_save_and_says_where_the_state_went(world):
    agent_id, cached, proc = _up_running(world, preexec_fn=_limit_file_size)
    before = cached.read_bytes()
    try:
        down = world.run("down", check=False)
        line = _one_line_error(down)
        assert "was not saved to the cache" in line
        assert proc.wait(timeout=30) != 0
    finally:
        _stop(proc)
    assert cached.read_bytes() == before  # the last good save stays
    assert world.row(agent_id)["steps"] == 20


def test_an_agent_out_of_descriptors_still_saves_and_is_still_reachable(world):
    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    agent_id, cached, proc = _up_running(world, preexec_fn=few_descriptors)
    sock_path = world.runtime / f"{agent_id}.sock"
    clients = []
    try:
        for _ in range(80):  # more than the agent has descriptors for
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with_socket_path(sock_path, client.connect)  # however deep tmp lies
            clients.append(client)
        time.sleep(0.5)
        for client in clients:
            client.close()
        clients.clear()
        time.sleep(0.5)
        status = world.run("signal", "SIGINT")  # over pid; then the channel must answer:
        assert status.returncode == 0
        assert world.wait_for(agent_id, "standby", proc)["status"] == "standby"
        for _ in range(80):  # exhausted again, and then asked to save
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with_socket_path(sock_path, client.connect)  # however deep tmp lies
            clients.append(client)
        down = world.run("down")
        assert "down" in down.stdout
        assert proc.wait(timeout=30) == 0
    finally:
        for client in clients:
            client.close()
        _stop(proc)
    assert InstanceFile.read(cached).steps > 20


def test_up_installs_only_what_its_family_could_load(world):
    agent_id, path = world.build()
    world.env["HERA_ABRAXAS_BACKEND"] = "fortran"
    refused = world.run("up", path.name, "--steps", "1", check=False)
    assert "fortran" in _one_line_error(refused)
    assert world.agents() == []
    del world.env["HERA_ABRAXAS_BACKEND"]
    world.run("up", path.name, "--steps", "1")
    assert world.row(agent_id)["steps"] == 1


def test_two_builds_to_one_file_never_overwrite_each_other(world):
    def build(_):
        return world.run("--family", "abraxas", "--layout", "example", "build", "same.json",
                         check=False)

    # One round here; benchmarks/reliability.py runs many.
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(build, range(4)))
    built = [r for r in results if r.returncode == 0]
    assert len(built) == 1, [r.stdout + r.stderr for r in results]
    winner = built[0].stdout.split()[1]
    assert InstanceFile.read(world.workdir / "same.json").id == winner
    for loser in results:
        if loser.returncode:
            assert "exists" in _one_line_error(loser)


def test_data_directories_are_private_whatever_the_umask(world):
    world.env["HERA_DATA_DIR"] = str(world.root / "deep" / "er" / "data")
    _, path = world.build()
    old = os.umask(0)
    try:
        world.run("install", path.name)
    finally:
        os.umask(old)
    for directory in (world.root / "deep", world.root / "deep" / "er",
                      world.root / "deep" / "er" / "data", world.root / "deep" / "er" / "data" / "agents"):
        assert directory.stat().st_mode & 0o777 == 0o700, directory


def test_a_user_name_cannot_step_out_of_the_users_directory(world):
    _, path = world.build()
    for name in ("../..", "a/b", "..", "x/../../etc"):
        refused = world.run("install", "--user", name, path.name, check=False)
        assert "user name" in _one_line_error(refused)
    assert not (world.root / "users").exists()


def test_a_busy_agent_names_the_process_that_holds_it(world):
    agent_id, cached, proc = _up_running(world)
    try:
        refused = world.run("--uuid", agent_id, "destroy", "--yes", check=False)
        assert f"pid {proc.pid}" in _one_line_error(refused)
    finally:
        _stop(proc)


def test_pid_files_of_agents_killed_before_their_install_are_swept(world):
    agent_id, path = world.build()
    proc = world.popen("up", path.name, "--silent")
    pid_file = world.runtime / f"{agent_id}.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if world.agents():  # it got as far as installing: not this case
        return
    assert pid_file.exists()
    _, other = world.build()
    world.run("up", other.name, "--steps", "1")
    assert not pid_file.exists()


def test_bad_values_in_configuration_and_options_are_one_line(world):
    (world.home / ".herarc").write_text("[options]\ncheckpoint = inf\n")
    world.env["HERA_RC"] = str(world.home / ".herarc")
    assert "finite" in _one_line_error(world.run("build", check=False))
    (world.home / ".herarc").write_text("[definition]\nwidth = nan\n")
    assert "not finite" in _one_line_error(world.run("build", check=False))
    (world.home / ".herarc").unlink()
    (world.workdir / "hera.json").write_text('{"options":' * 100_000 + "1" + "}" * 100_000)
    assert "hera.json" in _one_line_error(world.run("build", check=False))
    (world.workdir / "hera.json").unlink()
    assert "finite" in _one_line_error(world.run("build", "--set", "width=NaN", check=False))
    too_big = world.run("build", "--set", "width=100000000", check=False)
    assert "not enough memory" in _one_line_error(too_big)
    long_name = "x" * 300 + ".json"
    _one_line_error(world.run("build", long_name, check=False))
    _one_line_error(world.run("up", long_name, check=False))
    _one_line_error(world.run("install", long_name, check=False))


def test_uninstall_to_a_missing_directory_writes_no_file(world):
    agent_id, path = world.build()
    world.run("install", path.name)
    refused = world.run("--uuid", agent_id, "uninstall", "--output", "sub/", check=False)
    assert "no such directory" in _one_line_error(refused)
    assert not (world.workdir / "sub").exists()
    assert world.row(agent_id)["status"] == "dead"


def test_an_older_copy_never_quietly_replaces_the_agent(world):
    agent_id, built = world.build("agent.json")
    world.run("up", built.name, "--steps", "30")
    world.run("--uuid", agent_id, "uninstall")
    moved = world.workdir / f"{agent_id}.json"
    assert InstanceFile.read(moved).steps == 30
    refused = world.run("up", built.name, "--steps", "1", check=False)  # the step-0 build
    assert "uninstalled at step 30" in _one_line_error(refused)
    assert world.agents() == []
    world.run("up", moved.name, "--steps", "5")  # the uninstalled copy goes back in
    assert world.row(agent_id)["steps"] == 35
    world.run("up", built.name, "--steps", "5")  # the build file stands for the agent
    assert world.row(agent_id)["steps"] == 40

    # A copy that ran elsewhere holds a state the installed one never had.
    world.run("--uuid", agent_id, "uninstall", "--output", "elsewhere.json")
    world.run("up", "elsewhere.json", "--steps", "100")
    world.run("--uuid", agent_id, "uninstall", "--output", "far.json")
    world.run("up", "elsewhere.json", "--steps", "1", "--keep", "file")  # 141 = 40 + 100 + 1
    refused = world.run("up", "far.json", "--steps", "1", check=False)
    assert "they differ" in _one_line_error(refused)
    assert world.row(agent_id)["steps"] == 41
    world.env["HERA_ABRAXAS_BACKEND"] = "fortran"  # a file that cannot load replaces nothing
    refused = world.run("up", "far.json", "--steps", "1", "--keep", "file", check=False)
    assert "fortran" in _one_line_error(refused)
    assert world.row(agent_id)["steps"] == 41
    assert not (world.workdir / f"{agent_id}.step41.json").exists()
    del world.env["HERA_ABRAXAS_BACKEND"]
    world.run("up", "far.json", "--steps", "1", "--keep", "file")
    assert world.row(agent_id)["steps"] == 141
    kept = world.workdir / f"{agent_id}.step41.json"
    assert InstanceFile.read(kept).steps == 41


def test_a_daemon_whose_runtime_dir_is_full_is_one_line_and_leaves_nothing_running(world):
    import subprocess
    import sys

    def tiny_files() -> None:  # what a full runtime dir does to the pid-file's record
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))

    agent_id, path = world.build()
    world.run("install", path.name)
    proc = subprocess.run([sys.executable, "-m", "hera", "--uuid", agent_id, "up", "--daemon"],
                          cwd=world.workdir, env=world.env, capture_output=True, text=True,
                          timeout=120, preexec_fn=tiny_files)
    assert "cut short" in _one_line_error(proc)
    assert world.row(agent_id)["status"] == "dead" and world.row(agent_id)["pid"] is None


def _in_read_only_store(world, *args: str):
    """Run hera with the store's directory mounted read-only (a mount
    namespace of its own), or ``None`` where this host cannot do that."""
    import shlex
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None or os.geteuid() != 0:
        return None
    store = shlex.quote(str(world.agents_dir))
    hera = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "hera", *args))
    script = (f"mount --bind {store} {store} && mount -o remount,ro,bind {store} {store} "
              f"|| exit 99; exec {hera}")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=world.workdir,
                          env=world.env, capture_output=True, text=True, timeout=120)
    return None if proc.returncode == 99 else proc


def test_a_read_only_store_at_destroy_and_uninstall_is_one_line(world):
    import pytest

    agent_id, path = world.build()
    world.run("up", path.name, "--steps", "5")
    cached = world.agents_dir / f"{agent_id}.json"
    before = cached.read_bytes()
    for args in (("--uuid", agent_id, "destroy", "--yes"),
                 ("--uuid", agent_id, "uninstall", "--output", "out.json")):
        proc = _in_read_only_store(world, *args)
        if proc is None:
            pytest.skip("needs root and unshare to mount the store read-only")
        assert "Read-only file system" in _one_line_error(proc)
        assert cached.read_bytes() == before
    assert world.row(agent_id)["steps"] == 5
