"""Descriptors held back for when every other one is taken.

A process that runs out of file descriptors (a flood of clients, a leak)
can neither save its agent nor turn a client away. Holding a few open on
``/dev/null`` and letting go of them at the moment they are needed keeps
both possible (the way servers keep a spare descriptor for ``accept``).
"""

from __future__ import annotations

import os


class DescriptorReserve:
    """``count`` descriptors held open: :meth:`release` them just before the
    work that needs them, :meth:`take` them again after."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._fds: list[int] = []
        self.take()

    def take(self) -> None:
        """Hold :attr:`count` descriptors again (as many as can be had)."""
        while len(self._fds) < self.count:
            try:
                self._fds.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                return

    def release(self) -> None:
        """Give the held descriptors back to the process."""
        while self._fds:
            os.close(self._fds.pop())

    @property
    def held(self) -> int:
        """How many descriptors are held now."""
        return len(self._fds)
