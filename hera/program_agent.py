"""An agent up in a Python program's own process (returned by
:func:`hera.api.up`): stepped on the program's calls, with every guarantee
of ``hera up``."""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hera.driven import AgentDown, Driven
from hera.errors import HeraError
from hera.program_signals import SIGNALS
from hera.session import IDLE, RUNNING, checkpoint

if TYPE_CHECKING:  # pragma: no cover
    import numpy

    from hera.recording import Recording
    from hera.runner import Run


class Agent(Driven):
    """An agent up in this process; returned by :func:`up`.

    Every method is thread-safe, and the control channel (``hera agents``,
    ``hera down``, ``hera signal SIGUSR1``) is served while it is up. As a
    context manager it downs the agent (saving it) on the way out.
    """

    def __init__(self, run: "Run", checkpoint: float):
        self._run = run
        self._session = run.session
        self._session.state = IDLE
        self._checkpoint = checkpoint
        self._lock = threading.RLock()
        #: what asked this agent to go down (a signal's name, or 'down')
        self._ending: str | None = None
        self._want_checkpoint = False
        self._wake = threading.Event()
        #: why the agent is down; None while it is up
        self._downed: str | None = None
        self.path: Path | None = None  # the cache file of its last save

    def _begin(self) -> None:
        """Start watching for signals and requests, and for the program's end."""
        self._run.stepping = True
        SIGNALS.add(self)
        threading.Thread(target=self._watch, name=f"hera-agent-{self.id[:8]}",
                         daemon=True).start()
        atexit.register(self._at_exit)

    # -- who it is --------------------------------------------------------------

    @property
    def id(self) -> str:
        """The agent's id (a UUID)."""
        return self._session.id

    @property
    def callsign(self) -> str:
        return self._session.callsign

    @property
    def family(self) -> str:
        return self._session.family

    @property
    def layout(self) -> str:
        return self._session.instance.layout

    @property
    def device(self) -> str:
        return self._session.device

    @property
    def backend(self) -> str:
        return self._session.backend

    @property
    def steps(self) -> int:
        """The agent's step count: every step of its life, not only this up's."""
        return self._session.step_count

    @property
    def is_up(self) -> bool:
        """Whether the agent is up (a down under way is waited for)."""
        with self._lock:
            return self._downed is None

    def status(self) -> dict[str, Any]:
        """Where the agent stands (what ``hera`` sees over the control channel)."""
        return {**self._session.status(), "up": self._downed is None}

    # -- driving ------------------------------------------------------------------

    def step(self, n: int = 1) -> int:
        """Take ``n`` steps; return the step count.

        Ctrl-C (SIGINT) stops between two calls to the family, never inside
        a step, then raises ``KeyboardInterrupt``: the agent stays up, at a
        whole step. ``hera down`` or SIGTERM meanwhile saves and downs it,
        and this raises :class:`AgentDown`.
        """
        if type(n) is not int or n < 1:
            raise HeraError(f"step takes a whole number of steps >= 1, not {n!r}")
        with self._lock, SIGNALS.stepping():
            self._check_up()
            session = self._session
            goal = session.step_count + n
            session.state = RUNNING
            try:
                while session.step_count < goal:
                    try:
                        session.advance(min(session.chunk, goal - session.step_count))
                    except Exception as failure:
                        self._fail(failure)
                        raise
                    if self._ending or self._want_checkpoint or SIGNALS.interrupted:
                        self._answer_signals()
                        if SIGNALS.interrupted:
                            break
                    if self._checkpoint and \
                            time.monotonic() - session.last_save >= self._checkpoint:
                        self._checkpoint_now()
            finally:
                session.state = IDLE
            return session.step_count

    def feed(self, line: str | None = None, *, values: Any = None, spikes: Any = None) -> None:
        """Put input into the agent's input area for its next steps.

        :param line: an input line, as ``hera up`` takes them on stdin
            (abraxas: numbers, ``spikes 3 17``, ``reward 0.5``, text).
        :param values: one number per input channel (a NumPy array, say);
            the fast form of a line of numbers, with the same effect.
        :param spikes: input channels that spike exactly at the next step.
        """
        with self._lock:
            if self._downed is not None:
                raise AgentDown(self._down_message())
            if line is not None:
                self._session.feed(line)
            if values is not None or spikes is not None:
                self._session.feed_array(values, spikes)

    def output(self) -> "numpy.ndarray":
        """The agent's output since the last read (abraxas: spike counts per
        output cell), as a NumPy array; starts a new window."""
        with self._lock:
            self._check_up()
            return self._session.output_array()

    def output_line(self) -> str:
        """:meth:`output` as the line ``hera up`` would write."""
        with self._lock:
            self._check_up()
            return self._session.read_output()

    def _set_frozen(self, frozen: bool) -> None:
        with self._lock:
            self._check_up()
            self._session.freeze(frozen)

    def activity(self) -> dict[str, tuple[int, int]]:
        """Spikes of each population since this up began, with the
        population's size: ``{"layer 1": (spikes, neurons), …}`` (the
        family's ``hera_activity``). Rates come from two readings' difference."""
        with self._lock:
            self._check_up()
            counts = self._session.activity()
        if counts is None:
            raise HeraError(f"family {self.family} does not count its spikes")
        return counts

    def record(self, *, spikes: list[str] | list[int] | None = None, rates: int | None = None,
               traces: dict[str, list[int] | list[str]] | None = None, every: int = 1,
               weights: int | None = None, max_bytes: int | None = None) -> "Recording":
        """Start recording from the next step (a recording under way is
        stopped first); return it. See docs/python-api.md.

        :param spikes: population names (``"layer 3"``) or neuron numbers
            whose spikes to keep, at the exact step.
        :param rates: bin width in steps of the rates per population.
        :param traces: variable (abraxas: ``membrane``, ``threshold``) →
            neuron numbers or populations, sampled every ``every`` steps.
        :param weights: steps between snapshots of the learned tensors.
        :param max_bytes: the most it may hold (default 256 MiB); past it,
            it stops and says so.
        :raises HeraError: an unknown population, neuron or variable;
            nothing is recorded then.
        """
        from hera.recording import DEFAULT_MAX_BYTES, Recording, RecordSpec

        spec = RecordSpec(spikes=spikes, rates=rates, traces=dict(traces or {}), every=every,
                          weights=weights,
                          max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes)
        with self._lock:
            self._check_up()
            recording = Recording(self._session, spec, self._run.console.warn)
            if self._session.recording is not None:
                self._session.recording.stop()
            self._session.recording = recording
            return recording

    def stop_recording(self) -> "Recording | None":
        """Stop the recording under way, if any; return it."""
        with self._lock:
            recording, self._session.recording = self._session.recording, None
        if recording is not None:
            recording.stop()
        return recording

    def tensors(self) -> dict[str, Any]:
        """CPU copies of every tensor of the agent by name (dynamic ones
        prefixed ``state.``)."""
        with self._lock:
            self._check_up()
            return self._session.tensors()

    def save(self) -> int:
        """Save the agent to the cache now (a checkpoint); return its step."""
        with self._lock:
            self._check_up()
            self._checkpoint_now(strict=True)
            return self._session.saved_steps

    def down(self) -> Path:
        """Save the agent and take it down; return its file in the cache.
        Calling it again does nothing more."""
        with self._lock:
            if self._downed is None:
                self._down_now("down")
            elif self.path is None:
                raise AgentDown(self._down_message())
            return self.path

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, tb: object) -> None:
        if self._downed is None:
            self.down()

    # -- inside ---------------------------------------------------------------------

    def _check_up(self) -> None:
        if self._downed is not None:
            raise AgentDown(self._down_message())

    def _down_message(self) -> str:
        session = self._session
        saved = f"saved at step {session.saved_steps}" if self.path is not None else \
            f"not saved; the cache keeps step {session.saved_steps}"
        return f"agent {self.id} ({self.callsign}) is down ({self._downed}; {saved})"

    def _down_now(self, reason: str) -> None:
        """Save and let go of everything the up holds (under the lock)."""
        self._let_go(reason)
        try:
            self.path = self._run.save(reason)
        finally:
            self._run.close()

    def _fail(self, failure: BaseException) -> None:
        """The family failed in a step (under the lock, in the ``except``):
        the agent may be half-stepped, so it is not saved over its last
        save; its state goes to a rescue file, and it is down."""
        self._let_go(f"failed: {type(failure).__name__}: {failure}")
        try:
            self._run.rescue(failure)
        finally:
            self._run.close()

    def _let_go(self, why: str) -> None:
        """Mark the agent down, and stop watching signals and the program's end."""
        self._downed = why
        self._wake.set()  # the watcher ends
        SIGNALS.remove(self)
        atexit.unregister(self._at_exit)

    def _checkpoint_now(self, strict: bool = False) -> None:
        """Save while up (under the lock); a failure is retried at the next
        interval, unless ``strict``."""
        if checkpoint(self._session, self._run.reserve, self._run.console.warn, strict):
            self._run.record(IDLE)

    def _answer_signals(self) -> None:
        """Act on what signals and requests asked for (under the lock)."""
        if self._want_checkpoint:
            self._want_checkpoint = False
            self._checkpoint_now()
        if self._ending and self._downed is None:
            ending = self._ending
            self._down_now(ending)
            if ending == "SIGQUIT":
                from hera.runner import _core_dump

                _core_dump(signal.SIGQUIT)
            raise AgentDown(self._down_message())

    def _ask(self, what: str) -> None:
        """Note a signal or a request (from a handler or a control thread);
        the agent acts on it between steps, or at once when idle."""
        if what == "SIGUSR1":
            self._want_checkpoint = True
        else:
            self._ending = self._ending or what
        self._wake.set()

    def _watch(self) -> None:
        """Act on signals and requests while the program is not stepping."""
        while True:
            self._wake.wait()
            with self._lock:
                self._wake.clear()
                if self._downed is not None:
                    return
                try:
                    self._answer_signals()
                except AgentDown:
                    return

    def _at_exit(self) -> None:
        with self._lock:
            if self._downed is None:
                self._down_now("program ended")

    def _handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer a control request (on a control thread)."""
        from hera.session import answer

        cmd = request.get("cmd")
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd == "down":
            self._ask("down")
            return {"ok": True, "status": self.status()}
        with self._lock:
            if self._downed is not None:
                return {"ok": False, "error": self._down_message()}
            try:
                if cmd == "step":
                    n = request.get("steps", 1)
                    return {"ok": True, "step": self.step(n), "breakpoint": None}
                answered = answer(self._session, request)
            except HeraError as exc:
                return {"ok": False, "error": exc.message}
            except Exception as exc:  # noqa: BLE001 - a bad request must not end the agent
                return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if answered is None:
            return {"ok": False, "error": f"agent {self.id} is driven by a Python program "
                                          f"(pid {os.getpid()}); it takes no {cmd!r} here"}
        return {"ok": True, **answered}

    def _stream(self, conn: Any) -> None:
        """An ``io`` connection: its lines go into the input area."""
        try:
            while (line := conn.read_line()) is not None:
                try:
                    self.feed(line.decode("utf-8", "replace"))
                except HeraError:
                    return
        except (OSError, ValueError):
            pass
