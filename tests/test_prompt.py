"""The interactive prompt, driven through a real terminal (a pty): at once,
after N steps, on Ctrl-Z, at a breakpoint, and attached to a daemon by
'hera signal SIGSTOP'."""

from __future__ import annotations

import sys
import time

import pexpect
import pytest

from hera.instance import InstanceFile

PROMPT = ">>> "


def _spawn(world, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "hera", *args], cwd=str(world.workdir),
                          env=world.env, encoding="utf-8", timeout=60, dimensions=(40, 200))
    return child


def _say(child: pexpect.spawn, line: str, expect: str | None = None) -> str:
    child.sendline(line)
    if expect is not None:
        child.expect(expect)
    child.expect(PROMPT)
    return child.before


@pytest.fixture
def built(world):
    agent_id, path = world.build()
    return agent_id, path.name


def test_interactive_prompt_at_once_steps_and_resumes(world, built):
    agent_id, name = built
    child = _spawn(world, "up", name, "--interactive")
    try:
        child.expect("hera prompt")
        child.expect(PROMPT)
        assert "paused" in _say(child, "agent.status()['state']")
        assert "7" in _say(child, "agent.step(7)")
        out = _say(child, "sorted(agent.tensors())[:2]")
        assert "state." in out or "thresholds" in out
        _say(child, "agent.breakpoint(at=40)")
        child.sendeof()  # Ctrl-D: back to running, until the breakpoint
        child.expect("resuming at step 7")
        child.expect("breakpoint 1 hit at step 40")
        child.expect(PROMPT)
        assert "40" in _say(child, "agent.status()['step']")
        child.sendline("agent.down()")
        child.expect(f"down {agent_id}")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert InstanceFile.read(world.agents_dir / f"{agent_id}.json").steps == 40


def test_prompt_after_n_steps_and_ctrl_z_brings_it_back(world, built):
    agent_id, name = built
    child = _spawn(world, "up", name, "--interactive", "--prompt-after", "30")
    try:
        child.expect(r"paused at step 30\.")
        child.expect(PROMPT)
        child.sendeof()
        child.expect("resuming at step 30")
        child.sendcontrol("z")  # SIGTSTP from the terminal
        child.expect("hera prompt")
        child.expect(PROMPT)
        step = int(_say(child, "agent.status()['step']").split()[-1])
        assert step > 30
        child.sendline("agent.down()")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_ctrl_c_at_the_prompt_cancels_the_line_only(world, built):
    agent_id, name = built
    child = _spawn(world, "up", name, "--interactive")
    try:
        child.expect(PROMPT)
        child.send("agent.st")
        child.sendcontrol("c")
        child.expect("KeyboardInterrupt")
        child.expect(PROMPT)
        assert "3" in _say(child, "agent.step(3)")
        child.sendline("agent.down()")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_a_foreground_run_stops_at_a_breakpoint_with_a_prompt(world, built):
    agent_id, name = built
    child = _spawn(world, "up", name, "--break-when", "agent.step_count == 25")
    try:
        child.expect("breakpoint 1 hit at step 25")
        child.expect(PROMPT)
        _say(child, "agent.clear()")
        child.sendline("agent.down()")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert InstanceFile.read(world.agents_dir / f"{agent_id}.json").steps == 25


def test_signal_sigstop_attaches_a_terminal_to_a_daemon(world, built):
    agent_id, name = built
    world.run("up", name, "--daemon")
    child = _spawn(world, "--uuid", agent_id, "signal", "SIGSTOP")
    try:
        child.expect("attached to")
        child.expect(PROMPT)
        assert "paused" in _say(child, "agent.status()['state']")
        before = int(_say(child, "agent.status()['step']").split()[-1])
        after = int(_say(child, "agent.step(5)").split()[-1])
        assert after == before + 5
        child.sendeof()
        child.expect("runs on")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert world.row(agent_id)["status"] == "running", "detaching leaves the daemon running"
    world.run("--uuid", agent_id, "down")


def test_down_while_the_agent_sits_at_its_prompt(world, built):
    agent_id, name = built
    child = _spawn(world, "up", name, "--interactive")
    try:
        child.expect(PROMPT)
        _say(child, "agent.step(9)")
        world.run("--uuid", agent_id, "down", "--timeout", "30")
        child.expect(f"down {agent_id}")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert InstanceFile.read(world.agents_dir / f"{agent_id}.json").steps == 9


def test_ctrl_z_at_the_prompt_does_not_reopen_it(world, built):
    agent_id, name = built
    child = _spawn(world, "up", name, "--interactive")
    try:
        child.expect(PROMPT)
        child.sendcontrol("z")
        time.sleep(0.3)
        child.sendeof()
        child.expect("resuming at step 0")
        time.sleep(0.5)
        assert world.row(agent_id)["status"] == "running"
        child.sendcontrol("z")
        child.expect(PROMPT)
        child.sendline("agent.down()")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
