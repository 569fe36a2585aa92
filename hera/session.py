"""AgentSession: a live agent and everything done to it while it is up.

The runner's loop, the interactive prompt and the control channel all act
on the agent through one session: step it (honouring breakpoints), feed it
input lines, read its output, look at its tensors, report its status and
save it. The session never looks inside the family's handle; it calls the
family's hooks, resolved once per up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hera import tensor_codec
from hera.breakpoints import Breakpoint
from hera.errors import HeraError, RankLost
from hera.instance import InstanceFile
from hera.manager import now_iso
from hera.plugins import Plugins
from hera.store import AgentStore

# Chunks aim at this many seconds, so signals and commands are answered
# within about that; no chunk is longer than _MAX_CHUNK steps.
CHUNK_SECONDS = 0.1
_MAX_CHUNK = 10_000

#: What an agent can be doing while it is up (idle: up in a Python program
#: that is not stepping it now).
RUNNING, PAUSED, STANDBY, IDLE = "running", "paused", "standby", "idle"


@dataclass(frozen=True)
class Stop:
    """Why stepping stopped before it was done: a breakpoint was hit."""

    breakpoint: Breakpoint
    step: int


class AgentSession:
    """A live agent on its device.

    :param plugins: the plugin manager (hooks are looked up once, here).
    :param instance: the agent's file as loaded; updated by :meth:`save`.
    :param store: where the agent is installed.
    :param loaded: what ``hera_load`` returned.
    :param mode: ``foreground``, ``interactive`` or ``daemon`` (for status).
    :param hooks: the family's hooks as the agent is to be called (an agent
        on several ranks tells each call to them: :mod:`hera.distributed`);
        default: the family's own.
    :param ranks: how many processes hold the agent.
    """

    def __init__(self, plugins: Plugins, instance: InstanceFile, store: AgentStore,
                 loaded: Any, mode: str, hooks: Any = None, ranks: int = 1):
        hook = plugins.family_hooks(instance.family) if hooks is None else hooks
        self._step_hook, self._feed_array = hook.hera_step, hook.hera_feed_array
        self._serialize = hook.hera_serialize
        self._encode, self._decode = hook.hera_encode_input, hook.hera_decode_output
        self._output_array, self._freeze = hook.hera_output_array, hook.hera_freeze
        self._activity, self._probe = hook.hera_activity, hook.hera_probe
        #: what is being recorded (hera.recording), if anything
        self.recording: Any = None
        self.instance = instance
        self.store = store
        self.family = instance.family
        self.handle = loaded.handle
        self.device = loaded.device
        self.backend = loaded.backend
        self.mode = mode
        self.ranks = ranks
        self.state = RUNNING
        self.breakpoints: list[Breakpoint] = []
        self._numbered = 0
        self.start_steps = instance.steps
        self.step_count = instance.steps
        self.chunk = 1
        self.last_save = time.monotonic()
        #: the step of the agent's last durable save
        self.saved_steps = instance.steps
        self.last_hit: Stop | None = None
        instance.meta["incarnation"] += 1  # every save of this run carries it

    # -- identity and status ---------------------------------------------------

    @property
    def id(self) -> str:
        return self.instance.id

    @property
    def callsign(self) -> str:
        return self.instance.callsign

    @property
    def done(self) -> int:
        """Steps taken during this up."""
        return self.step_count - self.start_steps

    def status(self) -> dict[str, Any]:
        """Where the agent stands, JSON-ready."""
        return {
            "id": self.id, "callsign": self.callsign, "family": self.family,
            "layout": self.instance.layout, "state": self.state, "mode": self.mode,
            "step": self.step_count, "device": self.device, "backend": self.backend,
            "ranks": self.ranks,
            "breakpoints": [b.describe() for b in self.breakpoints],
            "last_breakpoint": None if self.last_hit is None else
            {**self.last_hit.breakpoint.describe(), "step": self.last_hit.step},
        }

    # -- stepping ----------------------------------------------------------------

    def advance(self, steps: int, adapt: bool = True) -> Stop | None:
        """Take up to ``steps`` steps in one or more family calls; stop early
        (after the step that hit it) at a breakpoint, which is returned."""
        left = steps
        while left > 0:
            n = min(left, self._room())
            began = time.perf_counter()
            taken = self._step_hook(agent=self.handle, steps=n)
            if taken is None or taken < 1:
                raise HeraError(f"family {self.family} did not step")
            self.step_count += taken
            left -= taken
            if self.recording is not None:
                self.recording.after(self.step_count)
            if adapt:
                per_step = (time.perf_counter() - began) / taken
                self.chunk = max(1, min(_MAX_CHUNK, int(CHUNK_SECONDS / max(per_step, 1e-7))))
            for bp in self.breakpoints:
                if bp.hit(self.step_count, self):
                    self.last_hit = Stop(bp, self.step_count)
                    return self.last_hit
        return None

    def _room(self) -> int:
        """Steps that can be taken in one call without passing a breakpoint."""
        if any(b.conditional for b in self.breakpoints):
            return 1
        distances = [d for b in self.breakpoints
                     if (d := b.steps_until(self.step_count)) is not None]
        if self.recording is not None:  # a call ends where a sample is due
            due = self.recording.steps_to_next(self.step_count)
            if due is not None:
                distances.append(due)
        return min(distances, default=_MAX_CHUNK * 100)

    def add_breakpoint(self, at: int | None = None, every: int | None = None,
                       when: str | Callable[[Any], bool] | None = None) -> Breakpoint:
        """Add a breakpoint (one of ``at``, ``every``, ``when``)."""
        self._numbered += 1
        bp = Breakpoint(at=at, every=every, when=when, id=self._numbered)
        self.breakpoints.append(bp)
        return bp

    def clear_breakpoints(self, ident: int | None = None) -> int:
        """Remove breakpoint ``ident``, or all of them; return how many went."""
        before = len(self.breakpoints)
        self.breakpoints = [b for b in self.breakpoints if ident is not None and b.id != ident]
        return before - len(self.breakpoints)

    # -- input, output, inspection -------------------------------------------------

    def feed(self, line: str) -> None:
        """Put one line into the agent's input area."""
        if not self._encode(agent=self.handle, line=line):
            raise HeraError(f"family {self.family} did not take the input line")

    def read_output(self) -> str:
        """The agent's output area since the last read, as one line."""
        line = self._decode(agent=self.handle)
        if line is None:
            raise HeraError(f"family {self.family} gave no output line")
        return line

    def feed_array(self, values: Any = None, spikes: Any = None) -> None:
        """Put input into the agent's input area as arrays: ``values`` one
        number per input channel, ``spikes`` the channels that spike at the
        next step (see :func:`hera.hooks.specs.hera_feed_array`)."""
        if values is None and spikes is None:
            return
        if not self._feed_array(agent=self.handle, values=values,
                                spikes=spikes):
            raise HeraError(f"family {self.family} takes no input arrays; feed it lines")

    def output_array(self) -> Any:
        """The agent's output area since the last read, as a NumPy array."""
        import numpy

        counts = self._output_array(agent=self.handle)
        if counts is None:
            raise HeraError(f"family {self.family} gives no output array; read its lines")
        return numpy.asarray(counts)

    def freeze(self, frozen: bool = True) -> None:
        """Freeze (or, ``frozen=False``, thaw) all the agent's adaptation."""
        if not self._freeze(agent=self.handle, frozen=bool(frozen)):
            raise HeraError(f"family {self.family} cannot freeze its learning")

    def activity(self) -> dict[str, tuple[int, int]] | None:
        """Spikes of each population since the agent was loaded, with its
        size (``None``: the family does not count them)."""
        counts = self._activity(agent=self.handle)
        return None if counts is None else {str(name): (int(spikes), int(size))
                                            for name, (spikes, size) in counts.items()}

    def spikes(self) -> int | None:
        """All spikes counted since the agent was loaded (``None``: the
        family does not count them)."""
        counts = self.activity()
        return None if counts is None else sum(spikes for spikes, _ in counts.values())

    def probe(self, variable: str, neurons: Any) -> Any:
        """``variable`` of ``neurons`` now (the family's ``hera_probe``)."""
        value = self._probe(agent=self.handle, variable=variable,
                            neurons=neurons)
        if value is None:
            raise HeraError(f"family {self.family} cannot be recorded: it has no hera_probe")
        return value

    def tensors(self) -> dict[str, Any]:
        """CPU copies of every tensor of the agent, learned and dynamic
        (dynamic ones prefixed ``state.``), for inspection."""
        return _every_tensor(self._serialize(agent=self.handle))

    # -- saving ----------------------------------------------------------------------

    def capture(self) -> InstanceFile:
        """Take the complete state off the device into :attr:`instance`.

        :raises HeraError: a float tensor holds NaN or an infinity; such a
            state could never be loaded again, so the store's last good
            save must not be replaced by it.
        """
        snapshot = self._serialize(agent=self.handle)
        broken = next((name for name, tensor in _every_tensor(snapshot).items()
                       if not tensor_codec.is_finite(tensor)), None)
        if broken is not None:
            raise HeraError(f"the agent's tensor {broken!r} holds NaN or an infinity at step "
                            f"{self.step_count}; not saved over its last good save (step "
                            f"{self.saved_steps})")
        self.instance.definition = dict(snapshot.definition)
        self.instance.set_tensors(snapshot.tensors, snapshot.state)
        self.instance.meta["steps"] = self.step_count
        self.instance.meta["saved"] = now_iso()
        return self.instance

    def write(self) -> Path:
        """Write the captured state to the agent's file in the store, atomically."""
        path = self.store.save(self.instance)
        self.instance.release_tensors()  # the family holds them; the next save captures anew
        self.last_save = time.monotonic()
        self.saved_steps = self.instance.steps
        return path

    def save(self) -> Path:
        """Capture and write: a checkpoint, or the save at down."""
        self.capture()
        return self.write()


def checkpoint(session: AgentSession, reserve: Any, warn: Callable[[str], None],
               strict: bool = False) -> bool:
    """Save a running agent (a checkpoint) with the descriptors ``reserve``
    holds for it (or ``None``); whether it saved. A failure is reported with
    ``warn`` and tried again at the next interval (the final save rescues
    the state if it still fails), unless ``strict``: then it is raised."""
    if reserve is not None:
        reserve.release()
    try:
        session.save()
    except (HeraError, OSError) as exc:
        if strict or isinstance(exc, RankLost):  # a lost rank ends the run, no retry
            raise
        session.last_save = time.monotonic()
        warn(f"checkpoint failed, will retry: {getattr(exc, 'message', exc)}")
        return False
    finally:
        if reserve is not None:
            reserve.take()
    return True


def answer(session: AgentSession, request: dict[str, Any]) -> dict[str, Any] | None:
    """Carry out a control command that acts on the agent itself (the same
    whoever drives it: ``hera up``'s loop or a Python program); ``None``
    for any other command.

    :raises HeraError: the command's arguments are wrong, or the family
        refused it.
    """
    cmd = request.get("cmd")
    if cmd == "input":
        session.feed(str(request.get("line", "")))
    elif cmd == "feed":
        values, spikes = request.get("values"), request.get("spikes")
        for name, given in (("values", values), ("spikes", spikes)):
            if given is not None and not isinstance(given, list):
                raise HeraError(f"feed takes {name} as a list")
        session.feed_array(values, spikes)
    elif cmd == "output":
        return {"line": session.read_output()}
    elif cmd == "output_array":
        return {"output": session.output_array().tolist()}
    elif cmd == "freeze":
        frozen = request.get("frozen", True)
        if not isinstance(frozen, bool):
            raise HeraError("freeze takes frozen: true or false")
        session.freeze(frozen)
    elif cmd == "tensors":
        return {"tensors": {name: {"dtype": str(t.dtype).removeprefix("torch."),
                                   "shape": list(t.shape)}
                            for name, t in session.tensors().items()}}
    elif cmd == "activity":
        counts = session.activity()
        if counts is None:
            raise HeraError(f"family {session.family} does not count its spikes")
        return {"step": session.step_count,
                "activity": {name: list(pair) for name, pair in counts.items()}}
    elif cmd == "save":
        session.save()
    else:
        return None
    return {"status": session.status()}


def _every_tensor(snapshot: Any) -> dict[str, Any]:
    """The learned and the dynamic tensors of a snapshot by name, the
    dynamic ones prefixed ``state.``."""
    found = dict(snapshot.tensors)
    if snapshot.state is not None:
        found.update({f"state.{k}": v for k, v in snapshot.state.tensors.items()})
    return found
