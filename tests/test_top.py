"""``hera top``: a live look at a running agent through its control
channel: steps/s, spikes/s and each population's rate, redrawn in place on
a terminal; one sample with --once (--json for scripts)."""

from __future__ import annotations

import json
import os
import signal
import sys

import pexpect


def _daemon(world) -> str:
    agent_id, path = world.build()
    world.run("up", path.name, "--daemon")
    return agent_id


def test_once_in_json_gives_rates_that_add_up(world):
    agent_id = _daemon(world)
    try:
        report = json.loads(world.run("top", "--once", "--json", "--interval", "0.3").stdout)
    finally:
        world.run("down", "--uuid", agent_id)
    assert report["id"] == agent_id and report["state"] == "running"
    assert [p["name"] for p in report["populations"]] == ["inputs", "layer 1", "layer 2"]
    assert report["steps_per_s"] > 0 and report["spikes_per_s"] > 0
    total = sum(p["spikes"] for p in report["populations"])
    assert abs(total / report["seconds"] - report["spikes_per_s"]) < 1e-6 * total
    steps = report["steps_per_s"] * report["seconds"]
    for p in report["populations"]:
        assert abs(p["rate"] - p["spikes"] / (p["size"] * steps)) < 1e-9
        assert 0 <= p["rate"] <= 1


def test_a_terminal_sees_the_table_redrawn_until_the_agent_goes_down(world):
    agent_id = _daemon(world)
    child = pexpect.spawn(sys.executable, ["-m", "hera", "top", "--interval", "0.2"],
                          cwd=str(world.workdir), env=world.env, encoding="utf-8", timeout=60,
                          dimensions=(40, 200))
    try:
        child.expect(r"running at step ([\d,]+) · [\d.]+[kM]? steps/s · [\d.]+[kM]? spikes/s")
        first = int(child.match.group(1).replace(",", ""))
        child.expect(r"layer 2 +\d+ +[\d,]+ +0\.\d{5}")
        # drawn over: up 5 lines (the head, the titles, three populations)
        child.expect(r"\x1b\[5Fagent \S+ \(\S+\) running at step ([\d,]+)")
        assert int(child.match.group(1).replace(",", "")) > first
        world.run("down", "--uuid", agent_id)
        child.expect(r"agent \S+ \(\S+\) is no longer up")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_ctrl_c_ends_it_quietly(world):
    agent_id = _daemon(world)
    try:
        # as from a terminal: Ctrl-C at its default, whatever this test
        # inherited (a shell's background job starts with SIGINT ignored)
        proc = world.popen("top", "--interval", "0.2",
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and err == ""
        assert world.row(agent_id)["status"] == "running"  # it only watched
    finally:
        world.run("down", "--uuid", agent_id)


def test_what_cannot_be_watched_is_one_line(world):
    agent_id, path = world.build()
    nothing = world.run("top", "--once", check=False)
    assert nothing.returncode == 1 and nothing.stderr == "hera: error: no agent is running\n"
    world.run("up", path.name, "--steps", "5")
    down = world.run("top", "--uuid", agent_id, "--once", check=False)
    assert down.returncode == 1 and down.stderr.strip().endswith("is not up")
    usage = world.run("top", "--json", check=False)
    assert usage.returncode == 2 and "--once" in usage.stderr
    assert not os.listdir(world.runtime) or all(
        not name.endswith(".pid") for name in os.listdir(world.runtime))
