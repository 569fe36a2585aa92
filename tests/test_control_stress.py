"""The control channel under stress: connection floods, clients that trickle
their hello, an agent out of file descriptors, failing accepts, and root
serving another user's agent. A real ControlServer on a real Unix socket;
every wait is bounded."""

from __future__ import annotations

import errno
import os
import select
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from hera import atomic, control, privilege
from hera.control import ControlClient, ControlServer, with_socket_path
from hera.errors import HeraError

REPO = Path(__file__).resolve().parent.parent
NOBODY = (65534, 65534)
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")


def _echo(request):
    return {"ok": True, "echo": request.get("cmd")}


@contextmanager
def _server(place: Path, **kwargs):
    server = ControlServer(place / "a.sock", place / "a.token", "agent", _echo, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.close()


def _connect(path: Path, limit: float = 5.0) -> socket.socket:
    """A raw connection; a full backlog (EAGAIN) is tried again until
    ``limit``: a server that stopped accepting leaves it full for good."""
    end = time.monotonic() + limit
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        try:
            with_socket_path(path, sock.connect)
            return sock
        except BlockingIOError:
            sock.close()
            assert time.monotonic() < end, "the backlog stayed full: the server stopped accepting"
            time.sleep(0.005)


def _closed_within(socks: list[socket.socket], seconds: float) -> dict[int, float]:
    """Which of ``socks`` the server closes (end of stream or reset) within
    ``seconds``: index -> seconds it took. None may get any answer."""
    start = time.monotonic()
    poller = select.poll()
    index = {}
    for i, sock in enumerate(socks):
        poller.register(sock, select.POLLIN)
        index[sock.fileno()] = i
    closed: dict[int, float] = {}
    while len(closed) < len(socks):
        left = start + seconds - time.monotonic()
        if left <= 0:
            break
        for fd, _event in poller.poll(left * 1000):
            sock = socks[index[fd]]
            try:
                data = sock.recv(1, socket.MSG_DONTWAIT)
            except ConnectionResetError:
                data = b""
            except BlockingIOError:
                continue
            assert data == b"", "a connection that never logged in got an answer"
            closed[index[fd]] = time.monotonic() - start
            poller.unregister(fd)
    return closed


def _served_within(place: Path, seconds: float) -> float:
    """Log in until it works (within ``seconds``) and make a request;
    return how long it took."""
    start = time.monotonic()
    while True:
        try:
            with ControlClient(place / "a.sock", place / "a.token", timeout=5) as client:
                assert client.request("ping")["echo"] == "ping"
            return time.monotonic() - start
        except HeraError as exc:
            assert time.monotonic() - start < seconds, f"never served again: {exc.message}"
            time.sleep(0.02)


def _refused_at_once(place: Path) -> None:
    """A client is refused (a closed connection) in well under its 10 s
    timeout: it does not hang."""
    start = time.monotonic()
    with pytest.raises(HeraError, match="refused"):
        ControlClient(place / "a.sock", place / "a.token", timeout=10)
    assert time.monotonic() - start < 2.0


def _close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


# -- (a) a flood of connections ------------------------------------------

def test_a_flood_beyond_the_cap_is_closed_at_once_and_clients_are_served_after(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(control, "_HELLO_TIMEOUT_S", 30.0)  # the flood stays until it leaves
    cap = control._MAX_CONNECTIONS
    flood: list[socket.socket] = []
    with _server(tmp_path):
        try:
            flood = [_connect(tmp_path / "a.sock") for _ in range(300)]
            closed = _closed_within(flood, 1.5)
            assert len(closed) == 300 - cap, "exactly the connections beyond the cap are closed"
            assert max(closed.values()) < 1.0
            _refused_at_once(tmp_path)  # every slot is taken: refused, not left waiting
        finally:
            _close_all(flood)
        assert _served_within(tmp_path, 5.0) < 2.0
        for _ in range(3):  # and it stays so
            _served_within(tmp_path, 1.0)


# -- (b) clients that trickle their hello -----------------------------------

def test_a_hello_trickled_a_byte_at_a_time_is_dropped_at_its_deadline(tmp_path, monkeypatch):
    deadline = 0.6
    monkeypatch.setattr(control, "_HELLO_TIMEOUT_S", deadline)
    endless = b'{"hello": "hera", "token": "' + b"0" * 10_000  # never ends within the test
    with _server(tmp_path):
        clients = [_connect(tmp_path / "a.sock") for _ in range(6)]
        start = time.monotonic()
        closed_at: dict[int, float] = {}
        sent = 0
        try:
            while len(closed_at) < len(clients) and time.monotonic() - start < deadline + 3.0:
                for i, sock in enumerate(clients):
                    if i in closed_at:
                        continue
                    try:
                        if select.select([sock], [], [], 0)[0] and \
                                sock.recv(1, socket.MSG_DONTWAIT) == b"":
                            raise ConnectionResetError
                        sock.send(endless[sent:sent + 1])  # one byte, well within any idle timeout
                    except (BrokenPipeError, ConnectionResetError):
                        closed_at[i] = time.monotonic() - start
                sent += 1
                time.sleep(0.1)
        finally:
            _close_all(clients)
        assert len(closed_at) == len(clients), "a trickling client stayed connected"
        assert all(deadline * 0.8 <= t < deadline + 0.6 for t in closed_at.values()), closed_at
        _served_within(tmp_path, 1.0)


def test_a_slow_but_timely_hello_is_welcome(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "_HELLO_TIMEOUT_S", 1.0)
    with _server(tmp_path):
        token = (tmp_path / "a.token").read_text()
        hello = b'{"hello": "hera", "token": "' + token.encode() + b'"}\n'
        sock = _connect(tmp_path / "a.sock")
        try:
            for at in range(0, len(hello), 16):  # about 0.3 s in all
                sock.sendall(hello[at:at + 16])
                time.sleep(0.04)
            conn = control.Connection(sock)
            welcome = conn.read_json()
            assert welcome == {"ok": True, "agent": "agent", "protocol": control.PROTOCOL}
            time.sleep(1.2)  # past the hello deadline: a logged-in client may idle
            conn.send_json({"cmd": "still-there"})
            assert conn.read_json()["echo"] == "still-there"
        finally:
            sock.close()


def test_read_line_keeps_one_deadline_for_the_whole_line():
    left, right = socket.socketpair()
    try:
        conn = control.Connection(left)
        right.sendall(b"par")
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            conn.read_line(deadline=time.monotonic() + 0.3)
        assert time.monotonic() - start < 0.6
        right.sendall(b"t\n")
        assert conn.read_line(deadline=time.monotonic() + 1) == b"part"
    finally:
        left.close()
        right.close()


# -- (c) out of file descriptors ------------------------------------------

_SERVER_SCRIPT = r"""
import resource
import sys
from pathlib import Path

from hera import control

control._MAX_CONNECTIONS = 10_000  # here, only the descriptor limit refuses
control._HELLO_TIMEOUT_S = 60.0    # held connections stay until their clients leave
place, limit = Path(sys.argv[1]), int(sys.argv[2])
_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
server = control.ControlServer(place / "a.sock", place / "a.token", "agent",
                               lambda request: {"ok": True, "echo": request.get("cmd")})
server.start()
print("ready", flush=True)
sys.stdin.read()
server.close()
print("closed", flush=True)
"""


def test_a_server_out_of_descriptors_closes_newcomers_and_recovers(tmp_path):
    limit = 64
    script = tmp_path / "server.py"
    script.write_text(_SERVER_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(limit)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    flood: list[socket.socket] = []
    try:
        assert select.select([proc.stdout], [], [], 30)[0], "the server did not start"
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        flood = [_connect(tmp_path / "a.sock") for _ in range(limit + 40)]
        closed = _closed_within(flood, 1.5)
        held = [sock for i, sock in enumerate(flood) if i not in closed]
        assert closed, "the server never ran out of descriptors"
        assert limit // 2 <= len(held) < limit, "it served connections until it ran out"
        assert max(closed.values()) < 1.0, "a connection it could not take was left waiting"
        for _ in range(3):  # while it is out of descriptors, newcomers are closed at once
            _refused_at_once(tmp_path)
        # ... and the connections it holds are still served
        conn = control.Connection(held[0])
        conn.send_json({"hello": "hera", "token": (tmp_path / "a.token").read_text()})
        assert conn.read_json()["ok"] is True
        conn.send_json({"cmd": "ping"})
        assert conn.read_json()["echo"] == "ping"
        _close_all(flood)
        assert _served_within(tmp_path, 5.0) < 3.0, "it accepts again once descriptors are free"
        for _ in range(5):
            _served_within(tmp_path, 1.0)
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read().strip() == "closed"
    finally:
        _close_all(flood)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- accept errors never end the accept loop -----------------------------

class _FlakyListener:
    """The server's listener, whose next ``accept`` calls fail first."""

    def __init__(self, real: socket.socket, errors: list[int]):
        self._real = real
        self._errors = list(errors)

    def accept(self):
        if self._errors:
            code = self._errors.pop(0)
            raise OSError(code, os.strerror(code))
        return self._real.accept()

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_failing_accepts_never_stop_the_server(tmp_path):
    with _server(tmp_path) as server:
        errors = [errno.ECONNABORTED, errno.EINTR, errno.ENOBUFS, errno.ENOMEM, errno.EPROTO,
                  errno.EMFILE, errno.ENFILE, errno.EIO]
        server._listener = _FlakyListener(server._listener, errors)
        _served_within(tmp_path, 2.0)  # taken by the accept already waiting
        assert _served_within(tmp_path, 5.0) < 3.0, "the server stopped after a failed accept"
        assert server._listener._errors == []
        _served_within(tmp_path, 1.0)


# -- as the agent's owner ---------------------------------------------------

def test_the_server_and_the_client_touch_files_only_as_the_owner(tmp_path, monkeypatch):
    """Every file operation of theirs runs inside privilege.as_owner(owner),
    and nothing is chowned."""
    owner = (os.geteuid(), os.getegid())
    inside: list[object] = []
    events: list[tuple[str, bool]] = []

    @contextmanager
    def as_owner(who):
        assert who == owner
        inside.append(who)
        try:
            yield
        finally:
            inside.pop()

    def watch(name, fn):
        def watched(*args, **kwargs):
            events.append((name, bool(inside)))
            return fn(*args, **kwargs)
        return watched

    chowns = []
    monkeypatch.setattr(privilege, "as_owner", as_owner)
    monkeypatch.setattr(atomic, "write_atomically", watch("token", atomic.write_atomically))
    monkeypatch.setattr(control, "with_socket_path", watch("socket", control.with_socket_path))
    monkeypatch.setattr(os, "chmod", watch("chmod", os.chmod))
    monkeypatch.setattr(os, "unlink", watch("unlink", os.unlink))
    monkeypatch.setattr(Path, "read_text", watch("read", Path.read_text))
    monkeypatch.setattr(os, "chown", lambda *args, **kwargs: chowns.append(args))
    monkeypatch.setattr(os, "lchown", lambda *args, **kwargs: chowns.append(args))
    (tmp_path / "a.sock").write_text("a dead agent's socket")
    with _server(tmp_path, owner=owner):
        with ControlClient(tmp_path / "a.sock", tmp_path / "a.token", owner=owner) as client:
            assert client.request("ping")["echo"] == "ping"
    assert not (tmp_path / "a.sock").exists() and not (tmp_path / "a.token").exists()
    assert chowns == []
    assert {name for name, _ in events} == {"token", "socket", "chmod", "unlink", "read"}
    assert [name for name, as_them in events if not as_them] == []
    assert sum(name == "unlink" for name, _ in events) == 3  # the stale socket; both at close


@pytest.mark.skipif(os.geteuid() == 0, reason="root is let in whoever owns the agent")
def test_the_peer_must_be_the_owner(tmp_path):
    with _server(tmp_path, owner=(os.geteuid() + 1, os.getegid())) as server:
        assert server.owner_uid == os.geteuid() + 1
        _refused_at_once(tmp_path)


@pytest.fixture
def users_dir():
    """A directory that belongs to 'nobody' (0700), in a root-owned one."""
    top = Path(tempfile.mkdtemp(prefix="hera-owner-"))
    top.chmod(0o755)
    run = top / "run"
    run.mkdir(mode=0o700)
    os.chown(run, *NOBODY)
    yield run
    shutil.rmtree(top, ignore_errors=True)


@root_only
def test_root_serves_a_users_agent_with_files_of_that_user(users_dir):
    with _server(users_dir, owner=NOBODY):
        assert (os.geteuid(), os.getegid()) == (0, 0), "root took its identity back"
        for name in ("a.sock", "a.token"):
            st = os.lstat(users_dir / name)
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (*NOBODY, 0o600)
        _served_within(users_dir, 1.0)  # root
        with ControlClient(users_dir / "a.sock", users_dir / "a.token", owner=NOBODY) as client:
            assert client.request("ping")["echo"] == "ping"  # the owner (peer uid 65534)
        assert (os.geteuid(), os.getegid()) == (0, 0)
    assert not (users_dir / "a.sock").exists() and not (users_dir / "a.token").exists()


@root_only
def test_a_socket_swapped_for_a_link_cannot_turn_roots_chmod_on_another_file(users_dir,
                                                                             monkeypatch):
    victim = users_dir.parent / "victim"
    victim.write_text("root's")
    victim.chmod(0o644)
    real = control.with_socket_path

    def bind_then_swap(path, act):
        real(path, act)
        if getattr(act, "__name__", "") == "bind":  # the user, between bind and chmod
            os.unlink(path)
            os.symlink(victim, path)

    monkeypatch.setattr(control, "with_socket_path", bind_then_swap)
    server = ControlServer(users_dir / "a.sock", users_dir / "a.token", "agent", _echo,
                           owner=NOBODY)
    with pytest.raises(HeraError, match="control socket"):
        server.start()
    server.close()
    st = os.stat(victim)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
    assert (os.geteuid(), os.getegid()) == (0, 0)


@root_only
def test_root_never_sends_a_token_the_user_swapped_for_a_link(users_dir, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root's secret")
    secret.chmod(0o600)
    os.symlink(secret, users_dir / "a.token")
    trap = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    trap.bind(str(users_dir / "a.sock"))
    os.chown(users_dir / "a.sock", *NOBODY)
    trap.listen(1)
    trap.settimeout(0.2)
    try:
        with pytest.raises(HeraError, match="cannot read the agent's control token"):
            ControlClient(users_dir / "a.sock", users_dir / "a.token", timeout=2, owner=NOBODY)
        with pytest.raises(socket.timeout):
            trap.accept()  # not even connected to
    finally:
        trap.close()


@root_only
def test_root_serving_a_users_agent_lets_in_that_user_and_root_only(users_dir):
    users_dir.chmod(0o755)
    with _server(users_dir, owner=NOBODY) as server:
        assert server.owner_uid == NOBODY[0]
        (users_dir / "a.sock").chmod(0o666)
        token = (users_dir / "a.token").read_text()

        def hello_as(who):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            try:
                with privilege.as_owner(who):  # the kernel notes the peer's uid now
                    sock.connect(str(users_dir / "a.sock"))
                conn = control.Connection(sock)
                conn.send_json({"hello": "hera", "token": token})
                return conn.read_json()
            except (ConnectionResetError, BrokenPipeError):
                return None
            finally:
                sock.close()

        assert hello_as((1, 1)) is None, "a third user is refused, even with the token"
        assert hello_as(NOBODY)["ok"] is True
        assert hello_as(None)["ok"] is True  # root
