"""The one error type the command line turns into a single line on stderr."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: Exit codes, named so the tests and the docs agree on them.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class HeraError(Exception):
    """A failure the user can act on: its message is shown as one line.

    Families raise it (or a subclass) too, for example for an unknown layout
    parameter; the command line prints ``hera: error: <message>`` and exits
    with :attr:`exit_code`, without a traceback unless ``HERA_DEBUG=1``.
    """

    exit_code = EXIT_ERROR

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class RankLost(HeraError):
    """An agent on several processes lost one of them (killed, hung, or
    failed): it cannot go on, and nothing more may be saved of it."""


class UsageError(HeraError):
    """The command line itself is wrong (exit code 2, like argparse)."""

    exit_code = EXIT_USAGE


class InstanceFileError(HeraError):
    """An instance file is unreadable, tampered with, or of another format."""


class DefinitionError(HeraError):
    """A layout parameter or a grow request is not acceptable to a family."""


class AgentRunningError(HeraError):
    """The agent is up, and the requested action needs it down."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the choice closest to a mistyped
    ``word``, or ``""`` when none is close: the tail of an error message."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
