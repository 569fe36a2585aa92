"""The control channel: a Unix socket that only the agent's owner can use.

Protocol (newline-delimited JSON, UTF-8; see docs/control.md):

1. The client connects to ``<runtime>/<id>.sock`` (a 0600 socket in the
   0700 runtime dir) and sends ``{"hello": "hera", "token": T}``, where
   ``T`` is the per-start random token in ``<runtime>/<id>.token`` (0600).
2. The server checks, before it reads any command, that the peer runs as
   the agent's owner (SO_PEERCRED) or root, that the first frame is not
   HTTP, and compares the token in constant time. Anything else, and a
   hello that is not complete within ``_HELLO_TIMEOUT_S`` of the connection
   being taken, is closed without an answer.
3. It answers ``{"ok": true, "agent": ID, "protocol": 1}``; then each
   request ``{"cmd": NAME, ...}`` gets one reply ``{"ok": true, ...}`` or
   ``{"ok": false, "error": MESSAGE}``.
4. ``{"cmd": "io"}`` turns the connection into the agent's input/output
   stream: every line the client sends goes into the input area, and every
   decoded output line is sent to the client, until either side closes.

The server never stops accepting before :meth:`ControlServer.close`: a
connection beyond ``_MAX_CONNECTIONS``, or one that arrives while the
process is out of file descriptors, is accepted and closed at once, so its
client sees the end of the stream (or a reset) instead of hanging.
"""

from __future__ import annotations

import errno
import hmac
import json
import os
import secrets
import select
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable

from hera import atomic, privilege
from hera.errors import HeraError
from hera.reserve import DescriptorReserve

PROTOCOL = 1
_MAX_FRAME = 1 << 16
# The whole hello line must arrive within this many seconds of the
# connection being taken (a deadline, not an idle timeout: a client that
# trickles one byte at a time is dropped just the same).
_HELLO_TIMEOUT_S = 5.0
# At most this many connections are served at once (logged in or still in
# their hello); one more is accepted and closed at once. Each costs the
# agent a file descriptor and a thread, and the agent needs descriptors of
# its own to save its state: a flood of connections must not take them all.
_MAX_CONNECTIONS = 64
# accept() errors of one connection, or an interrupted call: try again at
# once. Any other error (ENOBUFS, ENOMEM, ...) is tried again after a short
# wait, EMFILE and ENFILE after shedding a connection; none ends the loop.
_RETRY_AT_ONCE = frozenset({errno.ECONNABORTED, errno.EINTR, errno.EAGAIN, errno.EPROTO})
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})
_BACKOFF_MIN_S = 0.01
_BACKOFF_MAX_S = 0.1
_HTTP_STARTS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ",
                b"CONNECT ", b"TRACE ", b"HTTP/")

Handler = Callable[[dict[str, Any]], dict[str, Any]]
StreamHandler = Callable[["Connection"], None]


# sockaddr_un holds about 107 bytes of path; longer paths go through /proc.
_MAX_SOCKET_PATH = 100


def with_socket_path(path: Path, act: Callable[[str], None]) -> None:
    """Call ``act`` with an address for ``path`` that fits a Unix socket
    address, however deep ``path`` lies (Linux: via a directory fd)."""
    if len(os.fsencode(str(path))) <= _MAX_SOCKET_PATH:
        act(str(path))
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        act(f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class FrameTooLong(ValueError):
    """A peer sent more than a frame may hold without a newline."""


class Connection:
    """One line-framed JSON connection."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buffer = b""
        self._send_lock = threading.Lock()

    def read_line(self, deadline: float | None = None) -> bytes | None:
        """The next line without its newline, or ``None`` at end of stream.

        :param deadline: a :func:`time.monotonic` time by which the whole
            line must have arrived, else :class:`TimeoutError` (``None``: the
            socket's own timeout applies to each read). It sets the socket's
            timeout to the time left before each read.
        """
        while b"\n" not in self._buffer:
            if len(self._buffer) > _MAX_FRAME:
                raise FrameTooLong(f"a frame is longer than {_MAX_FRAME} bytes")
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the line did not arrive in time")
                self.sock.settimeout(left)
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def read_json(self) -> dict[str, Any] | None:
        line = self.read_line()
        if line is None:
            return None
        value = json.loads(line)
        if not isinstance(value, dict):
            raise ValueError("a frame must be a JSON object")
        return value

    def send_json(self, value: dict[str, Any]) -> None:
        self.send_line(json.dumps(value, separators=(",", ":")))

    def send_line(self, text: str) -> None:
        with self._send_lock:
            self.sock.sendall(text.encode() + b"\n")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class ControlServer:
    """Accepts owner-only connections and hands their requests to ``handler``
    (called on the connection's thread; it must be thread-safe).

    :param owner: ``(uid, gid)`` of the user whose agent this is, when root
        runs another user's agent, else ``None`` (the agent is the process's
        own). The peer must run as that uid (``None``: the process's
        effective uid) or as root. All the server's file-system work (the
        token, the socket, their removal) is done as that user, through
        :func:`hera.privilege.as_owner`, so that a link the user plants in
        their own directory can never turn it into root's work on another
        file, and the files are the user's without a ``chown``.
    """

    def __init__(self, sock_path: Path, token_path: Path, agent_id: str, handler: Handler,
                 stream: StreamHandler | None = None, owner: tuple[int, int] | None = None):
        self.sock_path = Path(sock_path)
        self.token_path = Path(token_path)
        self.agent_id = agent_id
        self.handler = handler
        self.stream = stream
        self.owner = owner
        self.owner_uid = os.geteuid() if owner is None else owner[0]
        self._token = ""
        self._listener: socket.socket | None = None
        self._reserve = DescriptorReserve(0)  # one is held once started: to shed connections with
        self._closed = threading.Event()
        self._open: set[Connection] = set()
        self._open_lock = threading.Lock()

    def start(self) -> None:
        """Write a fresh token, bind the socket (0600) and start accepting."""
        self._token = secrets.token_hex(32)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # As the agent's owner: no chown afterwards, and no link of theirs
        # followed with root's rights (see hera.privilege).
        with privilege.as_owner(self.owner):
            try:
                atomic.write_atomically(self.token_path, [self._token.encode()], mode=0o600)
                try:
                    self.sock_path.unlink()  # a dead agent's socket (its lock is ours now)
                except FileNotFoundError:
                    pass
            except BaseException:
                listener.close()
                raise
            old_umask = os.umask(0o177)
            try:
                with_socket_path(self.sock_path, listener.bind)
                os.chmod(self.sock_path, 0o600)
            except OSError as exc:
                listener.close()
                raise HeraError(f"cannot bind the control socket {self.sock_path}: "
                                f"{exc.strerror or exc}") from None
            finally:
                os.umask(old_umask)
        self._listener = listener  # from here on, close() closes it
        listener.listen(16)
        self._reserve = DescriptorReserve(1)
        threading.Thread(target=self._accept, name="hera-control", daemon=True).start()

    def close(self) -> None:
        """Stop accepting and remove the socket and token files."""
        self._closed.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self._open_lock:
            for conn in list(self._open):  # their threads end with the agent
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        with privilege.as_owner(self.owner):
            for path in (self.sock_path, self.token_path):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass

    def _accept(self) -> None:
        """Take connections until :meth:`close`, whatever ``accept`` says."""
        backoff = _BACKOFF_MIN_S
        try:
            while not self._closed.is_set():
                try:
                    sock, _ = self._listener.accept()
                except OSError as exc:
                    if self._closed.is_set():
                        return
                    if exc.errno in _OUT_OF_DESCRIPTORS:
                        if self._shed_one():
                            backoff = _BACKOFF_MIN_S
                            continue
                    elif exc.errno in _RETRY_AT_ONCE:
                        continue
                    # Out of descriptors with none in reserve, or short of
                    # memory (ENOBUFS, ENOMEM) or worse: wait a little.
                    self._closed.wait(backoff)
                    backoff = min(2 * backoff, _BACKOFF_MAX_S)
                    continue
                backoff = _BACKOFF_MIN_S
                self._take(sock)
        finally:
            self._reserve.release()

    def _take(self, sock: socket.socket) -> None:
        """Serve ``sock`` on a thread of its own, or close it at once when
        ``_MAX_CONNECTIONS`` are being served (or no thread can start)."""
        conn = Connection(sock)
        with self._open_lock:
            if len(self._open) >= _MAX_CONNECTIONS:
                conn.close()
                return
            self._open.add(conn)
        try:
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
        except RuntimeError:  # can't start a new thread
            with self._open_lock:
                self._open.discard(conn)
            conn.close()

    def _shed_one(self) -> bool:
        """Out of descriptors: accept the next pending connection with the
        reserved descriptor and close it at once, so that its client sees a
        closed connection rather than waiting in the backlog. False when
        there is nothing to shed it with (or nothing came within a moment)."""
        poller = select.poll()
        try:
            poller.register(self._listener, select.POLLIN)
            if not poller.poll(_BACKOFF_MAX_S * 1000) or self._closed.is_set():
                return False
        except (OSError, ValueError):  # closed meanwhile
            return False
        self._reserve.release()
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return False
        else:
            sock.close()
            return True
        finally:
            if not self._closed.is_set():
                self._reserve.take()

    def _authenticate(self, conn: Connection) -> bool:
        if peer_uid(conn.sock) not in (self.owner_uid, 0):
            return False
        first = conn.read_line(deadline=time.monotonic() + _HELLO_TIMEOUT_S)
        if first is None or first.lstrip().startswith(_HTTP_STARTS) or b" HTTP/1." in first:
            return False
        hello = json.loads(first)
        token = hello.get("token") if isinstance(hello, dict) else None
        if not (isinstance(token, str) and hello.get("hello") == "hera"):
            return False
        if not hmac.compare_digest(token.encode(), self._token.encode()):
            return False
        conn.sock.settimeout(None)
        return True

    def _serve(self, conn: Connection) -> None:
        try:
            try:
                if not self._authenticate(conn):
                    return
            except (OSError, ValueError, RecursionError):  # RecursionError: absurd nesting
                return
            conn.send_json({"ok": True, "agent": self.agent_id, "protocol": PROTOCOL})
            while True:
                try:
                    request = conn.read_json()
                except FrameTooLong as exc:
                    conn.send_json({"ok": False, "error": str(exc)})
                    return  # its rest cannot be told from the next request
                except (ValueError, RecursionError) as exc:
                    conn.send_json({"ok": False, "error": f"bad request: {exc}"})
                    continue
                if request is None:
                    return
                if request.get("cmd") == "io" and self.stream is not None:
                    conn.send_json({"ok": True})
                    self.stream(conn)
                    return
                try:
                    reply = self.handler(request)
                except HeraError as exc:
                    reply = {"ok": False, "error": exc.message}
                conn.send_json(reply)
        except OSError:
            return
        finally:
            with self._open_lock:
                self._open.discard(conn)
            conn.close()


class ControlClient:
    """Talks to a running agent over its control channel.

    :param owner: ``(uid, gid)`` of the user whose agent it is, when root
        talks to another user's agent, else ``None``. The token is read, and
        the socket connected to, as that user (see :mod:`hera.privilege`):
        root never reads a file the user may have swapped for a link to a
        secret, to send it down a socket the user controls.
    """

    def __init__(self, sock_path: Path, token_path: Path, timeout: float = 40.0,
                 owner: tuple[int, int] | None = None):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        with privilege.as_owner(owner):
            try:
                token = Path(token_path).read_text().strip()
            except OSError as exc:
                sock.close()
                raise HeraError(f"cannot read the agent's control token: {exc.strerror}") from None
            try:
                with_socket_path(Path(sock_path), sock.connect)
            except OSError as exc:
                sock.close()
                raise HeraError(f"cannot reach the agent's control socket: "
                                f"{exc.strerror or exc}") from None
        self.conn = Connection(sock)
        try:
            self.conn.send_json({"hello": "hera", "token": token})
            welcome = self.conn.read_json()
        except (OSError, ValueError):
            welcome = None
        if not welcome or not welcome.get("ok"):
            self.close()
            raise HeraError("the agent refused the control connection")
        self.agent_id = welcome.get("agent")

    def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command; return the reply, or raise its error."""
        try:
            self.conn.send_json({"cmd": cmd, **args})
            reply = self.conn.read_json()
        except socket.timeout:
            self.close()  # a late answer must not be read as the next one's
            raise HeraError(f"the agent did not answer {cmd!r} in time") from None
        except (OSError, ValueError) as exc:
            raise HeraError(f"lost the agent's control channel: {exc}") from None
        if reply is None:
            raise HeraError("the agent closed its control channel")
        if not reply.get("ok"):
            raise HeraError(str(reply.get("error", "the agent refused the command")))
        return reply

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
