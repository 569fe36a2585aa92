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

#: How an agent is up: the three of ``hera up``, and ``program`` (hera.api)
MODES = ("foreground", "interactive", "daemon", "program")


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
    log_every: float = 60.0  # seconds between progress lines in a daemon's log; 0: none
    record: Any = None  # hera.recording.RecordOptions: what to record, where it goes
    ranks: int = 1  # processes the agent runs on: rank 0 here, the rest spawned (hera.distributed)
    distributed: bool = False  # one of the ranks torchrun launched (RANK, WORLD_SIZE, ...)
    rank_timeout: float | None = None  # seconds before a rank that does not answer stops all


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
    #: where the recording went (--record), and why it did not, if it did not
    recording: Path | None = None
    recording_error: str | None = None


def _local_prompt(loop: Loop) -> None:
    """The Python prompt on this terminal (imported only when it opens)."""
    from hera.prompt import run_local_prompt

    run_local_prompt(loop)


def resource_report(plugins: Plugins, instance: InstanceFile, device: str,
                    measure: bool = False) -> ResourceReport | None:
    """What an up of ``instance`` needs on ``device``: the family's estimate,
    and on the CPU what the process adds (:mod:`hera.estimates`; ``measure``:
    measure the process if the cache has no figure for it yet)."""
    from hera.estimates import up_report

    report = plugins.family_hooks(instance.family).hera_simulate(
        definition=dict(instance.definition), device=device)
    return up_report(plugins, instance.family, report, device, instance.tensor_bytes(),
                     measure=measure)


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


class Run:
    """One up of an agent in this process, without its stepping: what the
    up holds (lock, console, loaded agent, control channel, pid-file) and
    how it ends. ``hera up`` steps it with a :class:`~hera.loop.Loop`; the
    Python API (:mod:`hera.api`) steps it on its caller's calls.

    Use: :meth:`start` (lock and console), :meth:`load` (device, upgrade,
    install, load), :meth:`serve` (control channel and pid-file), then
    :meth:`save` or :meth:`rescue`, and :meth:`close` in every case.
    """

    def __init__(self, plugins: Plugins, target: Target, mode: str, silent: bool = False,
                 say: Callable[[str], None] | None = None):
        if mode not in MODES:
            raise HeraError(f"unknown mode {mode!r}")
        self.plugins, self.target, self.mode, self.silent = plugins, target, mode, silent
        self._say = say
        self.session: AgentSession | None = None
        self.server: ControlServer | None = None
        self.lock: PidLock | None = None
        self.console: Console | None = None
        # the save's temp file, the directory fsync, a rescue file, one spare
        self.reserve = DescriptorReserve(4)
        self.reason = "not started"
        #: the other ranks of an agent on several processes (hera.distributed)
        self.world: Any = None
        #: how the run ended, for the pid-file's last record (None: failed)
        self.outcome: dict[str, Any] | None = None
        #: whether it got as far as stepping (else it did not start)
        self.stepping = False

    def tell(self, text: str) -> None:
        """Say ``text`` where this run's banner lines go."""
        (self._say or self.console.tell)(text)

    def start(self) -> None:
        """Take the agent's lock and open its console."""
        store = self.target.store
        self.lock = store.lock(self.target.id, op="starting")  # creates the runtime dir
        try:
            self.console = Console(store.log_path(self.target.id), silent=self.silent,
                                   detached=self.mode == "daemon", owner=store.owner,
                                   detachable=self.mode != "program")
            self.lock.record(op="starting", mode=self.mode)
        except OSError as exc:  # a full or read-only runtime dir
            raise HeraError(f"cannot start agent {self.target.id} in {store.run_dir}: "
                            f"{exc.strerror}") from None

    def load(self, device_name: str | None, ranks: int = 1, distributed: bool = False,
             rank_timeout: float | None = None) -> AgentSession:
        """Pick the device, upgrade an older data format, check the agent
        fits, load it, and install it on its first up. ``ranks`` > 1 spawns
        that many processes for it on this machine; ``distributed``: this is
        rank 0 of those torchrun launched (:mod:`hera.distributed`)."""
        plugins, target, store = self.plugins, self.target, self.target.store
        device = devices.choose_device(device_name)  # before installing anything
        # checked again under the lock: no race
        installed = store.has(target.id) and target.replaces is None
        if not installed and target.file is None:
            raise HeraError(f"agent {target.id} is no longer installed")
        instance = store.load(target.id) if installed else InstanceFile.read(target.file)
        older = upgrade(plugins, instance, store if installed else None)
        if ranks > 1 or distributed:
            self._form_ranks(instance.family, device, ranks, distributed, rank_timeout)
        if self.world is None:  # a rank holds only its part
            check_fits(resource_report(plugins, instance, device), device)  # before installing
        _record(self.lock, op="starting", device=device, mode=self.mode)
        hooks = None
        if self.world is None:
            loaded = plugins.family_hooks(instance.family).hera_load(
                definition=dict(instance.definition),
                tensors=instance.tensors(), state=instance.state(), device=device,
                seed=instance.meta["seed"])
        else:
            from hera import distributed

            loaded = distributed.load(self.world, plugins, instance.family,
                                      dict(instance.definition), instance.tensors(),
                                      instance.state(), instance.meta["seed"])
            hooks = distributed.ShardedHooks(plugins.family_hooks(instance.family), self.world)
        if loaded is None:  # pragma: no cover - check_family found it
            raise HeraError(f"family {instance.family} did not load agent {instance.id}")
        if not installed:  # only once its family has taken it: no agent that cannot up
            if target.replaces is not None and store.has(target.id):
                set_aside(store, target.id, target.replaces)
                self.tell(f"the installed copy of {target.id} is now in {target.replaces}")
            install_unlocked(instance, store)
            self.tell(f"installed {instance.id} ({instance.callsign}) for {store.scope.label}")
        if older is not None:
            self.tell(f"upgraded {instance.id} ({instance.callsign}) from {instance.family} data "
                      f"format {older} to {instance.meta['family']['data_format']}"
                      + (f"; the older file is kept as {store.older_format_path(target.id, older)}"
                         if installed else ""))
        # The family holds the agent now: the file's decoded tensors would
        # only double its memory until the first save.
        instance.release_tensors()
        self.session = AgentSession(plugins, instance, store, loaded, self.mode, hooks,
                                    1 if self.world is None else self.world.ranks)
        return self.session

    def _form_ranks(self, family: str, device: str, ranks: int, distributed: bool,
                    timeout: float | None) -> None:
        """Start (or, under torchrun, join) the agent's other ranks."""
        from hera import distributed as ranks_of

        if self.mode not in ("foreground", "daemon"):
            raise HeraError(f"an agent on several ranks runs in the foreground or as a daemon, "
                            f"not {self.mode}")
        ranks_of.check_family(self.plugins, family)
        if ranks > 1 and device.startswith("cuda"):  # one GPU a rank, on this machine
            import torch

            gpus = torch.cuda.device_count()
            if gpus < ranks:
                raise HeraError(f"--ranks {ranks} on cuda needs {ranks} GPUs, one a rank; "
                                f"this machine has {gpus}")
        timeout = ranks_of.rank_timeout(timeout)
        self.world = ranks_of.World.join(timeout, device) if distributed else \
            ranks_of.World.spawn(ranks, timeout, device)

    def record(self, state: str, strict: bool = False) -> None:
        """Write where the running agent stands into its pid-file (strict:
        a failure to write raises)."""
        session = self.session
        info = dict(op="up", device=session.device, backend=session.backend,
                    mode=self.mode, state=state, steps=session.step_count,
                    saved_steps=session.saved_steps, since=now_iso(),
                    socket=str(self.server.sock_path), start_steps=session.start_steps,
                    ranks=session.ranks)
        if strict:
            self.lock.record(**info)
        else:
            _record(self.lock, **info)

    def serve(self, handler: Callable[[dict[str, Any]], dict[str, Any]],
              stream: Callable[[Any], None], steps: int | None = None) -> None:
        """Open the control channel with ``handler`` and ``stream``, record
        the agent as up, and say so (``steps``: how many are to go)."""
        session, store, target = self.session, self.target.store, self.target
        self.server = ControlServer(store.socket_path(target.id), store.token_path(target.id),
                                    target.id, handler, stream, owner=store.owner)
        try:
            self.server.start()
            self.record(session.state, strict=True)  # no agent up that hera cannot see
        except OSError as exc:
            raise HeraError(f"cannot start agent {target.id} in {store.run_dir} "
                            f"(control channel, pid-file): {exc.strerror}") from None
        instance = session.instance
        self.tell(f"up {instance.id} ({instance.callsign}) {instance.family}/{instance.layout} "
                  f"on {session.device} [{session.backend}] at step {session.step_count}"
                  + (f", {session.ranks} ranks" if session.ranks > 1 else "")
                  + (f", {steps} steps to go" if steps is not None else "")
                  + ("" if self.mode == "foreground" else f", {self.mode}"))

    def save(self, reason: str, elapsed: float | None = None) -> Path:
        """The save at down (to a rescue file when the store cannot take
        it); ``elapsed``: the stepping's wall time, for the down line."""
        self.reason = reason
        self.reserve.release()  # descriptors for the save, however many clients hold ours
        session = self.session
        try:
            path = _save_or_rescue(session, self.console)
        except HeraError as exc:
            self.outcome = {"outcome": "save failed", "error": exc.message}
            raise
        self.outcome = {"outcome": "saved"}
        instance = session.instance
        speed = "" if elapsed is None else \
            f" in {duration(elapsed)}, {human_count(round(session.done / max(elapsed, 1e-9)))} steps/s"
        self.tell(f"down {instance.id} ({instance.callsign}) at step {session.step_count} "
                  f"({human_count(session.done)} steps this run{speed}; {reason.lower()})")
        return path

    def not_saved(self, reason: str, error: str) -> None:
        """End without a save (SIGABRT): the cache keeps the last one."""
        self.reason = reason
        self.outcome = {"outcome": "not saved", "error": error}

    def rescue(self, failure: BaseException) -> None:
        """The stepping failed: keep the state at the failure in a rescue file
        (not when a rank was lost: the agent's parts are gone with it)."""
        if self.world is not None and self.world.broken:
            return
        self.reserve.release()
        _rescue_failed_run(self.session, self.console, failure)

    def close(self) -> None:
        """Record how the run ended, close the control channel, let go of
        the lock. Call it in every case, in a ``finally``."""
        if self.lock is None:
            return
        if self.world is not None:  # every rank ends with rank 0
            self.world.close()
        session, target = self.session, self.target
        if self.outcome is None:  # it failed: before stepping, or in it
            failure = sys.exc_info()[1]
            why = failure.message if isinstance(failure, HeraError) else \
                f"{type(failure).__name__}: {failure}"
            self.outcome = {"outcome": "failed" if self.stepping else "not started",
                            "error": why}
        ended = dict(reason=self.reason,
                     steps=session.step_count if session else target.header.meta["steps"],
                     saved_steps=session.saved_steps if session else target.header.meta["steps"],
                     **self.outcome)
        # 'hera down' reads this through its own descriptor once the lock is free
        _record(self.lock, op="ended", **ended)
        if self.stepping:  # for 'hera agents': the pid-file goes with the lock
            target.store.note_ended(target.id, {**ended, "ended": now_iso()})
        if self.server is not None:
            self.server.close()
        self.reserve.release()
        self.lock.release()
        self.lock = None


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
    run = Run(plugins, target, options.mode, options.silent, say)
    path, elapsed, recorded, recording_error = None, 0.0, None, None
    with SignalInbox() as inbox:
        try:
            run.start()
            session = run.load(options.device, options.ranks, options.distributed,
                               options.rank_timeout)
            for spec in options.breakpoints:
                session.add_breakpoint(**spec)
            if options.record is not None:  # a bad population or neuron fails here
                from hera.recording import Recording

                session.recording = Recording(session, options.record.spec, run.console.warn)
            loop = Loop(session, inbox, run.console, steps=options.steps, chunk=options.chunk,
                        checkpoint=options.checkpoint, output_every=options.output_every,
                        prompt_after=options.prompt_after, on_state=run.record,
                        reserve=run.reserve, log_every=options.log_every,
                        open_prompt=_local_prompt)
            run.serve(loop.requests.handle, loop.streams.stream, options.steps)
            if ready is not None:
                ready({"id": session.id, "callsign": session.callsign, "pid": os.getpid(),
                       "device": session.device, "backend": session.backend,
                       "socket": str(run.server.sock_path), "log": str(run.console.log_path)})
            began = time.monotonic()
            run.stepping = True
            try:
                reason = loop.run()
            except Exception as exc:
                run.rescue(exc)
                raise
            elapsed = time.monotonic() - began
            if reason == "SIGABRT":
                run.not_saved(reason, "SIGABRT: terminated without saving")
            else:
                path = run.save(reason, elapsed)
            if session.recording is not None:  # after the agent: its state comes first
                recorded, recording_error = _save_recording(session, options.record, run)
        finally:
            run.close()
    if run.reason == "SIGQUIT":
        _core_dump(signal.SIGQUIT)
    elif run.reason == "SIGABRT":
        _core_dump(signal.SIGABRT)
    session = run.session
    return UpResult(target.id, target.header.callsign, session.done if session else 0,
                    session.step_count if session else target.header.meta["steps"], run.reason,
                    path, elapsed, recorded, recording_error)


def _save_recording(session: AgentSession, options: Any, run: Run
                    ) -> tuple[Path | None, str | None]:
    """Write ``up --record``'s recording where it was asked to go; say
    where, or why not."""
    recording = session.recording
    recording.stop()
    where = options.path or Path.cwd() / f"{session.callsign}.step{recording.start_step}.npz"
    try:
        recording.save(where)
    except HeraError as exc:
        run.console.warn(exc.message)
        return None, exc.message
    run.tell(f"recorded steps {recording.start_step}-{recording.stopped_at} to {where}"
             + (" (full: it stopped early)" if recording.full else ""))
    return where, None


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
    """Write the captured state to ``<id>.step<N>.rescue.json`` (N its step)
    in the first writable place of: the working directory, the runtime dir,
    home. An older rescue file is never overwritten: a second one at the
    same step gets ``-2``, ``-3``, …"""
    store = session.store
    stem = f"{session.id}.step{session.instance.steps}.rescue"
    # The run dir may be another user's: written as that user (hera.privilege).
    for folder, acting in ((Path.cwd(), nullcontext), (store.run_dir, store.acting),
                           (Path.home(), nullcontext)):
        for copy in range(1, 100):
            path = folder / (f"{stem}.json" if copy == 1 else f"{stem}-{copy}.json")
            try:
                with acting():
                    session.instance.write(path, exclusive=True)
            except FileExistsError:
                continue
            except (OSError, HeraError):
                break
            return path
    return None


def _core_dump(signum: int) -> None:
    """End the process by ``signum``'s default action (a core dump where the
    core limit allows)."""
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    os.kill(os.getpid(), signum)
