"""An upped agent's lines: input lines in (piped stdin, ``io``
connections), output lines out (piped stdout, ``io`` connections), each on a
thread of its own so that the stepping thread never waits for a reader or a
writer.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Callable

from hera.control import Connection

# Output lines held for a slow reader before newer ones are dropped.
_BACKLOG = 1000


class Streams:
    """Input lines queued for the stepping thread, and the sinks its output
    lines go to."""

    def __init__(self) -> None:
        self._inputs: queue.Queue[str] = queue.Queue()
        self._sinks: list[Callable[[str], None]] = []
        self._lock = threading.Lock()
        #: whether stdin feeds the input area (SIGTTIN) / stdout takes output lines (SIGTTOU)
        self.stdin_piped = False
        self.stdout_piped = False

    @property
    def has_sinks(self) -> bool:
        """Whether anyone takes output lines."""
        return bool(self._sinks)

    def add_sink(self, sink: Callable[[str], None]) -> None:
        with self._lock:
            if sink not in self._sinks:
                self._sinks.append(sink)

    def remove_sink(self, sink: Callable[[str], None]) -> None:
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)

    def emit(self, line: str) -> None:
        """Give ``line`` to every sink; a sink whose reader is gone is dropped."""
        with self._lock:
            sinks = list(self._sinks)
        for sink in sinks:
            try:
                sink(line)
            except OSError:
                self.remove_sink(sink)

    def put_input(self, line: str) -> None:
        """Queue an input line for the stepping thread (any thread)."""
        self._inputs.put(line)

    def take_inputs(self) -> list[str]:
        """The input lines queued so far (the stepping thread)."""
        lines = []
        while True:
            try:
                lines.append(self._inputs.get_nowait())
            except queue.Empty:
                return lines

    def pipe_stdin(self) -> None:
        """From now on, every line of stdin is an input line."""
        if self.stdin_piped:
            return
        self.stdin_piped = True

        def read() -> None:
            for line in sys.stdin:
                self.put_input(line.rstrip("\n"))

        threading.Thread(target=read, name="hera-stdin", daemon=True).start()

    def pipe_stdout(self, write: Callable[[str], None]) -> bool:
        """From now on, output lines go to ``write`` too; False if they
        already did."""
        if self.stdout_piped:
            return False
        self.stdout_piped = True
        sink, _ = buffered(write, "hera-stdout")
        self.add_sink(sink)
        return True

    def stream(self, conn: Connection) -> None:
        """Serve an ``io`` connection (on its control thread): lines in go to
        the input area, output lines go out."""
        sink, close = buffered(conn.send_line, "hera-io-out")
        self.add_sink(sink)
        try:
            while (line := conn.read_line()) is not None:
                self.put_input(line.decode("utf-8", "replace"))
        except (OSError, ValueError):
            pass
        finally:
            self.remove_sink(sink)
            close()


def buffered(write: Callable[[str], None], name: str
             ) -> tuple[Callable[[str], None], Callable[[], None]]:
    """A sink the stepping thread can call without ever blocking, and a way
    to close it: lines queue up (at most _BACKLOG) and a daemon thread
    ``name`` writes them. A reader that does not keep up loses lines, never
    the agent's time, and cannot hold up its shutdown."""
    outbox: queue.Queue[str | None] = queue.Queue(maxsize=_BACKLOG)

    def sink(line: str) -> None:
        try:
            outbox.put_nowait(line)
        except queue.Full:
            pass

    def send() -> None:
        while (line := outbox.get()) is not None:
            try:
                write(line)
            except OSError:
                return

    def close() -> None:
        try:
            outbox.put_nowait(None)
        except queue.Full:
            pass  # the writer is stuck on a dead reader; closing that ends the thread

    threading.Thread(target=send, name=name, daemon=True).start()
    return sink, close
