"""Daemon mode, the owner-only control channel, the agent's I/O stream and
breakpoints, through real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from hera.control import ControlClient, with_socket_path
from hera.instance import InstanceFile


@pytest.fixture
def daemon(world):
    """A built agent upped with --daemon; downed (or killed) afterwards."""
    started = []

    def start(*extra: str):
        agent_id, path = world.build()
        proc = world.run("up", path.name, "--daemon", *extra)
        row = world.row(agent_id)
        started.append(row["pid"])
        return agent_id, row, proc

    yield start
    for pid in started:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _client(world, agent_id) -> ControlClient:
    return ControlClient(world.runtime / f"{agent_id}.sock", world.runtime / f"{agent_id}.token")


def _raw(world, agent_id, first: bytes) -> bytes:
    """Send a first frame and whatever follows; return all the agent answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    with_socket_path(world.runtime / f"{agent_id}.sock", sock.connect)
    sock.sendall(first + b'{"cmd":"down"}\n')
    answer = b""
    try:
        while chunk := sock.recv(4096):
            answer += chunk
    finally:
        sock.close()
    return answer


def test_daemon_returns_once_loaded_with_its_socket_bound(world, daemon):
    agent_id, row, proc = daemon()
    assert "as a daemon" in proc.stdout and str(row["pid"]) in proc.stdout
    assert row["status"] == "running" and row["mode"] == "daemon"
    sock = world.runtime / f"{agent_id}.sock"
    assert row["control"] == str(sock)
    assert oct(sock.stat().st_mode & 0o777) == oct(0o600)
    assert (world.runtime / f"{agent_id}.token").stat().st_mode & 0o077 == 0
    assert os.getsid(row["pid"]) != os.getsid(0), "a daemon has its own session"
    world.run("down")
    assert world.row(agent_id)["status"] == "down"
    assert not sock.exists() and not (world.runtime / f"{agent_id}.token").exists()
    log = (world.runtime / f"{agent_id}.log").read_text()
    assert f"up {agent_id}" in log and f"down {agent_id}" in log


def test_a_daemon_that_cannot_start_says_why(world):
    _, path = world.build()
    proc = world.run("up", path.name, "--daemon", "--device", "cuda:5", check=False)
    assert proc.returncode == 1 and "cuda:5" in proc.stderr
    assert world.agents() == []


def test_a_daemon_ignores_job_control_and_survives_hangup(world, daemon):
    agent_id, row, _ = daemon()
    for sig in (signal.SIGTSTP, signal.SIGHUP, signal.SIGTTOU):
        os.kill(row["pid"], sig)
    time.sleep(0.5)
    first = world.row(agent_id)
    time.sleep(0.4)
    again = world.row(agent_id)
    assert again["status"] == "running" and again["steps"] > first["steps"]
    world.run("--uuid", agent_id, "down")


def test_a_daemon_writing_its_output_still_answers_its_control_channel(world, daemon):
    """With its output piped (SIGTTOU) the agent emits a line every 100
    steps; the control channel must still answer every request in time
    (the compiled step once held the GIL through each chunk, and about half
    the requests timed out)."""
    agent_id, row, _ = daemon()
    os.kill(row["pid"], signal.SIGTTOU)
    time.sleep(0.3)
    steps = []
    for _ in range(12):  # within the 1 s `hera agents` gives a live agent
        with ControlClient(world.runtime / f"{agent_id}.sock",
                           world.runtime / f"{agent_id}.token", timeout=1.0) as client:
            steps.append(client.request("status")["status"]["step"])
        time.sleep(0.05)
    assert steps == sorted(steps) and steps[-1] > steps[0]
    world.run("--uuid", agent_id, "down")


@pytest.mark.parametrize("first", [
    b'{"hello":"hera"}\n',
    b'{"hello":"hera","token":"00"}\n',
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"not json at all\n",
], ids=["no-token", "wrong-token", "http", "garbage"])
def test_the_control_channel_refuses_before_any_command(world, daemon, first):
    agent_id, row, _ = daemon()
    assert _raw(world, agent_id, first) == b"", "a refused client gets no answer at all"
    time.sleep(0.3)
    assert world.row(agent_id)["status"] == "running", "the 'down' after it must not run"
    world.run("--uuid", agent_id, "down")


def test_another_user_is_refused_even_with_the_token(tmp_path_factory):
    """The peer-uid check, on a socket that a stranger can reach (as root,
    the test runs the stranger as 'nobody'; otherwise as itself, with the
    server told that another uid owns the agent)."""
    import tempfile
    from pathlib import Path

    from hera.control import ControlServer

    calls = []
    place = Path(tempfile.mkdtemp(prefix="hera-peer-"))
    place.chmod(0o755)
    stranger = os.geteuid() == 0
    server = ControlServer(place / "a.sock", place / "a.token", "agent",
                           lambda request: calls.append(request) or {"ok": True},
                           owner=None if stranger else (os.geteuid() + 1, os.getegid()))
    server.start()
    try:
        (place / "a.sock").chmod(0o666)
        token = (place / "a.token").read_text()
        code = ("import os, socket, sys\n"
                "if os.geteuid() == 0:\n    os.setgid(65534); os.setuid(65534)\n"
                "s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])\n"
                "try:\n"
                "    s.sendall(('{\"hello\":\"hera\",\"token\":\"%s\"}\\n{\"cmd\":\"down\"}\\n'"
                " % sys.argv[2]).encode())\n"
                "    print('answer', repr(s.recv(100)))\n"
                # The server may close before the client has finished writing.
                "except (ConnectionResetError, BrokenPipeError):\n    print('answer reset')\n")
        out = subprocess.run([sys.executable, "-c", code, str(place / "a.sock"), token],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() in ("answer b''", "answer reset"), out.stderr
        assert calls == []
    finally:
        server.close()
        import shutil
        shutil.rmtree(place, ignore_errors=True)


def test_control_commands(world, daemon):
    agent_id, row, _ = daemon("--break-at", "150")
    with _client(world, agent_id) as client:
        deadline = time.monotonic() + 30
        while client.request("status")["status"]["state"] != "paused":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status = client.request("status")["status"]
        assert status["step"] == 150 and status["last_breakpoint"]["at"] == 150
        assert world.row(agent_id)["status"] == "paused"
        assert client.request("step", steps=7)["step"] == 157
        bp = client.request("break", when="agent.step_count >= 200")["breakpoint"]
        client.request("continue")
        while client.request("status")["status"]["state"] != "paused":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.request("status")["status"]["step"] == 200
        assert client.request("clear", id=bp["id"])["cleared"] == 1
        tensors = client.request("tensors")["tensors"]
        assert tensors["weights"]["dtype"] == "float32" and "state.membrane" in tensors
        client.request("input", line="1 1 1 1")
        client.request("step", steps=3)
        assert len(client.request("output")["line"].split()) == 54
        client.request("save")
        assert InstanceFile.read(world.agents_dir / f"{agent_id}.json").steps == 203
        with pytest.raises(Exception, match="unknown command"):
            client.request("fly")
        client.request("down")
    deadline = time.monotonic() + 30
    while world.row(agent_id)["status"] != "down":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    saved = InstanceFile.read(world.agents_dir / f"{agent_id}.json")
    assert saved.steps == 203
    assert saved.state().tensors["input_rates"].tolist()[:4] == [0.5] * 4


def test_the_io_stream(world, daemon):
    agent_id, row, _ = daemon("--output-every", "20")
    token = (world.runtime / f"{agent_id}.token").read_text()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    with_socket_path(world.runtime / f"{agent_id}.sock", sock.connect)
    stream = sock.makefile("rwb")
    stream.write(json.dumps({"hello": "hera", "token": token}).encode() + b"\n")
    stream.write(b'{"cmd":"io"}\n')
    stream.flush()
    assert json.loads(stream.readline())["ok"]
    assert json.loads(stream.readline())["ok"]
    stream.write(b"1 1 1 1 1 1 1 1\n")
    stream.flush()
    lines = [stream.readline().decode() for _ in range(3)]
    sock.close()
    assert all(len(line.split()) == 54 for line in lines)
    world.run("--uuid", agent_id, "down")
    rates = InstanceFile.read(world.agents_dir / f"{agent_id}.json").state().tensors["input_rates"]
    assert rates.tolist()[:8] == [0.5] * 8


def test_agents_shows_live_status(world, daemon):
    agent_id, row, _ = daemon()
    table = world.run("agents").stdout
    assert "daemon" in table and "running" in table
    world.run("--uuid", agent_id, "signal", "INT")
    deadline = time.monotonic() + 20
    while world.row(agent_id)["status"] != "standby":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    world.run("--uuid", agent_id, "signal", "CONT")
    while world.row(agent_id)["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    world.run("--uuid", agent_id, "down")


def test_a_control_socket_deeper_than_a_socket_address_allows(tmp_path):
    from hera.control import ControlServer

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    server = ControlServer(deep / "agent.sock", deep / "agent.token", "agent",
                           lambda request: {"ok": True, "echo": request["cmd"]})
    server.start()
    try:
        assert len(str(deep / "agent.sock")) > 108
        with ControlClient(deep / "agent.sock", deep / "agent.token") as client:
            assert client.request("hello-there")["echo"] == "hello-there"
    finally:
        server.close()
    assert not (deep / "agent.sock").exists()


def test_bad_control_requests_never_hurt_the_agent(world, daemon):
    agent_id, row, _ = daemon()
    with _client(world, agent_id) as client:
        for bad in ({"at": "5"}, {"every": 0}, {"when": "agent.(("}, {"at": True}):
            with pytest.raises(Exception, match="breakpoint"):
                client.request("break", **bad)
        client.request("break", when="agent.no_such_thing > 1")
        deadline = time.monotonic() + 20
        while client.request("status")["status"]["state"] != "paused":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "AttributeError" in client.request("status")["status"]["last_breakpoint"]["error"]
        client.request("clear")
        client.request("continue")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    with_socket_path(world.runtime / f"{agent_id}.sock", sock.connect)
    token = (world.runtime / f"{agent_id}.token").read_text()
    sock.sendall(json.dumps({"hello": "hera", "token": token}).encode() + b"\n")
    sock.sendall(b"x" * 70000)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    sock.close()
    assert received.count(b"\n") == 2 and b"longer than" in received  # welcome, one error, closed
    assert world.row(agent_id)["status"] == "running"
    world.run("--uuid", agent_id, "down")
    assert world.row(agent_id)["status"] == "down"


def test_another_users_agent_run_by_root_is_theirs_to_control(reachable_world):
    world = reachable_world
    import pwd

    agent_id, path = world.build()
    world.run("install", "--user", "nobody", path.name)
    world.run("--uuid", agent_id, "up", "--user", "nobody", "--daemon")
    run_dir = world.root / "users" / "nobody" / "run"
    expected = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()
    try:
        for name in (f"{agent_id}.sock", f"{agent_id}.token"):
            assert (run_dir / name).stat().st_uid == expected, name
        [row] = world.agents("--user", "nobody")
        assert row["status"] == "running"
    finally:
        world.run("--uuid", agent_id, "down", "--user", "nobody")
    assert world.agents("--user", "nobody")[0]["status"] == "down"
