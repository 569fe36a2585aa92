"""The interactive prompt: Python with the live agent in scope as ``agent``.

The local prompt runs in the agent's own process (``up --interactive``,
Ctrl-Z, a breakpoint); the remote prompt runs in ``hera signal SIGSTOP``
and talks to a detached agent over its control channel. Both offer the same
commands; closing either (Ctrl-D) lets the agent run on.
"""

from __future__ import annotations

import code
import signal
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol

from hera.agent_commands import HELP
from hera.errors import HeraError
from hera.signals import ENDING

if TYPE_CHECKING:  # pragma: no cover
    from hera.control import ControlClient
    from hera.session import AgentSession, Stop
    from hera.signals import SignalInbox



class PromptHost(Protocol):
    """What the local prompt needs of the loop that opens it
    (:class:`hera.loop.Loop`)."""

    session: "AgentSession"
    inbox: "SignalInbox"
    stop_reason: str | None

    def step(self, n: int | None, interrupted: Callable[[], bool]) -> "Stop | None":
        """Take ``n`` steps (``None``: until stopped), in chunks."""


class _Closed(Exception):
    """Raised inside the console to leave it (after agent.down())."""


class LocalAgent:
    """``agent`` at the local prompt: the live session, stepped in-process."""

    def __init__(self, loop: PromptHost):
        self._loop = loop
        self.session = loop.session
        self.handle = loop.session.handle  # the family's own object, for inspection

    def __repr__(self) -> str:
        s = self.session
        return f"<agent {s.id} ({s.callsign}) {s.family}/{s.instance.layout} step {s.step_count}>"

    def help(self) -> None:
        print(HELP)

    def step(self, n: int = 1) -> int:
        return self.run(n)

    def run(self, n: int | None = None) -> int:
        """Run ``n`` steps (``None``: until a breakpoint or Ctrl-C). Ctrl-C
        and signals that end the agent stop it between chunks, never inside
        the family's step."""
        interrupted: list[bool] = []
        previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
        try:
            hit = self._loop.step(n, interrupted=lambda: bool(interrupted))
        finally:
            signal.signal(signal.SIGINT, previous)
        if hit is not None:
            print(f"breakpoint {hit.breakpoint.id} hit at step {hit.step}")
        elif interrupted:
            print(f"interrupted at step {self.session.step_count}")
        return self.session.step_count

    def run_until(self, condition: Callable[[Any], bool], limit: int | None = None) -> int:
        bp = self.session.add_breakpoint(when=condition)
        try:
            return self.run(limit)
        finally:
            self.session.clear_breakpoints(bp.id)

    def breakpoint(self, at: int | None = None, every: int | None = None,
                   when: Any = None) -> dict[str, Any]:
        return self.session.add_breakpoint(at=at, every=every, when=when).describe()

    def clear(self, id: int | None = None) -> int:  # noqa: A002 - the user's word
        return self.session.clear_breakpoints(id)

    def status(self) -> dict[str, Any]:
        return self.session.status()

    def tensors(self) -> dict[str, Any]:
        return self.session.tensors()

    def input(self, line: str) -> None:
        self.session.feed(line)

    def output(self) -> str:
        return self.session.read_output()

    def save(self) -> str:
        return str(self.session.save())

    def down(self) -> None:
        self._loop.stop_reason = self._loop.stop_reason or "down"
        raise _Closed


class RemoteAgent:
    """``agent`` at the remote prompt: the same commands over the control channel."""

    def __init__(self, client: "ControlClient"):
        self._client = client

    def __repr__(self) -> str:
        s = self.status()
        return f"<agent {s['id']} ({s['callsign']}) {s['family']}/{s['layout']} step {s['step']}>"

    def help(self) -> None:
        print(HELP)

    def _ask(self, cmd: str, **args: Any) -> dict[str, Any]:
        return self._client.request(cmd, **args)

    def step(self, n: int = 1) -> int:
        reply = self._ask("step", steps=n)
        if reply.get("breakpoint"):
            print(f"breakpoint {reply['breakpoint']['id']} hit at step {reply['step']}")
        return reply["step"]

    def run(self, n: int | None = None) -> int:
        if n is not None:
            return self.step(n)
        self._ask("continue")
        return self.status()["step"]

    def run_until(self, condition: str) -> int:
        """Let the agent run until ``condition`` (an expression over
        ``agent``) holds, or Ctrl-C; it pauses there."""
        if not isinstance(condition, str):
            raise HeraError("over the control channel a condition is an expression string")
        bp = self._ask("break", when=condition)["breakpoint"]
        try:
            self._ask("continue")
            while (status := self.status())["state"] == "running":
                time.sleep(0.05)
        except KeyboardInterrupt:
            self._ask("pause")
            status = self.status()
        finally:
            self._ask("clear", id=bp["id"])
        return status["step"]

    def breakpoint(self, at: int | None = None, every: int | None = None,
                   when: str | None = None) -> dict[str, Any]:
        if when is not None and not isinstance(when, str):
            raise HeraError("over the control channel a condition is an expression string")
        args = {k: v for k, v in (("at", at), ("every", every), ("when", when)) if v is not None}
        return self._ask("break", **args)["breakpoint"]

    def clear(self, id: int | None = None) -> int:  # noqa: A002
        return self._ask("clear", **({} if id is None else {"id": id}))["cleared"]

    def status(self) -> dict[str, Any]:
        return self._ask("status")["status"]

    def tensors(self) -> dict[str, Any]:
        return self._ask("tensors")["tensors"]

    def input(self, line: str) -> None:
        self._ask("input", line=line)

    def output(self) -> str:
        return self._ask("output")["line"]

    def save(self) -> None:
        self._ask("save")

    def down(self) -> None:
        self._ask("down")
        raise _Closed


#: Signals that end the agent: at the prompt they close it (once the line
#: being run, if any, has finished) so the agent can act on them.
_ENDING = tuple(getattr(signal, name) for name in ENDING)


def _interact(namespace: dict[str, Any], banner: str,
              note: Callable[[str], None] | None = None) -> None:
    """Run a console until Ctrl-D, agent.down() or (with ``note``) a signal
    that ends the agent; Ctrl-C cancels a line."""
    console = _Console(namespace)
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}

    def ending(signum: int, frame: Any) -> None:
        note(signal.Signals(signum).name)
        console.ending = True
        if console.waiting:  # nothing of the agent's is running: leave at once
            raise _Closed

    if note is not None:
        for signum in _ENDING:
            previous[signum] = signal.signal(signum, ending)
    try:
        console.interact(banner=banner, exitmsg="")
    except (_Closed, SystemExit):
        pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Console(code.InteractiveConsole):
    """A console that shows hera's errors as one line and can be closed
    between lines by a signal."""

    def __init__(self, namespace: dict[str, Any]):
        super().__init__(namespace)
        self.waiting = False
        self.ending = False

    def raw_input(self, prompt: str = "") -> str:
        if self.ending:
            raise _Closed
        self.waiting = True
        try:
            return super().raw_input(prompt)
        finally:
            self.waiting = False

    def runcode(self, codeobj: Any) -> None:
        try:
            exec(codeobj, self.locals)
        except (_Closed, SystemExit):
            raise
        except HeraError as exc:
            print(f"hera: error: {exc.message}")
        except BaseException:  # noqa: BLE001 - show it, keep the prompt
            self.showtraceback()


def run_local_prompt(loop: PromptHost) -> None:
    """The prompt in the agent's own process."""
    agent = LocalAgent(loop)
    s = loop.session
    banner = (f"hera prompt: {s.id} ({s.callsign}) paused at step {s.step_count}. "
              "`agent` is the live agent (agent.help()); Ctrl-D resumes running.")
    _interact({"agent": agent}, banner, note=loop.inbox.post)
    if not loop.stop_reason and not loop.inbox.ending():
        print(f"resuming at step {s.step_count}", flush=True)


def run_remote_prompt(client: "ControlClient") -> None:
    """The prompt in ``hera signal SIGSTOP``, attached to a detached agent."""
    agent = RemoteAgent(client)
    status = agent.status()
    banner = (f"hera prompt: attached to {status['id']} ({status['callsign']}), "
              f"{status['state']} at step {status['step']}. `agent` is the agent "
              "(agent.help()); Ctrl-D detaches and lets it run on.")
    _interact({"agent": agent}, banner)
