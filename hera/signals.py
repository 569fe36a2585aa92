"""The seed's signal table, and handlers that only take note.

Signals outside the table that would end the process by default have a
meaning of their own too (:data:`OTHER_MEANINGS`): none of them loses a run.

Handlers append the signal to an inbox; the runner's loop reads it between
chunks of steps and acts (see :data:`MEANINGS`), so a step is never cut in
half and nothing heavy runs inside a handler. SIGSTOP and SIGKILL cannot be
caught: ``hera signal SIGSTOP`` asks over the control channel instead, and
``hera signal SIGKILL`` kills the verified pid.
"""

from __future__ import annotations

import collections
import signal
from types import FrameType
from typing import Any

#: What each named signal does to an upped agent (the seed's table).
MEANINGS: dict[str, str] = {
    "SIGCONT": "continue the inner loop if stopped; release the terminal",
    "SIGSTOP": "stop the inner loop; attach a terminal (a prompt) if in the background",
    "SIGTSTP": "stop the inner loop and open the prompt, if a terminal is attached",
    "SIGHUP": "detach from the terminal: output goes to the log files at once",
    "SIGINT": "standby: stop stepping, stay loaded",
    "SIGQUIT": "save to the cache, then terminate with a core dump",
    "SIGABRT": "terminate with a core dump, without saving",
    "SIGKILL": "terminate at once, without saving or cleaning up",
    "SIGTERM": "save to the cache and terminate normally",
    "SIGTTIN": "from now on, lines on stdin go into the agent's input area",
    "SIGTTOU": "from now on, the output area is written line by line to stdout",
}

#: Signals outside the seed's table whose default action would end the
#: process without a save, and what each does to an upped agent instead.
OTHER_MEANINGS: dict[str, str] = {
    "SIGUSR1": "save to the cache now and run on (a checkpoint)",
    "SIGPWR": "save to the cache and terminate normally (power is failing)",
    "SIGXCPU": "save to the cache and terminate normally (CPU time limit reached)",
    "SIGUSR2": "ignored",
    "SIGALRM": "ignored",
    "SIGVTALRM": "ignored",
    "SIGPROF": "ignored",
    "SIGIO": "ignored",
    "SIGXFSZ": "ignored: a write past the file-size limit fails instead, and the save says so",
}

#: Signals after which the agent does not run on.
ENDING = ("SIGTERM", "SIGQUIT", "SIGABRT", "SIGPWR", "SIGXCPU")

#: The signals the agent process catches (those of this platform).
CAUGHT = tuple(getattr(signal, name) for name in (*MEANINGS, *OTHER_MEANINGS)
               if name not in ("SIGSTOP", "SIGKILL") and hasattr(signal, name)
               and not OTHER_MEANINGS.get(name, "").startswith("ignored"))

#: The signals the agent process ignores.
IGNORED = tuple(getattr(signal, name) for name, meaning in OTHER_MEANINGS.items()
                if meaning.startswith("ignored") and hasattr(signal, name))


def parse_name(text: str) -> str:
    """``term``, ``TERM``, ``SIGTERM`` or ``15`` → ``SIGTERM``.

    :raises ValueError: not a signal of the table.
    """
    word = text.strip().upper()
    if word.isdigit():
        try:
            word = signal.Signals(int(word)).name
        except ValueError:
            raise ValueError(text) from None
    if not word.startswith("SIG"):
        word = "SIG" + word
    if word not in MEANINGS and word not in OTHER_MEANINGS:
        raise ValueError(text)
    return word


class SignalInbox:
    """Installs note-taking handlers for :data:`CAUGHT`; restores the old
    ones on exit."""

    def __init__(self) -> None:
        self.pending: collections.deque[str] = collections.deque()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "SignalInbox":
        for signum in CAUGHT:
            self._previous[signum] = signal.signal(signum, self._note)
        for signum in IGNORED:
            self._previous[signum] = signal.signal(signum, signal.SIG_IGN)
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def restore(self) -> None:
        """Put back the handlers that were there before."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signal.Signals(signum).name)

    def post(self, name: str) -> None:
        """Act as if signal ``name`` had arrived (the control channel's way)."""
        self.pending.append(name)

    def discard(self, *names: str) -> None:
        """Forget pending signals called ``names``."""
        # Rotate in place: a handler may append while this runs.
        for _ in range(len(self.pending)):
            name = self.pending.popleft()
            if name not in names:
                self.pending.append(name)

    def ending(self) -> bool:
        """Whether a signal that ends the agent is pending."""
        return any(name in ENDING for name in self.pending)

    def take(self) -> list[str]:
        """The signals noted since the last call, oldest first."""
        taken = []
        while self.pending:
            taken.append(self.pending.popleft())
        return taken
