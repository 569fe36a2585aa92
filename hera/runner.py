"""``up``: load an agent, run its inner loop, save it on the way out.

Order (after supervisor): take the agent's lock → pick and check the device
→ upgrade a file of an older data format (keeping the store's original) →
install on first up → check resources (the family's ``hera_simulate``)
against the device → load → bind the control channel → record pid, mode and
socket in the pid-file → (daemon: tell the waiting parent) → loop → save
(unless SIGABRT) → remove socket and pid-file → for SIGQUIT/SIGABRT, end
with a core dump. What each signal does is in :mod:`hera.signals`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hera import devices
from hera.breakpoints import Breakpoint
from hera.console import Console
from hera.control import ControlServer
from hera.errors import HeraError
from hera.hooks.types import ResourceReport
from hera.instance import InstanceFile
from hera.loop import Loop
from hera.manager import Target, install_unlocked, now_iso, set_aside, upgrade
from hera.output import human_bytes, human_count
from hera.pidfile import PidLock
from hera.progress import duration
from hera.plugins import Plugins
from hera.reserve import DescriptorReserve
from hera.session import AgentSession
from hera.signals import SignalInbox

MODES = ("foreground", "interactive", "daemon")


@dataclass(frozen=True)
class UpOptions:
    """How to run an agent."""

    device: str | None = None
    steps: int | None = None
    chunk: int | None = None
    silent: bool = False
    checkpoint: float = 0.0  # seconds between saves while running; 0: only at the end
    mode: str = "foreground"
    prompt_after: int | None = None
    breakpoints: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    output_every: int = 100


@dataclass(frozen=True)
class UpResult:
    """What a run did."""

    agent_id: str
    callsign: str
    steps_done: int
    total_steps: int
    reason: str
    path: Path | None
    #: wall time of the stepping loop (paused time included; 0 if it never ran)
    seconds: float = 0.0


def resource_report(plugins: Plugins, instance: InstanceFile, device: str) -> ResourceReport | None:
    """The family's estimate of what ``instance`` needs on ``device``."""
    return plugins.hook.hera_simulate(family=instance.family, definition=dict(instance.definition),
                                      device=device)


def check_fits(report: ResourceReport | None, device: str, capacity: int | None = None) -> None:
    """Refuse, before anything is loaded, an agent the device cannot hold
    (``capacity``: the device's bytes, when already known)."""
    if report is None:
        return
    capacity = devices.device_memory(device) if capacity is None else capacity
    if report.total > capacity:
        biggest = max(report.tensors.items(), key=lambda kv: kv[1])
        raise HeraError(
            f"the agent needs {human_bytes(report.total)} on {device}, which has "
            f"{human_bytes(capacity)}; largest part: {biggest[0]} ({human_bytes(biggest[1])})"
            + (f"; driven by {report.dominant}" if report.dominant else ""))


def up(plugins: Plugins, target: Target, options: UpOptions,
       say: Callable[[str], None] | None = None,
       ready: Callable[[dict[str, Any]], None] | None = None) -> UpResult:
    """Run an agent until its steps are done or it is told to stop; then
    write its complete state to the cache (not for SIGABRT).

    :param say: where banner lines go (default: the console).
    :param ready: called once the agent is loaded and its control channel
        bound (the daemon's parent waits for it).
    """
    if options.mode not in MODES:
        raise HeraError(f"unknown mode {options.mode!r}")
    for spec in options.breakpoints:
        Breakpoint(**spec)  # a bad breakpoint fails before anything is loaded
    store = target.store
    reason, path, session, outcome, elapsed = "not started", None, None, None, 0.0
    with SignalInbox() as inbox:
        lock = store.lock(target.id, op="starting")  # creates the runtime dir
        server = None
        # the save's temp file, the directory fsync, a rescue file, one spare
        reserve = DescriptorReserve(4)
        try:
            try:
                console = Console(store.log_path(target.id), silent=options.silent,
                                  detached=options.mode == "daemon", owner=store.owner)
                lock.record(op="starting", mode=options.mode)
            except OSError as exc:  # a full or read-only runtime dir
                raise HeraError(f"cannot start agent {target.id} in {store.run_dir}: "
                                f"{exc.strerror}") from None
            tell = say or console.tell
            device = devices.choose_device(options.device)  # before installing anything
            # checked again under the lock: no race
            installed = store.has(target.id) and target.replaces is None
            if not installed and target.file is None:
                raise HeraError(f"agent {target.id} is no longer installed")
            instance = store.load(target.id) if installed else InstanceFile.read(target.file)
            older = upgrade(plugins, instance, store if installed else None)
            check_fits(resource_report(plugins, instance, device), device)  # before installing
            _record(lock, op="starting", device=device, mode=options.mode)
            loaded = plugins.hook.hera_load(
                family=instance.family, definition=dict(instance.definition),
                tensors=instance.tensors(), state=instance.state(), device=device,
                seed=instance.meta["seed"])
            if loaded is None:  # pragma: no cover - check_family found it
                raise HeraError(f"family {instance.family} did not load agent {instance.id}")
            if not installed:  # only once its family has taken it: no agent that cannot up
                if target.replaces is not None and store.has(target.id):
                    set_aside(store, target.id, target.replaces)
                    tell(f"the installed copy of {target.id} is now in {target.replaces}")
                install_unlocked(instance, store)
                tell(f"installed {instance.id} ({instance.callsign}) for {store.scope.label}")
            if older is not None:
                tell(f"upgraded {instance.id} ({instance.callsign}) from {instance.family} data "
                     f"format {older} to {instance.meta['family']['data_format']}"
                     + (f"; the older file is kept as {store.older_format_path(target.id, older)}"
                        if installed else ""))
            session = AgentSession(plugins, instance, store, loaded, options.mode)
            for spec in options.breakpoints:
                session.add_breakpoint(**spec)

            def record(state: str, strict: bool = False) -> None:
                info = dict(op="up", device=session.device, backend=session.backend,
                            mode=options.mode, state=state, steps=session.step_count,
                            saved_steps=session.saved_steps, since=now_iso(),
                            socket=str(server.sock_path), start_steps=session.start_steps)
                if strict:
                    lock.record(**info)
                else:
                    _record(lock, **info)

            loop = Loop(session, inbox, console, steps=options.steps, chunk=options.chunk,
                        checkpoint=options.checkpoint, output_every=options.output_every,
                        prompt_after=options.prompt_after, on_state=record, reserve=reserve)
            server = ControlServer(store.socket_path(target.id), store.token_path(target.id),
                                   target.id, loop.handle_request, loop.stream,
                                   owner=store.owner)
            try:
                server.start()
                record(session.state, strict=True)  # no agent up that hera cannot see
            except OSError as exc:
                raise HeraError(f"cannot start agent {target.id} in {store.run_dir} "
                                f"(control channel, pid-file): {exc.strerror}") from None
            tell(f"up {instance.id} ({instance.callsign}) {instance.family}/{instance.layout} on "
                 f"{session.device} [{session.backend}] at step {session.step_count}"
                 + (f", {options.steps} steps to go" if options.steps is not None else "")
                 + ("" if options.mode == "foreground" else f", {options.mode}"))
            if ready is not None:
                ready({"id": instance.id, "callsign": instance.callsign, "pid": os.getpid(),
                       "device": session.device, "backend": session.backend,
                       "socket": str(server.sock_path), "log": str(console.log_path)})
            began = time.monotonic()
            try:
                reason = loop.run()
            except Exception as exc:
                reserve.release()
                _rescue_failed_run(session, console, exc)
                raise
            elapsed = time.monotonic() - began
            if reason == "SIGABRT":
                outcome = {"outcome": "not saved", "error": "SIGABRT: terminated without saving"}
            else:
                reserve.release()  # descriptors for the save, however many clients hold ours
                try:
                    path = _save_or_rescue(session, console)
                except HeraError as exc:
                    outcome = {"outcome": "save failed", "error": exc.message}
                    raise
                outcome = {"outcome": "saved"}
                tell(f"down {instance.id} ({instance.callsign}) at step {session.step_count} "
                     f"({human_count(session.done)} steps this run in {duration(elapsed)}, "
                     f"{human_count(round(session.done / max(elapsed, 1e-9)))} steps/s; "
                     f"{reason.lower()})")
        finally:
            if outcome is None:  # it failed: before the loop ran, or in it
                failure = sys.exc_info()[1]
                why = failure.message if isinstance(failure, HeraError) else \
                    f"{type(failure).__name__}: {failure}"
                outcome = {"outcome": "failed" if session else "not started", "error": why}
            # 'hera down' reads this through its own descriptor once the lock is free
            _record(lock, op="ended", reason=reason,
                    steps=session.step_count if session else target.header.meta["steps"],
                    saved_steps=session.saved_steps if session else target.header.meta["steps"],
                    **outcome)
            if server is not None:
                server.close()
            reserve.release()
            lock.release()
    if reason == "SIGQUIT":
        _core_dump(signal.SIGQUIT)
    elif reason == "SIGABRT":
        _core_dump(signal.SIGABRT)
    return UpResult(target.id, target.header.callsign, session.done if session else 0,
                    session.step_count if session else target.header.meta["steps"], reason, path,
                    elapsed)


def _record(lock: PidLock, **info: Any) -> None:
    """Update the pid-file's record; a full or read-only runtime dir costs
    the record, never the run."""
    try:
        lock.record(**info)
    except OSError:
        pass


def _save_or_rescue(session: AgentSession, console: Console) -> Path:
    """The final save; if the store cannot be written (disk full, permissions),
    the state goes to a rescue file rather than being lost with the process."""
    session.capture()
    try:
        return session.write()
    except (HeraError, OSError) as exc:
        failure = exc.message if isinstance(exc, HeraError) else str(exc)
        rescued = _write_rescue(session)
        if rescued is None:
            raise
        console.warn(f"could not save to the cache ({failure}); the agent's state is in "
                     f"{rescued}. Once the cache is writable: 'hera --uuid {session.id} "
                     f"destroy --yes' (the older copy), then 'hera install {rescued}'")
        raise HeraError(f"agent {session.id} was not saved to the cache; rescued to "
                        f"{rescued}") from None


def _rescue_failed_run(session: AgentSession, console: Console, failure: BaseException) -> None:
    """The run itself failed (a family's step, say): keep its state in a rescue
    file, but not over the cache copy, since the failure may have left it
    half-stepped."""
    try:
        session.capture()
    except Exception:  # noqa: BLE001 - the family cannot even give its state
        return
    rescued = _write_rescue(session)
    if rescued is not None:
        console.warn(f"the run failed at step {session.step_count} ({type(failure).__name__}: "
                     f"{failure}); the cache keeps the last save, and the state at the failure "
                     f"is in {rescued}")


def _write_rescue(session: AgentSession) -> Path | None:
    """Write the captured state to ``<id>.rescue.json`` in the first writable
    place of: the working directory, the runtime dir, home."""
    name = f"{session.id}.rescue.json"
    store = session.store
    # The run dir may be another user's: written as that user (hera.privilege).
    for folder, acting in ((Path.cwd(), nullcontext), (store.run_dir, store.acting),
                           (Path.home(), nullcontext)):
        try:
            with acting():
                session.instance.write(folder / name)
        except (OSError, HeraError):
            continue
        return folder / name
    return None


def _core_dump(signum: int) -> None:
    """End the process by ``signum``'s default action (a core dump where the
    core limit allows)."""
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    os.kill(os.getpid(), signum)
