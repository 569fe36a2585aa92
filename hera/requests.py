"""Control requests handed from the control channel's threads to the
stepping thread, which alone touches the agent: a request waits (up to
``TIMEOUT_S``) for its answer, and one nobody waits for any more is dropped
rather than carried out late.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from hera.errors import HeraError

#: How long a control request waits for the stepping thread (which may sit
#: at a prompt).
TIMEOUT_S = 30.0


class Requests:
    """The queue between control threads and the stepping thread.

    :param execute: carries out one request on the stepping thread and
        returns the reply's fields.
    :param at_once: answers the requests that need not wait (on the control
        thread), or gives ``None``.
    """

    def __init__(self, execute: Callable[[dict[str, Any]], dict[str, Any]],
                 at_once: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda r: None):
        self._execute = execute
        self._at_once = at_once
        self._queue: queue.Queue[tuple[dict[str, Any], queue.Queue, threading.Event]] = \
            queue.Queue()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer a control request (called on a control thread)."""
        quick = self._at_once(request)
        if quick is not None:
            return quick
        reply: queue.Queue = queue.Queue(maxsize=1)
        abandoned = threading.Event()
        self._queue.put((request, reply, abandoned))
        try:
            return reply.get(timeout=TIMEOUT_S)
        except queue.Empty:
            abandoned.set()  # not to be carried out later, when nobody waits for it
            return {"ok": False, "error": "the agent is busy (at its prompt?); try again"}

    def serve(self) -> None:
        """Carry out the queued requests (on the stepping thread)."""
        while True:
            try:
                request, reply, abandoned = self._queue.get_nowait()
            except queue.Empty:
                return
            if abandoned.is_set():
                continue
            try:
                answer = {"ok": True, **self._execute(request)}
            except HeraError as exc:
                answer = {"ok": False, "error": exc.message}
            except Exception as exc:  # noqa: BLE001 - a bad request must not kill the agent
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            reply.put(answer)
