"""``hera inspect`` and ``hera logs`` through the command, on real agents,
files and daemons."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hera.commands.logs import _start_of_last_lines
from hera.instance import InstanceFile


def _inspect(world, *args: str) -> dict:
    return json.loads(world.run("inspect", *args, "--json").stdout)


def test_inspect_shows_a_built_file_that_is_not_installed(world):
    agent_id, path = world.build("--set", "initial_weight=0.25")
    shown = _inspect(world, path.name)
    assert shown["meta"]["id"] == agent_id and shown["status"] == "not installed"
    assert shown["definition"]["initial_weight"] == 0.25 and shown["state"] is None
    inputs = shown["tensors"]["input_weights"]
    assert inputs["dtype"] == "float32" and inputs["shape"] == [16, 54]
    assert inputs["min"] == inputs["max"] == inputs["mean"] == 0.25
    assert inputs["nonzero"] == 16 * 54
    assert shown["tensors"]["weights"]["nonzero"] == 0
    text = world.run("inspect", path.name).stdout
    assert re.search(r"status\s+not installed", text) and "never run" in text
    assert re.search(r"input_weights\s+float32\s+16x54\s+0\.25\s+0\.25\s+0\.25\s+864", text)
    assert not world.agents(), "inspect installs nothing"


def test_inspect_gives_the_statistics_of_every_saved_tensor(world):
    agent_id, path = world.build()
    world.run("up", path.name, "--steps", "300")
    shown = _inspect(world, "--uuid", agent_id[:6])
    assert shown["status"] == "down" and shown["meta"]["steps"] == 300
    assert shown["state"]["values"]["t"] == 300
    saved = InstanceFile.read(Path(shown["path"]))
    tensors = {**saved.tensors(), **saved.state().tensors}
    summaries = {**shown["tensors"], **shown["state"]["tensors"]}
    assert set(summaries) == set(tensors)
    for name, tensor in tensors.items():
        s, wide = summaries[name], tensor.double()
        assert s["shape"] == list(tensor.shape) and s["nonzero"] == int(tensor.count_nonzero())
        assert s["min"] == wide.min().item() and s["max"] == wide.max().item()
        assert s["mean"] == pytest.approx(wide.mean().item())
    assert summaries["weights"]["nonzero"] > 0, "300 steps learn something"


@pytest.mark.parametrize("args, message", [
    (("--uuid", "ffffffff"), "ffffffff"),
    (("missing.json",), "no such file"),
    (("garbage.json",), "garbage.json"),
])
def test_inspect_of_what_is_not_an_agent_is_one_line(world, args, message):
    (world.workdir / "garbage.json").write_text('{"format": "hera-instance", "meta": 3}')
    proc = world.run("inspect", *args, check=False)
    assert proc.returncode != 0 and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_logs_shows_and_follows_a_daemons_log_until_it_is_down(world):
    agent_id, path = world.build()
    never = world.run("logs", path.name, check=False)
    assert never.returncode == 1 and "is not installed" in never.stderr
    world.run("up", path.name, "--steps", "10")  # a foreground run writes no log
    foreground = world.run("logs", "--uuid", agent_id, check=False)
    assert foreground.returncode == 1 and "has no log" in foreground.stderr
    started = world.run("up", "--uuid", agent_id, "--daemon", "--steps", "100000000")
    pid = world.row(agent_id)["pid"]
    try:
        shown = world.run("logs").stdout  # the one running agent
        assert f"up {agent_id}" in shown and "daemon" in shown, shown
        assert world.run("logs", "-n", "1").stdout.count("\n") == 1
        follower = world.popen("logs", "--follow", "--uuid", agent_id)
        world.run("down", "--uuid", agent_id)
        out, err = follower.communicate(timeout=30)
        assert follower.returncode == 0, err
        assert out.startswith(shown) and f"down {agent_id}" in out
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    log = Path(re.search(r"log (\S+)", started.stdout).group(1))
    log.unlink()
    log.symlink_to(path.absolute())
    refused = world.run("logs", "--uuid", agent_id, check=False)
    assert refused.returncode == 1 and "symbolic link" in refused.stderr


def test_inspect_reads_an_agent_that_is_up_as_last_saved(world):
    agent_id, path = world.build()
    world.run("up", path.name, "--steps", "200")
    world.run("up", "--uuid", agent_id, "--daemon", "--steps", "100000000")
    pid = world.row(agent_id)["pid"]
    try:
        shown = _inspect(world, "--uuid", agent_id)
        assert shown["status"] == "running" and shown["meta"]["steps"] == 200
        assert shown["state"]["values"]["t"] == 200
    finally:
        world.run("down", "--uuid", agent_id, check=False)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


_LINE = st.binary(max_size=9).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))


@given(st.lists(_LINE, max_size=12), st.booleans(), st.integers(1, 15), st.integers(1, 6))
def test_tail_starts_where_the_last_lines_begin(lines, ending, count, block):
    """Read back a block at a time, whatever the block size, ``-n N`` gives
    what splitting the whole log into lines would."""
    import io

    data = b"\n".join(lines) + (b"\n" if ending and lines else b"")
    start = _start_of_last_lines(io.BytesIO(data), count, block)
    assert data[start:] == b"".join(data.splitlines(keepends=True)[-count:])


def test_a_daemon_logs_its_progress_by_time(world):
    agent_id, path = world.build()
    world.run("up", path.name, "--daemon", "--steps", "100000000", "--log-every", "0.3")
    try:
        deadline = time.monotonic() + 30
        while True:
            lines = [ln for ln in world.run("logs", "--uuid", agent_id).stdout.splitlines()
                     if " · " in ln]
            if len(lines) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        steps = []
        for ln in lines:
            found = re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:]+\+00:00 step ([\d,]+) of 100,000,000 · "
                                 r"[\d.]+[kM]? steps/s · [\d.]+[kM]? spikes/s · .+ left", ln)
            assert found, ln
            steps.append(int(found.group(1).replace(",", "")))
        assert len(steps) >= 3 and steps == sorted(steps) and steps[0] < steps[-1]
    finally:
        world.run("down", "--uuid", agent_id)
