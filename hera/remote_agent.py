"""An agent up in another process (a daemon, say), driven over its control
channel with the calls of an agent up in this one (returned by
:func:`hera.api.attach`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hera.driven import AgentDown, Driven
from hera.errors import HeraError

if TYPE_CHECKING:  # pragma: no cover
    import numpy

    from hera.manager import Target

# A remote step request aims at this many seconds, so that none waits on
# the agent's loop for long (the loop gives up on a request after 30 s).
_REMOTE_REQUEST_S = 1.0


class RemoteAgent(Driven):
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
