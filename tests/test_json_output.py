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
        assert table[0].split()[-2:] == ["UPTIME", "STEPS/S"]
        assert table[1].split()[-2] != "-" and table[1].split()[-1] != "-"
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


def test_json_is_refused_where_a_person_reads_the_output(world):
    _, path = world.build()
    for mode in ("--simulate", "--interactive"):
        proc = world.run("up", path.name, mode, "--json", check=False)
        assert proc.returncode == 2 and "--json" in proc.stderr and proc.stdout == ""
