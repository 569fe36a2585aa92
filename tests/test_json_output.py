"""``--json`` on build, up (foreground and daemon) and down: one JSON
object on stdout and nothing else, agreeing with what the store says; and
``agents`` with an up agent's uptime and steps per second."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest


def _json(world, *args: str) -> dict:
    proc = world.run(*args, "--json")
    return json.loads(proc.stdout)  # the whole of stdout is the one object


def test_build_up_daemon_and_down_report_in_json(world):
    built = _json(world, "--family", "abraxas", "--layout", "example", "build", "a.json")
    assert built["family"] == "abraxas" and built["layout"] == "example"
    assert Path(built["path"]) == (world.workdir / "a.json").absolute()
    ran = _json(world, "up", "a.json", "--steps", "700")
    assert ran["id"] == built["id"] and ran["steps"] == ran["steps_this_run"] == 700
    assert ran["reason"] == "steps done" and ran["seconds"] > 0
    assert ran["steps_per_s"] == pytest.approx(700 / ran["seconds"], rel=1e-3)
    assert world.row(built["id"])["steps"] == 700 and Path(ran["path"]).is_file()
    daemon = _json(world, "up", "--uuid", built["id"], "--daemon")
    try:
        time.sleep(1.0)
        row = world.row(built["id"])
        assert daemon["pid"] == row["pid"] and daemon["socket"] == row["control"]
        # agents: how long it has been up, and its mean speed since
        assert row["start_steps"] == 700 and row["uptime"] >= 1.0
        assert row["steps_per_s"] == pytest.approx((row["steps"] - 700) / row["uptime"], rel=0.5)
        assert row["steps_per_s"] > 0
        table = world.run("agents").stdout.splitlines()
        assert table[0].split()[-4:] == ["UPTIME", "STEPS/S", "LAST", "RUN"]
        assert table[1].split()[-3] != "-" and table[1].split()[-2] != "-"
        assert table[1].split()[-1] == "-" and row["last_run"] is None  # up: no last run yet
        assert Path(daemon["log"]).is_file()
        down = _json(world, "down")
        row = world.row(built["id"])
        assert down["id"] == built["id"] and down["steps"] == row["steps"] > 700
        assert row["uptime"] is None and row["steps_per_s"] is None
    finally:
        try:
            os.kill(daemon["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass


def _no_core() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _last_run_cell(world, agent_id: str) -> str:
    table = world.run("agents").stdout.splitlines()
    start = table[0].index("LAST RUN")
    [line] = [ln for ln in table[1:] if ln.startswith(agent_id[:8])]
    return line[start:].strip()


def test_agents_says_how_the_last_run_ended(world):
    agent_id, path = world.build()
    world.run("install", path.name)
    assert world.row(agent_id)["last_run"] is None and _last_run_cell(world, agent_id) == "-"
    world.run("--uuid", agent_id, "up", "--steps", "50")
    last = world.row(agent_id)["last_run"]
    assert (last["outcome"], last["reason"], last["steps_lost"], last["error"]) == \
        ("saved", "steps done", 0, None)
    assert last["ended"].endswith("+00:00") and _last_run_cell(world, agent_id) == "saved"

    for sig, outcome, cell in ((signal.SIGKILL, "killed", "killed, unsaved steps lost"),
                               (signal.SIGABRT, "not saved", "not saved, {} steps lost")):
        proc = world.popen("--uuid", agent_id, "up", preexec_fn=_no_core)
        world.wait_for(agent_id, "running", proc)
        deadline = time.monotonic() + 30
        while world.row(agent_id)["steps"] <= 50:  # it has stepped since its save
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        last = world.row(agent_id)["last_run"]
        assert last["outcome"] == outcome
        if sig == signal.SIGKILL:
            assert last["steps_lost"] is None and last["ended"] is None
        else:
            assert last["steps_lost"] > 0 and last["reason"] == "SIGABRT"
        assert _last_run_cell(world, agent_id) == cell.format(f"{last['steps_lost'] or 0:,}")

    world.run("--uuid", agent_id, "destroy", "--yes")
    assert not (world.agents_dir / f"{agent_id}.ended").exists()  # the note went with it


def test_json_is_refused_where_a_person_reads_the_output(world):
    _, path = world.build()
    for mode in ("--simulate", "--interactive"):
        proc = world.run("up", path.name, mode, "--json", check=False)
        assert proc.returncode == 2 and "--json" in proc.stderr and proc.stdout == ""
