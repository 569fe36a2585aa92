"""The seed's signal table, each signal through a real ``hera up`` process
(foreground unless it says daemon). A pipe, not a terminal, is attached, so
job-control signals must never hang the agent."""

from __future__ import annotations

import resource
import signal
import subprocess
import time

from hera.instance import InstanceFile, read_header


def _steps(world, agent_id: str) -> int:
    return world.row(agent_id)["steps"]


def _allow_small_cores() -> None:
    # A truncated core (1 MiB) proves the dump without writing the whole process.
    resource.setrlimit(resource.RLIMIT_CORE, (1 << 20, 1 << 20))


def _up(world, *extra: str, stdin=None, core_limit=False):
    """Build, run 20 steps (so a saved state exists), then start a
    continuous up; return the id, its cached file and the process."""
    agent_id, path = world.build()
    world.run("up", path.name, "--steps", "20")
    proc = world.popen("--uuid", agent_id, "up", *extra, stdin=stdin,
                       preexec_fn=_allow_small_cores if core_limit else None)
    world.wait_for(agent_id, "running", proc)
    return agent_id, world.agents_dir / f"{agent_id}.json", proc


def _finish(proc, sig=signal.SIGTERM, timeout=60) -> int:
    try:
        if proc.poll() is None:
            proc.send_signal(sig)
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigint_is_standby_and_sigcont_resumes(world):
    agent_id, cached, proc = _up(world)
    proc.send_signal(signal.SIGINT)
    world.wait_for(agent_id, "standby", proc)
    first = _steps(world, agent_id)
    time.sleep(0.5)
    assert _steps(world, agent_id) == first, "a standby agent must not step"
    world.run("--uuid", agent_id, "signal", "SIGCONT")
    world.wait_for(agent_id, "running", proc)
    time.sleep(0.3)
    assert _steps(world, agent_id) > first
    assert _finish(proc) == 0
    assert read_header(cached).meta["steps"] > first


def test_a_second_sigint_saves_and_stops_only_within_two_seconds(world):
    agent_id, cached, proc = _up(world)
    proc.send_signal(signal.SIGINT)
    world.wait_for(agent_id, "standby", proc)
    time.sleep(2.3)
    proc.send_signal(signal.SIGINT)  # too late to count as the second: still standby
    time.sleep(0.5)
    assert proc.poll() is None and world.row(agent_id)["status"] == "standby"
    proc.send_signal(signal.SIGINT)  # within 2 s of the one before: saves and stops
    assert proc.wait(timeout=60) == 0
    assert "Ctrl-C twice: saving at step" in proc.stdout.read()
    assert world.row(agent_id)["status"] == "down"
    assert InstanceFile.read(cached).steps == _steps(world, agent_id) > 20


def test_sigterm_saves_and_a_second_one_does_not_save_twice(world):
    agent_id, cached, proc = _up(world)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    out = proc.stdout.read()
    assert out.count("down ") == 1
    assert InstanceFile.read(cached).steps > 20


def _core_files(world) -> list:
    return sorted(p.name for p in world.workdir.iterdir() if p.name.startswith("core"))


def _cores_land_in_the_working_dir() -> bool:
    """Whether this kernel writes plain core files into the process's
    working directory (not to a crash handler such as systemd-coredump)."""
    try:
        with open("/proc/sys/kernel/core_pattern") as pattern:
            return pattern.read().strip().startswith("core")
    except OSError:
        return False


def test_sigquit_saves_then_dumps_core(world):
    agent_id, cached, proc = _up(world, core_limit=True)
    time.sleep(0.2)
    assert _finish(proc, signal.SIGQUIT) == -signal.SIGQUIT
    if _cores_land_in_the_working_dir():
        assert _core_files(world), "SIGQUIT must leave a core dump when the core limit allows"
    saved = InstanceFile.read(cached)
    assert saved.steps > 20 and saved.meta["incarnation"] == 2
    assert not (world.runtime / f"{agent_id}.pid").exists()
    assert not (world.runtime / f"{agent_id}.sock").exists()


def test_sigabrt_dumps_core_without_saving(world):
    agent_id, cached, proc = _up(world, "--checkpoint", "0", core_limit=True)
    before = cached.read_bytes()
    time.sleep(0.2)
    assert _finish(proc, signal.SIGABRT) == -signal.SIGABRT
    if _cores_land_in_the_working_dir():
        assert _core_files(world)
    assert cached.read_bytes() == before
    assert world.row(agent_id)["status"] == "down"


def test_signal_sigkill_kills_without_saving(world):
    agent_id, cached, proc = _up(world, "--checkpoint", "0")
    before = cached.read_bytes()
    out = world.run("signal", "KILL").stdout  # one agent up: no identifier needed
    assert "SIGKILL" in out
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert cached.read_bytes() == before
    world.run("--uuid", agent_id, "up", "--steps", "5")
    assert _steps(world, agent_id) == 25


def test_sighup_moves_output_to_the_log_at_once(world):
    agent_id, cached, proc = _up(world)
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert _finish(proc) == 0
    out = proc.stdout.read()
    assert "down " not in out, "after SIGHUP nothing may go to the old stdout"
    log = (world.runtime / f"{agent_id}.log").read_text()
    assert f"down {agent_id}" in log


def test_sigtstp_without_a_terminal_is_ignored(world):
    agent_id, cached, proc = _up(world)
    proc.send_signal(signal.SIGTSTP)
    time.sleep(0.5)
    assert world.row(agent_id)["status"] == "running"
    first = _steps(world, agent_id)
    time.sleep(0.3)
    assert _steps(world, agent_id) > first
    assert _finish(proc) == 0


def test_signal_sigstop_pauses_through_the_control_channel(world):
    agent_id, cached, proc = _up(world)
    world.run("--uuid", agent_id, "signal", "SIGSTOP", "--no-attach")
    world.wait_for(agent_id, "paused", proc)
    first = _steps(world, agent_id)
    time.sleep(0.4)
    assert _steps(world, agent_id) == first
    world.run("--uuid", agent_id, "signal", "cont")
    world.wait_for(agent_id, "running", proc)
    assert _finish(proc) == 0


def test_sigttou_pipes_the_output_area_to_stdout(world):
    agent_id, cached, proc = _up(world, "--silent", "--output-every", "25")
    proc.send_signal(signal.SIGTTOU)
    time.sleep(1.5)
    assert _finish(proc) == 0
    lines = proc.stdout.read().splitlines()
    assert len(lines) >= 2
    counts = [[int(x) for x in line.split()] for line in lines]
    assert all(len(c) == 54 for c in counts)  # the example layout's output area


def test_a_stdout_nobody_reads_holds_up_neither_steps_nor_shutdown(world):
    """SIGTTOU with a line every step into a pipe that is never read: the
    pipe fills, the agent drops lines and runs on, and SIGTERM still saves."""
    agent_id, cached, proc = _up(world, "--silent", "--output-every", "1")
    proc.send_signal(signal.SIGTTOU)
    time.sleep(2.0)
    before = world.row(agent_id)["steps"]
    time.sleep(1.0)
    assert world.row(agent_id)["steps"] > before, "the agent stopped stepping"
    assert _finish(proc, timeout=30) == 0
    assert InstanceFile.read(cached).steps > before


def test_sigttin_pipes_stdin_into_the_input_area(world):
    agent_id, cached, proc = _up(world, "--silent", stdin=subprocess.PIPE)
    proc.send_signal(signal.SIGTTIN)
    time.sleep(0.3)
    proc.stdin.write("1 1 1 1\n")
    proc.stdin.flush()
    time.sleep(0.5)
    assert _finish(proc) == 0
    rates = InstanceFile.read(cached).state().tensors["input_rates"].tolist()
    assert rates[:4] == [0.5] * 4 and rates[4] < 0.5


def test_unknown_signal_is_a_usage_error(world):
    proc = world.run("signal", "SIGFOO", check=False)
    assert proc.returncode == 2 and "unknown signal" in proc.stderr


def test_signal_to_an_agent_that_is_not_running(world):
    agent_id, path = world.build()
    world.run("install", path.name)
    proc = world.run("--uuid", agent_id, "signal", "TERM", check=False)
    assert proc.returncode == 1 and "not running" in proc.stderr


def test_signals_outside_the_table_never_lose_the_run(world):
    agent_id, cached, proc = _up(world, "--checkpoint", "0")
    try:
        for sig in (signal.SIGUSR2, signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF):
            proc.send_signal(sig)
        time.sleep(0.5)
        assert proc.poll() is None, "an ignored signal ended the agent"
        before = InstanceFile.read(cached).steps
        proc.send_signal(signal.SIGUSR1)  # a checkpoint: saved, and it runs on
        deadline = time.monotonic() + 30
        while InstanceFile.read(cached).steps == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert InstanceFile.read(cached).steps > before
        assert proc.poll() is None
        assert world.row(agent_id)["status"] == "running"
    finally:
        code = _finish(proc, signal.SIGPWR)  # power failing: save and stop
    assert code == 0
    assert world.row(agent_id)["status"] == "down"


def test_after_sigkill_the_agent_shows_that_steps_were_lost(world):
    agent_id, cached, proc = _up(world, "--checkpoint", "0")
    time.sleep(0.3)
    out = world.run("signal", "SIGKILL").stdout
    assert "killed without saving" in out and "step 20" in out and "steps lost" in out
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert world.row(agent_id)["status"] == "killed"
    assert world.row(agent_id)["steps"] == 20
    world.run("--uuid", agent_id, "up", "--steps", "5")  # a clean run clears it
    assert world.row(agent_id)["status"] == "down"
