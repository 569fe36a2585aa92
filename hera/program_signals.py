"""The signal handling of the agents a Python program has up (hera.api):
what ``hera down``, SIGTERM, SIGQUIT, SIGUSR1 and Ctrl-C do to them."""

from __future__ import annotations

import _signal
import os
import signal
import threading
from typing import Any, Protocol


class Agent(Protocol):
    """What a signal asks of an agent a program has up
    (:class:`hera.program_agent.Agent`)."""

    def _ask(self, name: str) -> None:
        """Note signal ``name``, to act on it between two family calls."""


class SignalWatch:
    """The signal handlers of the agents up in this process (installed from
    the main thread only: elsewhere Python cannot, and the program's own
    handling stays).

    SIGTERM, SIGHUP, SIGPWR and SIGXCPU save and down every such agent, and
    the program goes on (the agents raise :class:`AgentDown`); SIGQUIT does
    the same, then ends the process with a core dump; SIGUSR1 saves them
    (a checkpoint). SIGINT while an agent steps stops it between steps and
    raises ``KeyboardInterrupt``; at any other time it does what it did
    before. Without agents, every signal does what it did before.
    """

    NAMES = ("SIGTERM", "SIGHUP", "SIGPWR", "SIGXCPU", "SIGQUIT", "SIGUSR1")

    def __init__(self) -> None:
        self.agents: list[Agent] = []
        self.previous: dict[int, Any] = {}
        self.interrupted = False
        self.depth = 0
        self.guard = threading.Lock()
        self.handler = self._note  # one bound method, so that 'is' finds it installed

    def add(self, agent: Agent) -> None:
        with self.guard:
            self.agents.append(agent)
            if threading.current_thread() is not threading.main_thread():
                return
            for name in self.NAMES:
                signum = getattr(signal, name, None)
                if signum is not None and signal.getsignal(signum) is not self.handler:
                    self.previous[signum] = signal.signal(signum, self.handler)

    def remove(self, agent: Agent) -> None:
        with self.guard:
            if agent in self.agents:
                self.agents.remove(agent)
            if not self.agents and threading.current_thread() is threading.main_thread():
                self._restore()  # else the next signal does it, on the main thread

    def _restore(self) -> None:
        for signum, handler in self.previous.items():
            if signal.getsignal(signum) is self.handler:
                signal.signal(signum, handler)
        self.previous.clear()

    def stepping(self) -> "Stepping":
        return Stepping(self)

    def _note(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if name == "SIGINT" and self.depth:
            self.interrupted = True
            return
        if name != "SIGINT" and self.agents:
            for agent in list(self.agents):
                agent._ask(name)
            return
        # not ours to act on: what would have happened without us
        previous = self.previous.get(signum, signal.SIG_DFL)
        if not self.agents:  # the last agent went down on another thread
            self._restore()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            if name == "SIGINT":
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


class Stepping:
    """While an agent steps on the main thread: SIGINT is held until the
    family's call returns (one cheap check per call while it is ours)."""

    def __init__(self, watch: SignalWatch):
        self.watch = watch

    def __enter__(self) -> None:
        watch = self.watch
        if threading.current_thread() is threading.main_thread():
            current = _getsignal(signal.SIGINT)
            if current is not watch.handler:  # a notebook puts its own back for each cell
                watch.previous[signal.SIGINT] = current
                signal.signal(signal.SIGINT, watch.handler)
            watch.depth += 1
            self.counted = True
        else:
            self.counted = False

    def __exit__(self, kind: type | None, error: BaseException | None, tb: object) -> None:
        watch = self.watch
        if not self.counted:
            return
        watch.depth -= 1
        if watch.depth == 0 and watch.interrupted:
            watch.interrupted = False
            if kind is None:
                raise KeyboardInterrupt


SIGNALS = SignalWatch()
# signal.getsignal wraps its answer in an enum: 60 times the cost of the
# check itself, once per step call
_getsignal = getattr(_signal, "getsignal", signal.getsignal)
