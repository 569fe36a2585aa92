"""``up`` in the foreground: load an agent, iterate, save it on the way out.

Signal handlers only set flags; the loop looks at them between chunks of
steps, so a step is never cut in half and a second SIGTERM during the save
does not start a second save.

=========  ==============================================================
SIGTERM    stop after the current chunk, save to the cache, exit 0
SIGINT     the same (Ctrl-C never loses an agent)
SIGHUP     the terminal is gone: stop printing, keep running
=========  ==============================================================
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable

from hera import devices
from hera.errors import HeraError
from hera.instance import InstanceFile
from hera.manager import Target, add_install_record, check_family, now_iso
from hera.output import human_count
from hera.plugins import Plugins

# Chunks aim at this many seconds, so a down is answered within about that.
_CHUNK_SECONDS = 0.1
_MAX_CHUNK = 10_000


@dataclass
class StopFlags:
    """What the signal handlers asked for."""

    stop: str | None = None
    detached: bool = False
    received: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class UpOptions:
    """How to run: device, how many steps, chunking, how loud."""

    device: str | None = None
    steps: int | None = None
    chunk: int | None = None
    silent: bool = False
    checkpoint: float = 0.0  # seconds between saves while running; 0: only at the end


@dataclass(frozen=True)
class UpResult:
    """What a run did."""

    agent_id: str
    callsign: str
    steps_done: int
    total_steps: int
    reason: str
    path: Path


class _SignalGuard:
    """Installs flag-setting handlers and restores the old ones."""

    HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self, flags: StopFlags):
        self.flags = flags
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "_SignalGuard":
        for signum in self.HANDLED:
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.flags.received.append(signum)
        if signum == signal.SIGHUP:
            self.flags.detached = True
        elif self.flags.stop is None:
            self.flags.stop = signal.Signals(signum).name


def up(plugins: Plugins, target: Target, options: UpOptions,
       say: Callable[[str], None] | None = None) -> UpResult:
    """Run an agent in the foreground until ``options.steps`` are done or it
    is told to stop; then write its complete state to the cache."""
    store = target.store
    flags = StopFlags()
    quiet = options.silent
    emit = say or (lambda text: print(text, flush=True))

    def tell(text: str) -> None:
        if not quiet and not flags.detached:
            try:
                emit(text)
            except OSError:  # the terminal went away
                flags.detached = True

    with _SignalGuard(flags):
        lock = store.lock(target.id, op="starting")
        try:
            device = devices.choose_device(options.device)  # before installing anything
            if not target.installed:
                instance = InstanceFile.read(target.file)
                check_family(plugins, instance)
                add_install_record(instance, store)
                store.save(instance)
                tell(f"installed {instance.id} ({instance.callsign}) for {store.scope.label}")
            instance = store.load(target.id)
            check_family(plugins, instance)
            lock.record(op="starting", device=device)
            family = instance.family
            loaded = plugins.hook.hera_load(
                family=family, definition=dict(instance.definition), tensors=instance.tensors(),
                state=instance.state(), device=device, seed=instance.meta["seed"],
            )
            if loaded is None:  # pragma: no cover - check_family found it
                raise HeraError(f"family {family} did not load agent {instance.id}")
            start_steps = instance.steps
            instance.meta["incarnation"] += 1  # every save of this run carries it

            def save(done: int) -> Path:
                snapshot = plugins.hook.hera_serialize(family=family, agent=loaded.handle)
                instance.definition = dict(snapshot.definition)
                instance.set_tensors(snapshot.tensors, snapshot.state)
                instance.meta["steps"] = start_steps + done
                instance.meta["saved"] = now_iso()
                return store.save(instance)

            lock.record(op="up", device=loaded.device, backend=loaded.backend, mode="foreground",
                        steps=start_steps, since=now_iso())
            tell(f"up {instance.id} ({instance.callsign}) {family}/{instance.layout} on "
                 f"{loaded.device} [{loaded.backend}] at step {start_steps}"
                 + (f", {options.steps} steps to go" if options.steps is not None else ""))
            done = _iterate(plugins, family, loaded.handle, options, flags, save)
            reason = flags.stop or ("steps done" if options.steps is not None else "stopped")
            path = save(done)
            tell(f"down {instance.id} ({instance.callsign}) at step {instance.steps} "
                 f"({human_count(done)} steps this run; {reason.lower()})")
        finally:
            lock.release()
    return UpResult(instance.id, instance.callsign, done, instance.steps, reason, path)


def _iterate(plugins: Plugins, family: str, handle: Any, options: UpOptions,
             flags: StopFlags, save: Callable[[int], Path]) -> int:
    """Step in chunks until the step budget is spent or a stop is flagged,
    saving a checkpoint every ``options.checkpoint`` seconds."""
    step = plugins.hook.hera_step
    last_save = time.monotonic()
    done = 0
    chunk = options.chunk or 1
    adaptive = options.chunk is None
    while flags.stop is None and (options.steps is None or done < options.steps):
        n = chunk if options.steps is None else min(chunk, options.steps - done)
        began = time.perf_counter()
        taken = step(family=family, agent=handle, steps=n)
        if taken is None or taken < 1:
            raise HeraError(f"family {family} did not step")
        done += taken
        if adaptive:
            per_step = (time.perf_counter() - began) / taken
            chunk = max(1, min(_MAX_CHUNK, int(_CHUNK_SECONDS / max(per_step, 1e-7))))
        if flags.detached:
            _detach_stdio()
        if options.checkpoint and time.monotonic() - last_save >= options.checkpoint \
                and flags.stop is None and (options.steps is None or done < options.steps):
            save(done)
            last_save = time.monotonic()
    return done


def _detach_stdio() -> None:
    """Point stdio at /dev/null once the terminal is gone."""
    if getattr(_detach_stdio, "done", False):
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass
    os.close(devnull)
    _detach_stdio.done = True  # type: ignore[attr-defined]
    sys.stdout = open(os.devnull, "w")
    sys.stderr = open(os.devnull, "w")
