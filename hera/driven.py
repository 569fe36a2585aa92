"""What an agent driven by a program offers, in this process or over the
control channel (see :mod:`hera.api`)."""

from __future__ import annotations

from typing import Any, Callable

from hera.errors import HeraError


class AgentDown(HeraError):
    """The agent is down: it was downed, by this program or from outside
    (``hera down``, a signal), and takes no more calls."""


class Driven:
    """What both kinds of agent offer (see :class:`Agent` and
    :class:`RemoteAgent`)."""

    id: str
    callsign: str

    def step(self, n: int = 1) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def steps(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def run_until(self, condition: Callable[[Any], bool], *, max_steps: int,
                  every: int = 1) -> bool:
        """Step until ``condition(agent)`` is true, checking it every
        ``every`` steps, for at most ``max_steps`` steps; whether it came true.

        :raises HeraError: for a bound that is not a whole number >= 1.
        """
        for name, value in (("max_steps", max_steps), ("every", every)):
            if type(value) is not int or value < 1:
                raise HeraError(f"run_until takes {name} as a whole number >= 1, not {value!r}")
        goal = self.steps + max_steps
        while self.steps < goal:
            self.step(min(every, goal - self.steps))
            if condition(self):
                return True
        return False

    def freeze(self) -> None:
        """Stop all adaptation from the next step on: the agent runs on, but
        nothing it has learned changes (for labelling and testing)."""
        self._set_frozen(True)

    def unfreeze(self) -> None:
        """Let the agent learn again from the next step on."""
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} ({self.callsign})>"
