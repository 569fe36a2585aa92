"""The agent's terminal: what it prints, and detaching from it.

A detached agent writes to ``<runtime>/<id>.log`` instead: its stdin reads
from /dev/null and its stdout and stderr go to the log, so it never blocks
on, or is stopped by, a terminal it no longer has.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from hera.errors import HeraError
from hera.pidfile import open_regular


class Console:
    """Printing for an upped agent, aware of --silent and of detaching."""

    def __init__(self, log_path: Path, silent: bool = False, detached: bool = False,
                 owner: tuple[int, int] | None = None, detachable: bool = True):
        self.log_path = log_path
        #: False in a Python program's process, whose terminal is its own
        self.detachable = detachable
        self.owner = owner  # whose directory the log lies in (see hera.privilege)
        self.silent = silent
        self.detached = False
        self._detach_failed = False
        self._progress_shown = False
        if detached:
            self.detach()

    @property
    def has_terminal(self) -> bool:
        """Whether a person can be prompted here (a terminal on stdin and stdout)."""
        if self.detached:
            return False
        try:  # ...and this process in the terminal's foreground, not in the background
            return os.isatty(0) and os.isatty(1) and os.tcgetpgrp(0) == os.getpgrp()
        except OSError:
            return False

    @property
    def shows_progress(self) -> bool:
        """Whether a progress line belongs here: stdout is a terminal, not
        silenced, not detached."""
        if self.silent or self.detached:
            return False
        try:
            return os.isatty(1)
        except (OSError, ValueError):
            return False

    def show_progress(self, text: str) -> None:
        """Draw ``text`` over the current terminal line (no newline); the
        next line printed replaces it."""
        if not self.shows_progress:
            return
        try:
            sys.stdout.write(f"\r{text}\x1b[K")
            sys.stdout.flush()
            self._progress_shown = True
        except OSError:
            pass

    def clear_progress(self) -> None:
        """Remove the progress line, if one is shown."""
        if self._progress_shown:
            self._progress_shown = False
            try:
                sys.stdout.write("\r\x1b[K")
                sys.stdout.flush()
            except OSError:
                pass

    def tell(self, text: str) -> None:
        """A line for the person at the terminal (or the log, once detached)."""
        if self.silent and not self.detached:
            return
        self._print(text, sys.stdout)

    def warn(self, text: str) -> None:
        """A line on stderr, even when silent."""
        self._print(f"hera: {text}", sys.stderr)

    def _print(self, text: str, stream: TextIO) -> None:
        """Print a line; if the terminal went away, detach and print it to
        the log; if the log cannot take it either (a full disk, a file-size
        limit), the line is lost, never the run."""
        self.clear_progress()
        try:
            print(text, file=stream, flush=True)
            return
        except OSError:
            if self.detached:
                return
        if self.try_detach():  # stdout and stderr now lead to the log
            try:
                print(text, file=stream, flush=True)
            except OSError:  # a log that cannot take it either
                pass

    def write_output(self, line: str) -> None:
        """One of the agent's output lines, on stdout (piped with SIGTTOU).

        Written to the file descriptor directly, not through ``sys.stdout``:
        the caller is a writer thread that may block on a full pipe, and it
        must not hold ``sys.stdout``'s lock while it does (the interpreter
        takes that lock to flush at exit)."""
        data = (line + "\n").encode()
        try:
            while data:
                data = data[os.write(sys.stdout.fileno(), data):]
        except (OSError, ValueError):
            self.try_detach()

    def try_detach(self) -> bool:
        """:meth:`detach`, or say why it could not (a log that cannot be
        opened must not end the run); whether it is detached now."""
        if self.detached or self._detach_failed or not self.detachable:
            return self.detached
        try:
            self.detach()
        except (OSError, HeraError) as exc:
            self._detach_failed = True  # tried once; the warning below must not try again
            self.warn(f"cannot detach to the log: {getattr(exc, 'message', exc)}")
        return self.detached

    def detach(self) -> None:
        """Point stdin at /dev/null and stdout/stderr at the log, at once."""
        if self.detached:
            return
        log = open_regular(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, self.owner)
        try:
            null = os.open(os.devnull, os.O_RDONLY)
        except OSError:
            os.close(log)
            raise
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            pass
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        self.detached = True

