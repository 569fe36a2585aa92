"""The live agent's own methods, as the running hooks' last resort: a
family whose agents have the methods of :class:`hera.hooks.types.LiveAgent`
need not implement ``hera_step``, ``hera_serialize``, ``hera_encode_input``
and ``hera_decode_output``.

hera registers :class:`AgentProtocol` in every plugin manager. Its
implementations run last (``trylast``): a family's own implementation of a
hook, when it has one, answers first, and wrappers of other plugins see
the call either way.
"""

from __future__ import annotations

from typing import Any

from hera.hooks import hookimpl

#: The name the protocol plugin is registered under.
NAME = "hera-agent-protocol"


def _method(agent: Any, name: str) -> Any:
    return getattr(agent, name, None)


class AgentProtocol:
    """The running hooks answered by the agent's methods, where it has them."""

    @hookimpl(trylast=True)
    def hera_step(self, agent: Any, steps: int) -> int | None:
        step = _method(agent, "step")
        return None if step is None else step(steps)

    @hookimpl(trylast=True)
    def hera_serialize(self, agent: Any) -> Any:
        snapshot = _method(agent, "snapshot")
        return None if snapshot is None else snapshot()

    @hookimpl(trylast=True)
    def hera_encode_input(self, agent: Any, line: str) -> bool | None:
        feed = _method(agent, "feed")
        return None if feed is None else feed(line)

    @hookimpl(trylast=True)
    def hera_decode_output(self, agent: Any) -> str | None:
        read = _method(agent, "read")
        return None if read is None else read()
