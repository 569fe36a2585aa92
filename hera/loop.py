"""The stepping loop of an upped agent.

One thread steps the agent: this loop. Between chunks of steps it takes
the signals noted by :class:`~hera.signals.SignalInbox` (what each does:
:mod:`hera.loop_signals`), the control requests queued by
:class:`~hera.requests.Requests`, the input lines of
:class:`~hera.streams.Streams`, breakpoints and checkpoints, and opens the
prompt through the callback it is given. Control threads never
touch the agent themselves.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from hera.agent_commands import ON_THE_AGENT
from hera.console import Console
from hera.errors import HeraError
from hera.loop_signals import SignalActions
from hera.manager import now_iso
from hera.progress import Progress
from hera.requests import Requests
from hera.session import PAUSED, RUNNING, AgentSession, Stop, answer, checkpoint
from hera.signals import SignalInbox, parse_name
from hera.streams import Streams

if TYPE_CHECKING:  # pragma: no cover
    from hera.reserve import DescriptorReserve

_IDLE_POLL_S = 0.02


class Loop:
    """Steps ``session`` until a stop; see :meth:`run`.

    :param steps: steps to take in this up (``None``: until stopped).
    :param checkpoint: seconds between saves while running (0: none).
    :param output_every: steps per output line for piped/streamed output.
    :param prompt_after: open the prompt after this many steps (interactive).
    :param on_state: called with the new state whenever it changes.
    :param log_every: seconds between progress lines in the log while the
        agent is detached (0: none).
    :param open_prompt: opens the Python prompt on this terminal for the
        loop and returns when it closes (``hera.prompt.run_local_prompt``);
        ``None``: no prompt.
    """

    def __init__(self, session: AgentSession, inbox: SignalInbox, console: Console, *,
                 steps: int | None = None, chunk: int | None = None, checkpoint: float = 0.0,
                 output_every: int = 100, prompt_after: int | None = None,
                 on_state: Callable[[str], None] | None = None,
                 reserve: "DescriptorReserve | None" = None, log_every: float = 60.0,
                 open_prompt: "Callable[[Loop], None] | None" = None):
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
        self.signals = SignalActions(self)
        self.want_prompt = session.mode == "interactive" and prompt_after is None
        self.open_prompt = open_prompt
        self.streams = Streams()
        self.requests = Requests(self.execute, self._at_once)
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
            for name in self.inbox.take():
                self.act_on(name)
            self.requests.serve()
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
            elif self.progress is not None and not self.streams.stdout_piped:
                self.progress.update(session.step_count)
            if hit is not None:
                self._on_breakpoint(hit)
            elif self.prompt_at is not None and session.step_count >= self.prompt_at:
                self.prompt_at = None
                self.want_prompt = True
            if self.checkpoint and time.monotonic() - session.last_save >= self.checkpoint:
                self.checkpoint_now()

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

    def checkpoint_now(self) -> bool:
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
        if self.streams.has_sinks:
            n = min(n, self.output_every - session.step_count % self.output_every)
        return max(1, n)

    @property
    def can_prompt(self) -> bool:
        """Whether a prompt can open here: a terminal in the foreground, and
        stdin not already piped into the agent (SIGTTIN)."""
        return self.open_prompt is not None and self.console.has_terminal \
            and not self.streams.stdin_piped

    def set_state(self, state: str) -> None:
        if state != self.session.state:
            self.session.state = state
            self.on_state(state)

    # -- signals -------------------------------------------------------------------

    def act_on(self, name: str) -> None:
        """Do what signal ``name`` means (see :mod:`hera.loop_signals`)."""
        self.signals.act_on(name)

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
        if self.open_prompt is None:
            return
        self.console.clear_progress()
        self.set_state(PAUSED)
        self.open_prompt(self)
        self.inbox.discard("SIGTSTP", "SIGSTOP")  # asked for the prompt we just closed
        if not self.stop_reason:
            self.set_state(RUNNING)

    # -- input and output ----------------------------------------------------------------

    def _emit_output(self) -> None:
        if not self.streams.has_sinks or self.session.step_count % self.output_every:
            return
        try:
            line = self.session.read_output()
        except HeraError as exc:
            self.console.warn(f"no output line at step {self.session.step_count}: {exc.message}")
            return
        self.streams.emit(line)

    def _feed_inputs(self) -> None:
        for line in self.streams.take_inputs():
            try:
                self.session.feed(line)
            except HeraError as exc:  # the family refused it: say so, run on
                self.console.warn(f"input line dropped: {exc.message}")

    # -- control requests ----------------------------------------------------------------

    def _at_once(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """``status`` is answered on the control thread, whatever the loop does."""
        if request.get("cmd") == "status":
            return {"ok": True, "status": self.session.status()}
        return None

    def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        """Carry out one control command on the loop's thread (the commands
        are hera.agent_commands.CONTROL)."""
        cmd = request.get("cmd")
        session = self.session
        if cmd in ON_THE_AGENT:
            answered = answer(session, request)
            if cmd == "save":
                self.on_state(session.state)  # the pid-file records the saved step
            return answered
        handler = self.handlers().get(cmd)
        if handler is None:
            raise HeraError(f"unknown command {cmd!r}")
        return handler(request) or {"status": session.status()}

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]]:
        """The loop's own control commands (the others act on the agent
        itself, or, for ``io``, on the connection)."""
        return {"status": lambda request: None, "pause": self._pause,
                "continue": lambda request: self.act_on("SIGCONT"), "step": self._step_request,
                "break": self._break, "clear": self._clear, "down": self._down,
                "signal": self._signal}

    def _pause(self, request: dict[str, Any]) -> None:
        self.set_state(PAUSED)

    def _step_request(self, request: dict[str, Any]) -> dict[str, Any]:
        n = request.get("steps", 1)
        if type(n) is not int or n < 1:
            raise HeraError("step takes a whole number of steps >= 1")
        self.set_state(PAUSED)
        hit = self.step(n)
        return {"step": self.session.step_count,
                "breakpoint": None if hit is None else hit.breakpoint.describe()}

    def _break(self, request: dict[str, Any]) -> dict[str, Any]:
        args = {k: request[k] for k in ("at", "every", "when") if k in request}
        return {"breakpoint": self.session.add_breakpoint(**args).describe()}

    def _clear(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"cleared": self.session.clear_breakpoints(request.get("id"))}

    def _down(self, request: dict[str, Any]) -> None:
        self.stop_reason = self.stop_reason or "down"

    def _signal(self, request: dict[str, Any]) -> None:
        try:
            name = parse_name(str(request.get("name", "")))
        except ValueError:
            raise HeraError(f"unknown signal {request.get('name')!r}") from None
        self.act_on(name)
