"""Breakpoints: where a running agent stops for a look.

Three kinds, all checked between steps: at a step number, every N steps,
and when a condition over the live agent holds. A condition is a Python
expression (from the command line or the control channel) or a callable
(from the prompt), evaluated with ``agent`` bound to the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from hera.errors import UsageError

@dataclass
class Breakpoint:
    """One breakpoint; exactly one of ``at``, ``every`` and ``when`` is set."""

    at: int | None = None
    every: int | None = None
    when: str | Callable[[Any], bool] | None = None
    id: int = 0  # numbered by the session that holds it
    error: str | None = None  # why its condition failed, when it did

    def __post_init__(self) -> None:
        given = [x for x in (self.at, self.every, self.when) if x is not None]
        if len(given) != 1:
            raise UsageError("a breakpoint takes one of at=STEP, every=N or when=CONDITION")
        for name in ("at", "every"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0):
                raise UsageError(f"breakpoint {name}= takes a whole number of steps, not {value!r}")
        if self.when is not None and not (isinstance(self.when, str) or callable(self.when)):
            raise UsageError("breakpoint when= takes an expression or a callable")
        if self.every is not None and self.every < 1:
            raise UsageError(f"a breakpoint every {self.every} steps is not possible")
        if isinstance(self.when, str):
            try:
                self._code = compile(self.when, "<breakpoint>", "eval")
            except SyntaxError as exc:
                raise UsageError(f"breakpoint condition {self.when!r}: {exc.msg}") from None

    @property
    def conditional(self) -> bool:
        """Whether it must be checked after every single step."""
        return self.when is not None

    def steps_until(self, step: int) -> int | None:
        """Steps from ``step`` to where this breakpoint fires next (``None``
        for conditions and for a step already passed)."""
        if self.at is not None:
            return self.at - step if self.at > step else None
        if self.every is not None:
            return self.every - step % self.every
        return None

    def hit(self, step: int, agent: Any) -> bool:
        """Whether it fires at ``step`` (after that step was taken)."""
        if self.at is not None:
            return step == self.at
        if self.every is not None:
            return step > 0 and step % self.every == 0
        try:
            if callable(self.when):
                return bool(self.when(agent))
            return bool(eval(self._code, {"__builtins__": __builtins__}, {"agent": agent}))
        except Exception as exc:  # noqa: BLE001 - a bad condition stops the agent, not kills it
            self.error = f"{type(exc).__name__}: {exc}"
            return True

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (for status and the control channel)."""
        if self.at is not None:
            return {"id": self.id, "at": self.at}
        if self.every is not None:
            return {"id": self.id, "every": self.every}
        text = self.when if isinstance(self.when, str) else getattr(self.when, "__name__", "callable")
        return {"id": self.id, "when": text, **({"error": self.error} if self.error else {})}
