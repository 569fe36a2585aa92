"""``map`` over threads, results in order, a bounded number ahead.

For work that releases the GIL (base64, hashing, file reads, numpy
copies): the next pieces are worked on while the caller handles this one,
and never more than ``ahead`` pieces are held at a time.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def workers() -> int:
    """Threads worth using: the cores this process may run on, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def ordered_map(work: Callable[[Item], Result], items: Iterable[Item],
                ahead: int | None = None) -> Iterator[Result]:
    """``work(item)`` for each item, yielded in the items' order.

    With one core, or ``ahead`` of 0, it is a plain loop; so it is once
    the interpreter is exiting (threads can't be started then). A failure is
    raised where its result would have been yielded; the work queued after
    it is cancelled (what runs already is waited for).
    """
    threads = workers()
    ahead = threads + 1 if ahead is None else ahead
    items = iter(items)
    if threads == 1 or ahead == 0:
        yield from map(work, items)
        return
    pending: deque[Future[Result]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="hera-io") as pool:
        try:
            for item in items:
                try:
                    pending.append(pool.submit(work, item))
                except RuntimeError:  # the interpreter is exiting (a save at exit): no threads
                    while pending:
                        yield pending.popleft().result()
                    yield work(item)
                    yield from map(work, items)
                    return
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
