"""hera's Python API: drive an agent from a program or a notebook.

:func:`up` brings an agent up in this process with every guarantee ``hera
up`` gives: it is installed on its first up, locked against a second up,
checkpointed, saved when it goes down (and when the program ends), and
resumed exactly by whoever ups it next. :func:`attach` drives an agent
that a daemon runs, over its control channel, with the same methods:
slower, with the same results. See docs/python-api.md.
"""

from __future__ import annotations

import _signal
import atexit
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from hera import places
from hera.errors import HeraError
from hera.session import IDLE, RUNNING
from hera.store import AgentStore

if TYPE_CHECKING:  # pragma: no cover
    import numpy

    from hera.manager import Target
    from hera.recording import Recording
    from hera.runner import Run

#: Seconds between checkpoints when neither the call nor a config file says.
DEFAULT_CHECKPOINT = 600.0
# A remote step request aims at this many seconds, so that none waits on
# the agent's loop for long (the loop gives up on a request after 30 s).
_REMOTE_REQUEST_S = 1.0


class AgentDown(HeraError):
    """The agent is down: it was downed, by this program or from outside
    (``hera down``, a signal), and takes no more calls."""


def build(layout: str = "example", path: str | os.PathLike | None = None, *,
          family: str = "abraxas", name: str | None = None, force: bool = False,
          **overrides: Any) -> Path:
    """Build an instance file, as ``hera build`` does, and return its path.

    :param layout: the family's layout (``hera layouts``).
    :param path: the file to write (default: ``<uuid>.json`` here).
    :param family: the family (``hera families``).
    :param name: the agent's callsign (default: made from its id).
    :param force: replace ``path`` if it exists.
    :param overrides: layout parameters, over the ``[definition]`` of
        ``~/.herarc`` and ``./hera.json``, as ``--set`` is.
    """
    from hera import manager
    from hera.config import load_config
    from hera.plugins import load_plugins

    definition = {**load_config().definition, **overrides}
    built, _ = manager.build(load_plugins(), family, layout, definition,
                             None if path is None else Path(path), name, force)
    return Path(built)


def plot(kind: str, source: Any, path: str | os.PathLike | None = None, **options: Any) -> Any:
    """Draw ``kind`` (``raster``, ``rates``, ``fields``, ``weights`` or
    ``thresholds``) from ``source``: a recording (or its ``.npz``), an
    agent of :func:`up`, or an instance file. Return the matplotlib figure
    (a notebook shows it); with ``path``, also write it as PNG or SVG.

    :param options: ``shape=(8, 8)``, ``neurons=[...]``, ``tensor=...`` for
        fields, ``title=...`` for any (see docs/python-api.md).
    :raises HeraError: a source without what ``kind`` needs, or no matplotlib.
    """
    from hera import plotting

    fig = plotting.figure(kind, plotting.data_of(source), **options)
    if path is not None:
        plotting.save(fig, path)
    return fig


def up(agent: str | os.PathLike, *, device: str | None = None,
       checkpoint: float | None = None, system: bool = False, user: str | None = None,
       keep: str | None = None, say: Callable[[str], None] | None = None) -> "Agent":
    """Bring an agent up in this process and return it, running.

    :param agent: an instance file (installed on its first up), or an
        installed agent's id, id prefix or callsign.
    :param device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (default).
    :param checkpoint: seconds between saves while it steps, so that a crash
        loses at most that much (0: only at down); default: the ``checkpoint``
        option of ``~/.herarc`` or ``./hera.json``, else 600.
    :param system: an agent of the system store.
    :param user: an agent of user ``user`` (root only).
    :param keep: when ``agent`` is a file whose state differs from the
        installed copy's: ``"installed"`` or ``"file"``, as ``hera up --keep``.
    :param say: where to send the lines ``hera up`` would print (installed,
        upgraded, up, down); default: nowhere.
    :raises HeraError: with one line saying what is wrong, and nothing left
        behind (no lock, no half-installed agent).
    """
    from hera import manager
    from hera.config import load_config
    from hera.plugins import load_plugins
    from hera.runner import Run

    if checkpoint is None:
        checkpoint = float(load_config().options.get("checkpoint", DEFAULT_CHECKPOINT))
    if not checkpoint >= 0 or checkpoint == float("inf"):
        raise HeraError(f"checkpoint must be a finite number of seconds >= 0, not {checkpoint!r}")
    store = AgentStore(places.Scope.of(system, user))
    target = manager.choose_copy(_target(store, agent), keep)
    plugins = load_plugins()
    run = Run(plugins, target, "program", silent=True, say=say or (lambda line: None))
    try:
        run.start()
        run.load(device)
        live = Agent(run, checkpoint)
        run.serve(live._handle_request, live._stream)
    except BaseException:
        run.close()  # records why it did not start, and lets go of the lock
        raise
    live._begin()
    return live


def attach(agent: str | os.PathLike | None = None, *, system: bool = False,
           user: str | None = None, pause: bool = True) -> "RemoteAgent":
    """Drive an agent that is up in another process (a daemon, say) over its
    control channel.

    :param agent: as for :func:`up`; ``None``: the one agent that is up.
    :param pause: stop the agent's own running while attached, so it moves
        only when told to (``step``), as an agent of :func:`up` does. Without
        it the agent runs on until the first ``step``, which pauses it. A
        running agent runs on again at :meth:`RemoteAgent.detach`.
    :raises HeraError: the agent is not up, or refuses the connection.
    """
    from hera import manager
    from hera.control import ControlClient

    store = AgentStore(places.Scope.of(system, user))
    if agent is None:
        target = manager.running_target(store, None, None, None)
    else:
        target = _target(store, agent)
        if not target.installed:
            raise HeraError(f"agent {target.id} ({target.header.callsign}) is not installed")
    holder = store.holder(target.id)
    if holder is None or holder.info.get("op") != "up":
        raise HeraError(f"agent {target.id} ({target.header.callsign}) is not up")
    client = ControlClient(store.socket_path(target.id), store.token_path(target.id),
                           owner=store.owner)
    return RemoteAgent(target, client, pause)


def _target(store: AgentStore, agent: str | os.PathLike) -> "Target":
    """The agent named by a file, an id or id prefix, or a callsign."""
    from hera import manager

    text = os.fspath(agent)
    if not text:
        raise HeraError("which agent? give a file, an id or a callsign")
    if isinstance(agent, Path) or os.path.lexists(text):
        return manager.select_target(store, text, None, None, allow_uninstalled=True)
    try:
        header = store.find(ident=text)
    except HeraError:
        try:
            header = store.find(callsign=text)
        except HeraError:
            raise HeraError(f"{text}: no such file, and no installed agent has that id or "
                            "callsign") from None
    return manager.Target(store, header, True)


class _Driven:
    """What both kinds of agent offer (see :class:`Agent` and
    :class:`RemoteAgent`)."""

    id: str
    callsign: str

    def step(self, n: int = 1) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def steps(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def run_until(self, condition: Callable[[Any], bool], *, max_steps: int,
                  every: int = 1) -> bool:
        """Step until ``condition(agent)`` is true, checking it every
        ``every`` steps, for at most ``max_steps`` steps; whether it came true.

        :raises HeraError: for a bound that is not a whole number >= 1.
        """
        for name, value in (("max_steps", max_steps), ("every", every)):
            if type(value) is not int or value < 1:
                raise HeraError(f"run_until takes {name} as a whole number >= 1, not {value!r}")
        goal = self.steps + max_steps
        while self.steps < goal:
            self.step(min(every, goal - self.steps))
            if condition(self):
                return True
        return False

    def freeze(self) -> None:
        """Stop all adaptation from the next step on: the agent runs on, but
        nothing it has learned changes (for labelling and testing)."""
        self._set_frozen(True)

    def unfreeze(self) -> None:
        """Let the agent learn again from the next step on."""
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} ({self.callsign})>"


class Agent(_Driven):
    """An agent up in this process; returned by :func:`up`.

    Every method is thread-safe, and the control channel (``hera agents``,
    ``hera down``, ``hera signal SIGUSR1``) is served while it is up. As a
    context manager it downs the agent (saving it) on the way out.
    """

    def __init__(self, run: "Run", checkpoint: float):
        self._run = run
        self._session = run.session
        self._session.state = IDLE
        self._checkpoint = checkpoint
        self._lock = threading.RLock()
        #: what asked this agent to go down (a signal's name, or 'down')
        self._ending: str | None = None
        self._want_checkpoint = False
        self._wake = threading.Event()
        #: why the agent is down; None while it is up
        self._downed: str | None = None
        self.path: Path | None = None  # the cache file of its last save

    def _begin(self) -> None:
        """Start watching for signals and requests, and for the program's end."""
        self._run.stepping = True
        _SIGNALS.add(self)
        threading.Thread(target=self._watch, name=f"hera-agent-{self.id[:8]}",
                         daemon=True).start()
        atexit.register(self._at_exit)

    # -- who it is --------------------------------------------------------------

    @property
    def id(self) -> str:
        """The agent's id (a UUID)."""
        return self._session.id

    @property
    def callsign(self) -> str:
        return self._session.callsign

    @property
    def family(self) -> str:
        return self._session.family

    @property
    def layout(self) -> str:
        return self._session.instance.layout

    @property
    def device(self) -> str:
        return self._session.device

    @property
    def backend(self) -> str:
        return self._session.backend

    @property
    def steps(self) -> int:
        """The agent's step count: every step of its life, not only this up's."""
        return self._session.step_count

    @property
    def is_up(self) -> bool:
        """Whether the agent is up (a down under way is waited for)."""
        with self._lock:
            return self._downed is None

    def status(self) -> dict[str, Any]:
        """Where the agent stands (what ``hera`` sees over the control channel)."""
        return {**self._session.status(), "up": self._downed is None}

    # -- driving ------------------------------------------------------------------

    def step(self, n: int = 1) -> int:
        """Take ``n`` steps; return the step count.

        Ctrl-C (SIGINT) stops between two calls to the family, never inside
        a step, then raises ``KeyboardInterrupt``: the agent stays up, at a
        whole step. ``hera down`` or SIGTERM meanwhile saves and downs it,
        and this raises :class:`AgentDown`.
        """
        if type(n) is not int or n < 1:
            raise HeraError(f"step takes a whole number of steps >= 1, not {n!r}")
        with self._lock, _SIGNALS.stepping():
            self._check_up()
            session = self._session
            goal = session.step_count + n
            session.state = RUNNING
            try:
                while session.step_count < goal:
                    try:
                        session.advance(min(session.chunk, goal - session.step_count))
                    except Exception as failure:
                        self._fail(failure)
                        raise
                    if self._ending or self._want_checkpoint or _SIGNALS.interrupted:
                        self._answer_signals()
                        if _SIGNALS.interrupted:
                            break
                    if self._checkpoint and \
                            time.monotonic() - session.last_save >= self._checkpoint:
                        self._checkpoint_now()
            finally:
                session.state = IDLE
            return session.step_count

    def feed(self, line: str | None = None, *, values: Any = None, spikes: Any = None) -> None:
        """Put input into the agent's input area for its next steps.

        :param line: an input line, as ``hera up`` takes them on stdin
            (abraxas: numbers, ``spikes 3 17``, ``reward 0.5``, text).
        :param values: one number per input channel (a NumPy array, say);
            the fast form of a line of numbers, with the same effect.
        :param spikes: input channels that spike exactly at the next step.
        """
        with self._lock:
            if self._downed is not None:
                raise AgentDown(self._down_message())
            if line is not None:
                self._session.feed(line)
            if values is not None or spikes is not None:
                self._session.feed_array(values, spikes)

    def output(self) -> "numpy.ndarray":
        """The agent's output since the last read (abraxas: spike counts per
        output cell), as a NumPy array; starts a new window."""
        with self._lock:
            self._check_up()
            return self._session.output_array()

    def output_line(self) -> str:
        """:meth:`output` as the line ``hera up`` would write."""
        with self._lock:
            self._check_up()
            return self._session.read_output()

    def _set_frozen(self, frozen: bool) -> None:
        with self._lock:
            self._check_up()
            self._session.freeze(frozen)

    def activity(self) -> dict[str, tuple[int, int]]:
        """Spikes of each population since this up began, with the
        population's size: ``{"layer 1": (spikes, neurons), …}`` (the
        family's ``hera_activity``). Rates come from two readings' difference."""
        with self._lock:
            self._check_up()
            counts = self._session.activity()
        if counts is None:
            raise HeraError(f"family {self.family} does not count its spikes")
        return counts

    def record(self, *, spikes: list[str] | list[int] | None = None, rates: int | None = None,
               traces: dict[str, list[int] | list[str]] | None = None, every: int = 1,
               weights: int | None = None, max_bytes: int | None = None) -> "Recording":
        """Start recording from the next step (a recording under way is
        stopped first); return it. See docs/python-api.md.

        :param spikes: population names (``"layer 3"``) or neuron numbers
            whose spikes to keep, at the exact step.
        :param rates: bin width in steps of the rates per population.
        :param traces: variable (abraxas: ``membrane``, ``threshold``) →
            neuron numbers or populations, sampled every ``every`` steps.
        :param weights: steps between snapshots of the learned tensors.
        :param max_bytes: the most it may hold (default 256 MiB); past it,
            it stops and says so.
        :raises HeraError: an unknown population, neuron or variable;
            nothing is recorded then.
        """
        from hera.recording import DEFAULT_MAX_BYTES, Recording, RecordSpec

        spec = RecordSpec(spikes=spikes, rates=rates, traces=dict(traces or {}), every=every,
                          weights=weights,
                          max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes)
        with self._lock:
            self._check_up()
            recording = Recording(self._session, spec, self._run.console.warn)
            if self._session.recording is not None:
                self._session.recording.stop()
            self._session.recording = recording
            return recording

    def stop_recording(self) -> "Recording | None":
        """Stop the recording under way, if any; return it."""
        with self._lock:
            recording, self._session.recording = self._session.recording, None
        if recording is not None:
            recording.stop()
        return recording

    def tensors(self) -> dict[str, Any]:
        """CPU copies of every tensor of the agent by name (dynamic ones
        prefixed ``state.``)."""
        with self._lock:
            self._check_up()
            return self._session.tensors()

    def save(self) -> int:
        """Save the agent to the cache now (a checkpoint); return its step."""
        with self._lock:
            self._check_up()
            self._checkpoint_now(strict=True)
            return self._session.saved_steps

    def down(self) -> Path:
        """Save the agent and take it down; return its file in the cache.
        Calling it again does nothing more."""
        with self._lock:
            if self._downed is None:
                self._down_now("down")
            elif self.path is None:
                raise AgentDown(self._down_message())
            return self.path

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, tb: object) -> None:
        if self._downed is None:
            self.down()

    # -- inside ---------------------------------------------------------------------

    def _check_up(self) -> None:
        if self._downed is not None:
            raise AgentDown(self._down_message())

    def _down_message(self) -> str:
        session = self._session
        saved = f"saved at step {session.saved_steps}" if self.path is not None else \
            f"not saved; the cache keeps step {session.saved_steps}"
        return f"agent {self.id} ({self.callsign}) is down ({self._downed}; {saved})"

    def _down_now(self, reason: str) -> None:
        """Save and let go of everything the up holds (under the lock)."""
        run = self._run
        self._downed = reason
        self._wake.set()  # the watcher ends
        _SIGNALS.remove(self)
        atexit.unregister(self._at_exit)
        try:
            self.path = run.save(reason)
        finally:
            run.close()

    def _fail(self, failure: BaseException) -> None:
        """The family failed in a step (under the lock, in the ``except``):
        the agent may be half-stepped, so it is not saved over its last
        save; its state goes to a rescue file, and it is down."""
        self._downed = f"failed: {type(failure).__name__}: {failure}"
        self._wake.set()
        _SIGNALS.remove(self)
        atexit.unregister(self._at_exit)
        try:
            self._run.rescue(failure)
        finally:
            self._run.close()

    def _checkpoint_now(self, strict: bool = False) -> None:
        """Save while up (under the lock); a failure is retried at the next
        interval, unless ``strict``."""
        run, session = self._run, self._session
        run.reserve.release()
        try:
            session.save()
        except (HeraError, OSError) as exc:
            if strict:
                raise
            session.last_save = time.monotonic()
            run.console.warn(f"checkpoint failed, will retry: {getattr(exc, 'message', exc)}")
            return
        finally:
            run.reserve.take()
        run.record(IDLE)

    def _answer_signals(self) -> None:
        """Act on what signals and requests asked for (under the lock)."""
        if self._want_checkpoint:
            self._want_checkpoint = False
            self._checkpoint_now()
        if self._ending and self._downed is None:
            ending = self._ending
            self._down_now(ending)
            if ending == "SIGQUIT":
                from hera.runner import _core_dump

                _core_dump(signal.SIGQUIT)
            raise AgentDown(self._down_message())

    def _ask(self, what: str) -> None:
        """Note a signal or a request (from a handler or a control thread);
        the agent acts on it between steps, or at once when idle."""
        if what == "SIGUSR1":
            self._want_checkpoint = True
        else:
            self._ending = self._ending or what
        self._wake.set()

    def _watch(self) -> None:
        """Act on signals and requests while the program is not stepping."""
        while True:
            self._wake.wait()
            with self._lock:
                self._wake.clear()
                if self._downed is not None:
                    return
                try:
                    self._answer_signals()
                except AgentDown:
                    return

    def _at_exit(self) -> None:
        with self._lock:
            if self._downed is None:
                self._down_now("program ended")

    def _handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer a control request (on a control thread)."""
        from hera.session import answer

        cmd = request.get("cmd")
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd == "down":
            self._ask("down")
            return {"ok": True, "status": self.status()}
        with self._lock:
            if self._downed is not None:
                return {"ok": False, "error": self._down_message()}
            try:
                if cmd == "step":
                    n = request.get("steps", 1)
                    return {"ok": True, "step": self.step(n), "breakpoint": None}
                answered = answer(self._session, request)
            except HeraError as exc:
                return {"ok": False, "error": exc.message}
            except Exception as exc:  # noqa: BLE001 - a bad request must not end the agent
                return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if answered is None:
            return {"ok": False, "error": f"agent {self.id} is driven by a Python program "
                                          f"(pid {os.getpid()}); it takes no {cmd!r} here"}
        return {"ok": True, **answered}

    def _stream(self, conn: Any) -> None:
        """An ``io`` connection: its lines go into the input area."""
        try:
            while (line := conn.read_line()) is not None:
                try:
                    self.feed(line.decode("utf-8", "replace"))
                except HeraError:
                    return
        except (OSError, ValueError):
            pass


class RemoteAgent(_Driven):
    """An agent up in another process, driven over its control channel;
    returned by :func:`attach`. As a context manager it detaches on the
    way out (the agent stays up)."""

    def __init__(self, target: "Target", client: Any, pause: bool):
        self._target = target
        self._client = client
        self.id = target.id
        self.callsign = target.header.callsign
        status = self._request("status")["status"]
        self.family, self.layout = status["family"], status["layout"]
        self._steps = status["step"]
        self._resume = status["state"] == "running"  # stepping pauses it, in any case
        self._per_step = None  # seconds a step takes over the channel, once measured
        self._attached = True
        if pause:
            self._steps = self._request("pause")["status"]["step"]

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def is_up(self) -> bool:
        holder = self._target.store.holder(self.id)
        return holder is not None and holder.info.get("op") == "up"

    def status(self) -> dict[str, Any]:
        status = self._request("status")["status"]
        self._steps = status["step"]
        return {**status, "up": True}

    def step(self, n: int = 1) -> int:
        """Take ``n`` steps (in requests of about a second each)."""
        if type(n) is not int or n < 1:
            raise HeraError(f"step takes a whole number of steps >= 1, not {n!r}")
        goal = self._steps + n
        while self._steps < goal:
            size = goal - self._steps if self._per_step is None else \
                max(1, min(goal - self._steps, int(_REMOTE_REQUEST_S / self._per_step)))
            if self._per_step is None:
                size = min(size, 100)
            began = time.perf_counter()
            reply = self._request("step", steps=size)
            taken = reply["step"] - self._steps
            self._steps = reply["step"]
            if taken > 0:
                self._per_step = (time.perf_counter() - began) / taken
            if reply.get("breakpoint") is not None:
                break
        return self._steps

    def feed(self, line: str | None = None, *, values: Any = None, spikes: Any = None) -> None:
        """As :meth:`Agent.feed`."""
        if line is not None:
            self._request("input", line=line)
        if values is not None or spikes is not None:
            self._request("feed", values=_as_list(values), spikes=_as_list(spikes))

    def output(self) -> "numpy.ndarray":
        """As :meth:`Agent.output`."""
        import numpy

        return numpy.asarray(self._request("output_array")["output"])

    def output_line(self) -> str:
        return self._request("output")["line"]

    def activity(self) -> dict[str, tuple[int, int]]:
        """As :meth:`Agent.activity` (since the daemon's up began)."""
        counts = self._request("activity")["activity"]
        return {name: (spikes, size) for name, (spikes, size) in counts.items()}

    def _set_frozen(self, frozen: bool) -> None:
        self._request("freeze", frozen=frozen)

    def save(self) -> int:
        """Save the agent to the cache now; return its step."""
        return self._request("save")["status"]["step"]

    def down(self) -> Path:
        """Save the agent and take it down (as ``hera down``); return its
        file in the cache."""
        from hera import manager

        self._attached = False
        self._client.close()
        manager.down(self._target)
        return self._target.store.path(self.id)

    def detach(self) -> None:
        """Let go of the agent, which runs on as it did before :func:`attach`."""
        if not self._attached:
            return
        try:
            if self._resume:
                self._request("continue")
        finally:
            self._attached = False
            self._client.close()

    def __enter__(self) -> "RemoteAgent":
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def _request(self, cmd: str, **args: Any) -> dict[str, Any]:
        if not getattr(self, "_attached", True):
            raise AgentDown(f"agent {self.id} ({self.callsign}) is no longer attached")
        try:
            return self._client.request(cmd, **args)
        except HeraError as exc:
            if not self.is_up:
                raise AgentDown(f"agent {self.id} ({self.callsign}) is down") from None
            raise HeraError(exc.message) from None


def _as_list(array: Any) -> list | None:
    """An array as a JSON-ready list (``None`` stays ``None``)."""
    if array is None:
        return None
    tolist = getattr(array, "tolist", None)
    return tolist() if tolist is not None else list(array)


class _SignalWatch:
    """The signal handlers of the agents up in this process (installed from
    the main thread only: elsewhere Python cannot, and the program's own
    handling stays).

    SIGTERM, SIGHUP, SIGPWR and SIGXCPU save and down every such agent, and
    the program goes on (the agents raise :class:`AgentDown`); SIGQUIT does
    the same, then ends the process with a core dump; SIGUSR1 saves them
    (a checkpoint). SIGINT while an agent steps stops it between steps and
    raises ``KeyboardInterrupt``; at any other time it does what it did
    before. Without agents, every signal does what it did before.
    """

    NAMES = ("SIGTERM", "SIGHUP", "SIGPWR", "SIGXCPU", "SIGQUIT", "SIGUSR1")

    def __init__(self) -> None:
        self.agents: list[Agent] = []
        self.previous: dict[int, Any] = {}
        self.interrupted = False
        self.depth = 0
        self.guard = threading.Lock()
        self.handler = self._note  # one bound method, so that 'is' finds it installed

    def add(self, agent: Agent) -> None:
        with self.guard:
            self.agents.append(agent)
            if threading.current_thread() is not threading.main_thread():
                return
            for name in self.NAMES:
                signum = getattr(signal, name, None)
                if signum is not None and signal.getsignal(signum) is not self.handler:
                    self.previous[signum] = signal.signal(signum, self.handler)

    def remove(self, agent: Agent) -> None:
        with self.guard:
            if agent in self.agents:
                self.agents.remove(agent)
            if not self.agents and threading.current_thread() is threading.main_thread():
                self._restore()  # else the next signal does it, on the main thread

    def _restore(self) -> None:
        for signum, handler in self.previous.items():
            if signal.getsignal(signum) is self.handler:
                signal.signal(signum, handler)
        self.previous.clear()

    def stepping(self) -> "_Stepping":
        return _Stepping(self)

    def _note(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if name == "SIGINT" and self.depth:
            self.interrupted = True
            return
        if name != "SIGINT" and self.agents:
            for agent in list(self.agents):
                agent._ask(name)
            return
        # not ours to act on: what would have happened without us
        previous = self.previous.get(signum, signal.SIG_DFL)
        if not self.agents:  # the last agent went down on another thread
            self._restore()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            if name == "SIGINT":
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


class _Stepping:
    """While an agent steps on the main thread: SIGINT is held until the
    family's call returns (one cheap check per call while it is ours)."""

    def __init__(self, watch: _SignalWatch):
        self.watch = watch

    def __enter__(self) -> None:
        watch = self.watch
        if threading.current_thread() is threading.main_thread():
            current = _getsignal(signal.SIGINT)
            if current is not watch.handler:  # a notebook puts its own back for each cell
                watch.previous[signal.SIGINT] = current
                signal.signal(signal.SIGINT, watch.handler)
            watch.depth += 1
            self.counted = True
        else:
            self.counted = False

    def __exit__(self, kind: type | None, error: BaseException | None, tb: object) -> None:
        watch = self.watch
        if not self.counted:
            return
        watch.depth -= 1
        if watch.depth == 0 and watch.interrupted:
            watch.interrupted = False
            if kind is None:
                raise KeyboardInterrupt


_SIGNALS = _SignalWatch()
# signal.getsignal wraps its answer in an enum: 60 times the cost of the
# check itself, once per step call
_getsignal = getattr(_signal, "getsignal", signal.getsignal)
