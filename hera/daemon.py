"""Detaching an agent from the terminal (``up --daemon``).

The parent forks; the child starts a new session and forks again, so the
agent can never regain a controlling terminal; the grandchild runs the
agent with stdio on its log file. The parent waits on a pipe until the
agent reports that it is loaded and its control channel is bound (or why it
failed), and only then returns.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, Callable

from hera.errors import HeraError

Ready = Callable[[dict[str, Any]], None]


def run_detached(start: Callable[[Ready], Any]) -> dict[str, Any]:
    """Run ``start(ready)`` in a detached grandchild; return what it passed
    to ``ready`` (``{"ok": True, ...}``), or ``{"ok": False, "error": ...}``
    if it failed before that."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
        os.close(read_end)
        os.waitpid(pid, 0)
        data = b"".join(chunks)
        try:
            return json.loads(data)
        except ValueError:
            return {"ok": False, "error": "the agent died while starting (see its log)"}

    # The child: a new session, then a grandchild that is no session leader.
    os.close(read_end)
    os.setsid()
    if os.fork():
        os._exit(0)
    reported = False

    def report(message: dict[str, Any]) -> None:
        nonlocal reported
        if reported:
            return
        reported = True
        try:
            os.write(write_end, json.dumps(message).encode())
        finally:
            os.close(write_end)

    code = 0
    try:
        start(lambda info: report({"ok": True, **info}))
    except HeraError as exc:
        report({"ok": False, "error": exc.message})
        if not sys.stderr.isatty():  # the log; a terminal's user hears it from the parent
            print(f"hera: error: {exc.message}", file=sys.stderr)
        code = exc.exit_code
    except BaseException as exc:  # noqa: BLE001 - the parent must hear of it
        report({"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"})
        traceback.print_exc()
        code = 1
    finally:
        report({"ok": False, "error": "the agent stopped before it was ready"})
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
