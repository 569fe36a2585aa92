"""The inner loop of an upped agent and everything that steers it.

One thread steps the agent: this loop. Between chunks of steps it acts on
signals (noted by :class:`~hera.signals.SignalInbox`), on requests from the
control channel (queued by its threads), on input lines, on breakpoints and
on checkpoints. Control threads never touch the agent themselves.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from hera.console import Console
from hera.control import Connection
from hera.errors import HeraError
from hera.manager import now_iso
from hera.progress import Progress
from hera.session import PAUSED, RUNNING, STANDBY, AgentSession, Stop, answer, checkpoint
from hera.signals import ENDING, SignalInbox, parse_name

if TYPE_CHECKING:  # pragma: no cover
    from hera.reserve import DescriptorReserve

# How long a control request waits for the loop (which may sit at a prompt).
_REQUEST_TIMEOUT_S = 30.0
_IDLE_POLL_S = 0.02
#: A second SIGINT this soon after the first, in standby, saves and stops.
SECOND_CTRL_C_S = 2.0
# Output lines held for a slow io client before newer ones are dropped.
_STREAM_BACKLOG = 1000


class Loop:
    """Steps ``session`` until a stop; see :meth:`run`.

    :param steps: steps to take in this up (``None``: until stopped).
    :param checkpoint: seconds between saves while running (0: none).
    :param output_every: steps per output line for piped/streamed output.
    :param prompt_after: open the prompt after this many steps (interactive).
    :param on_state: called with the new state whenever it changes.
    :param log_every: seconds between progress lines in the log while the
        agent is detached (0: none).
    """

    def __init__(self, session: AgentSession, inbox: SignalInbox, console: Console, *,
                 steps: int | None = None, chunk: int | None = None, checkpoint: float = 0.0,
                 output_every: int = 100, prompt_after: int | None = None,
                 on_state: Callable[[str], None] | None = None,
                 reserve: "DescriptorReserve | None" = None, log_every: float = 60.0):
        self.session = session
        self.inbox = inbox
        self.console = console
        self.steps = steps
        self.fixed_chunk = chunk
        self.checkpoint = checkpoint
        self.output_every = output_every
        self.prompt_at = None if prompt_after is None else session.step_count + prompt_after
        self.on_state = on_state or (lambda state: None)
        self.reserve = reserve
        self.stop_reason: str | None = None
        self._last_interrupt = float("-inf")
        self.want_prompt = session.mode == "interactive" and prompt_after is None
        self._requests: queue.Queue[tuple[dict[str, Any], queue.Queue]] = queue.Queue()
        self._inputs: queue.Queue[str] = queue.Queue()
        self._sinks: list[Callable[[str], None]] = []
        self._sinks_lock = threading.Lock()
        self._stdout_piped = False
        self._stdin_piped = False
        self.log_every = log_every
        self.logged: Progress | None = None  # the progress in the log, once detached
        self.progress = None if not console.shows_progress else Progress(
            console.show_progress, session.step_count,
            None if steps is None else session.step_count + steps, spikes=session.spikes)

    # -- the loop ------------------------------------------------------------------

    def run(self) -> str:
        """Step until the step budget is spent or something stops the agent;
        return why (``steps done``, ``down``, ``SIGTERM``, ``SIGQUIT``,
        ``SIGABRT``)."""
        session = self.session
        while True:
            self._take_signals()
            self._serve_requests()
            self._feed_inputs()
            if self.stop_reason:
                return self.stop_reason
            if self.steps is not None and session.done >= self.steps:
                return "steps done"
            if self.want_prompt:
                self.want_prompt = False
                self.prompt()
                continue
            if session.state != RUNNING:
                time.sleep(_IDLE_POLL_S)
                continue
            bounds = [b for b in (self.prompt_at, None if self.steps is None
                                  else session.start_steps + self.steps) if b is not None]
            hit = session.advance(self._next_chunk(min(bounds, default=None)),
                                  adapt=self.fixed_chunk is None)
            self._emit_output()
            if self.console.detached:
                self._log_progress()
            elif self.progress is not None and not self._stdout_piped:
                self.progress.update(session.step_count)
            if hit is not None:
                self._on_breakpoint(hit)
            elif self.prompt_at is not None and session.step_count >= self.prompt_at:
                self.prompt_at = None
                self.want_prompt = True
            if self.checkpoint and time.monotonic() - session.last_save >= self.checkpoint:
                self._checkpoint()

    def _log_progress(self) -> None:
        """A detached agent's progress, in its log by time (every
        ``log_every`` seconds of running)."""
        if not self.log_every:
            return
        if self.logged is None:
            session = self.session
            self.logged = Progress(
                lambda text: self.console.tell(f"{now_iso()} {text}"), session.step_count,
                None if self.steps is None else session.start_steps + self.steps,
                interval=self.log_every, spikes=session.spikes)
        self.logged.update(self.session.step_count)

    def step(self, n: int | None, interrupted: Callable[[], bool] = lambda: False) -> Stop | None:
        """Take ``n`` steps (``None``: until stopped) for the prompt or the
        control channel, in chunks: output is emitted as in the loop, and a
        breakpoint, a signal that ends the agent or ``interrupted()`` stops
        it between chunks (a step is never cut)."""
        session = self.session
        goal = None if n is None else session.step_count + n
        while goal is None or session.step_count < goal:
            if self.stop_reason or self.inbox.ending() or interrupted():
                return None
            hit = session.advance(self._next_chunk(goal), adapt=self.fixed_chunk is None)
            self._emit_output()
            if hit is not None:
                return hit
        return None

    def _checkpoint(self) -> bool:
        """Save while running (see :func:`hera.session.checkpoint`)."""
        if not checkpoint(self.session, self.reserve, self.console.warn):
            return False
        self.on_state(self.session.state)  # the pid-file records the saved step
        return True

    def _next_chunk(self, goal: int | None) -> int:
        """Steps for the next family call: the adaptive (or fixed) chunk, cut
        at step ``goal`` and, while output is piped, at the next output line."""
        session = self.session
        n = self.fixed_chunk or session.chunk
        if goal is not None:
            n = min(n, goal - session.step_count)
        if self._sinks:
            n = min(n, self.output_every - session.step_count % self.output_every)
        return max(1, n)

    @property
    def can_prompt(self) -> bool:
        """Whether a prompt can open here: a terminal in the foreground, and
        stdin not already piped into the agent (SIGTTIN)."""
        return self.console.has_terminal and not self._stdin_piped

    def set_state(self, state: str) -> None:
        if state != self.session.state:
            self.session.state = state
            self.on_state(state)

    # -- signals -------------------------------------------------------------------

    def _take_signals(self) -> None:
        for name in self.inbox.take():
            self.act_on(name)

    def act_on(self, name: str) -> None:
        """Do what signal ``name`` means (the seed's table, hera.signals)."""
        console = self.console
        if name in ENDING:
            self.stop_reason = self.stop_reason or name  # a second one starts no second save
        elif name == "SIGINT":
            now = time.monotonic()
            if self.session.state == STANDBY and now - self._last_interrupt <= SECOND_CTRL_C_S:
                console.tell(f"Ctrl-C twice: saving at step {self.session.step_count} and "
                             "stopping")
                self.stop_reason = self.stop_reason or "Ctrl-C twice"
                return
            self._last_interrupt = now
            self.set_state(STANDBY)
            if self.can_prompt:
                console.tell(f"standby at step {self.session.step_count}: Ctrl-C again within "
                             f"{SECOND_CTRL_C_S:.0f} s saves and stops; Ctrl-Z opens the prompt "
                             "(Ctrl-D there runs on); 'hera signal SIGCONT' runs on")
            else:
                console.tell(f"standby at step {self.session.step_count} (SIGCONT resumes, "
                             f"'hera down' saves and stops)")
        elif name == "SIGCONT":
            if self.session.state != RUNNING:
                self.set_state(RUNNING)
                console.tell(f"running from step {self.session.step_count}")
        elif name == "SIGTSTP" and not self.can_prompt:
            console.tell("SIGTSTP ignored: no terminal to stop at (use SIGSTOP or SIGINT)")
        elif name in ("SIGTSTP", "SIGSTOP"):
            self.set_state(PAUSED)
            if self.can_prompt:
                self.want_prompt = True
            else:  # 'hera signal SIGSTOP' attaches its own terminal over the control channel
                console.tell(f"paused at step {self.session.step_count} ({name})")
        elif name == "SIGUSR1":
            if self._checkpoint():
                console.tell(f"saved at step {self.session.step_count} (SIGUSR1)")
        elif name == "SIGHUP":
            console.try_detach()
        elif name == "SIGTTIN":
            self._pipe_stdin()
        elif name == "SIGTTOU" and not self._stdout_piped:
            self._stdout_piped = True
            self.console.clear_progress()  # output lines take stdout from here on
            sink, _ = self._buffered(console.write_output, "hera-stdout")
            self.add_sink(sink)

    def _pipe_stdin(self) -> None:
        if self._stdin_piped:
            return
        self._stdin_piped = True

        def read() -> None:
            for line in sys.stdin:
                self._inputs.put(line.rstrip("\n"))

        threading.Thread(target=read, name="hera-stdin", daemon=True).start()

    # -- breakpoints and the prompt ----------------------------------------------------

    def _on_breakpoint(self, hit: Stop) -> None:
        self.set_state(PAUSED)
        failed = hit.breakpoint.error
        self.console.tell(f"breakpoint {hit.breakpoint.id} hit at step {hit.step}"
                          + (f" (its condition failed: {failed})" if failed else ""))
        if self.can_prompt:
            self.want_prompt = True

    def prompt(self) -> None:
        """Open the Python prompt on this terminal; closing it resumes running."""
        from hera.prompt import run_local_prompt

        self.console.clear_progress()
        self.set_state(PAUSED)
        run_local_prompt(self)
        self.inbox.discard("SIGTSTP", "SIGSTOP")  # asked for the prompt we just closed
        if not self.stop_reason:
            self.set_state(RUNNING)

    # -- input and output ----------------------------------------------------------------

    def add_sink(self, sink: Callable[[str], None]) -> None:
        with self._sinks_lock:
            if sink not in self._sinks:
                self._sinks.append(sink)

    def remove_sink(self, sink: Callable[[str], None]) -> None:
        with self._sinks_lock:
            if sink in self._sinks:
                self._sinks.remove(sink)

    def _emit_output(self) -> None:
        if not self._sinks or self.session.step_count % self.output_every:
            return
        try:
            line = self.session.read_output()
        except HeraError as exc:
            self.console.warn(f"no output line at step {self.session.step_count}: {exc.message}")
            return
        with self._sinks_lock:
            sinks = list(self._sinks)
        for sink in sinks:
            try:
                sink(line)
            except OSError:
                self.remove_sink(sink)

    def _feed_inputs(self) -> None:
        while True:
            try:
                line = self._inputs.get_nowait()
            except queue.Empty:
                return
            try:
                self.session.feed(line)
            except HeraError as exc:  # the family refused it: say so, run on
                self.console.warn(f"input line dropped: {exc.message}")

    def stream(self, conn: Connection) -> None:
        """Serve an ``io`` connection (on its control thread): lines in go to
        the input area, output lines go out."""
        sink, close = self._buffered(conn.send_line, "hera-io-out")
        self.add_sink(sink)
        try:
            while (line := conn.read_line()) is not None:
                self._inputs.put(line.decode("utf-8", "replace"))
        except (OSError, ValueError):
            pass
        finally:
            self.remove_sink(sink)
            close()

    @staticmethod
    def _buffered(write: Callable[[str], None], name: str
                  ) -> tuple[Callable[[str], None], Callable[[], None]]:
        """A sink the loop thread can call without ever blocking, and a way
        to close it: lines queue up (at most _STREAM_BACKLOG) and a daemon
        thread ``name`` writes them. A reader that does not keep up loses
        lines, never the agent's time, and cannot hold up its shutdown."""
        outbox: queue.Queue[str | None] = queue.Queue(maxsize=_STREAM_BACKLOG)

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

    # -- control requests ----------------------------------------------------------------

    def handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer a control request (called on a control thread)."""
        if request.get("cmd") == "status":
            return {"ok": True, "status": self.session.status()}
        reply: queue.Queue = queue.Queue(maxsize=1)
        abandoned = threading.Event()
        self._requests.put((request, reply, abandoned))
        try:
            return reply.get(timeout=_REQUEST_TIMEOUT_S)
        except queue.Empty:
            abandoned.set()  # not to be carried out later, when nobody waits for it
            return {"ok": False, "error": "the agent is busy (at its prompt?); try again"}

    def _serve_requests(self) -> None:
        while True:
            try:
                request, reply, abandoned = self._requests.get_nowait()
            except queue.Empty:
                return
            if abandoned.is_set():
                continue
            try:
                answer = {"ok": True, **self.execute(request)}
            except HeraError as exc:
                answer = {"ok": False, "error": exc.message}
            except Exception as exc:  # noqa: BLE001 - a bad request must not kill the agent
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            reply.put(answer)

    def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        """Carry out one control command on the loop's thread."""
        cmd = request.get("cmd")
        session = self.session
        if cmd == "pause":
            self.set_state(PAUSED)
        elif cmd == "continue":
            self.act_on("SIGCONT")
        elif cmd == "step":
            n = request.get("steps", 1)
            if type(n) is not int or n < 1:
                raise HeraError("step takes a whole number of steps >= 1")
            self.set_state(PAUSED)
            hit = self.step(n)
            return {"step": session.step_count,
                    "breakpoint": None if hit is None else hit.breakpoint.describe()}
        elif cmd == "break":
            args = {k: request[k] for k in ("at", "every", "when") if k in request}
            return {"breakpoint": session.add_breakpoint(**args).describe()}
        elif cmd == "clear":
            return {"cleared": session.clear_breakpoints(request.get("id"))}
        elif (answered := answer(session, request)) is not None:
            if cmd == "save":
                self.on_state(session.state)  # the pid-file records the saved step
            return answered
        elif cmd == "down":
            self.stop_reason = self.stop_reason or "down"
        elif cmd == "signal":
            try:
                name = parse_name(str(request.get("name", "")))
            except ValueError:
                raise HeraError(f"unknown signal {request.get('name')!r}") from None
            self.act_on(name)
        else:
            raise HeraError(f"unknown command {cmd!r}")
        return {"status": session.status()}
