"""The progress line of an agent running in the foreground on a terminal:
its step, steps per second, spikes per second (when its family counts
them: ``hera_activity``) and, with a step budget, the time left, redrawn
in place. Nothing is shown when stdout is not a terminal, with --silent, or
once the agent is detached: a detached agent (a daemon) writes the same line
to its log instead, with the time, every ``--log-every`` seconds."""

from __future__ import annotations

import time
from typing import Callable

from hera.output import human_count

#: Seconds between redraws (and the window of the rate).
INTERVAL = 0.5


class Progress:
    """Draws ``show(text)`` at most every :data:`INTERVAL` seconds from the
    step counts it is given."""

    def __init__(self, show: Callable[[str], None], start_step: int, goal: int | None,
                 clock: Callable[[], float] = time.monotonic, interval: float = INTERVAL,
                 spikes: Callable[[], int | None] | None = None):
        self.show = show
        self.goal = goal
        self.interval = interval
        self.clock = clock
        self.last_time = clock()
        self.last_step = start_step
        self.rate: float | None = None
        #: all spikes so far (read only when the line is drawn), if counted
        self.spikes = spikes
        self.last_spikes = None if spikes is None else spikes()

    def update(self, step: int) -> None:
        """Note that the agent is at ``step``; redraw if it is time."""
        now = self.clock()
        elapsed = now - self.last_time
        if elapsed < self.interval:
            return
        current = (step - self.last_step) / elapsed
        # a light smoothing, so that time left does not jump with each chunk
        self.rate = current if self.rate is None else 0.7 * current + 0.3 * self.rate
        spike_rate = None
        if self.spikes is not None:
            spikes = self.spikes()
            if spikes is not None and self.last_spikes is not None:
                spike_rate = (spikes - self.last_spikes) / elapsed
            self.last_spikes = spikes
        self.last_time, self.last_step = now, step
        self.show(line(step, self.goal, self.rate, spike_rate))


def line(step: int, goal: int | None, rate: float, spike_rate: float | None = None) -> str:
    """``step 1,200 of 5,000 · 10.3k steps/s · 52k spikes/s · 0.4 s left``."""
    text = f"step {step:,}" + (f" of {goal:,}" if goal is not None else "")
    text += f" · {human_count(round(rate))} steps/s"
    if spike_rate is not None:
        text += f" · {human_count(round(spike_rate))} spikes/s"
    if goal is not None and rate > 0:
        text += f" · {duration(max(goal - step, 0) / rate)} left"
    return text


def duration(seconds: float) -> str:
    """``4.2 s``, ``42 s``, ``3 min 20 s``, ``2 h 05 min``."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
