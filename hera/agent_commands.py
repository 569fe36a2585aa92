"""The commands of a live agent, in one table: the prompt's ``agent``
(local and remote, with its help), and the control channel's requests.

:data:`PROMPT` lists what ``agent.NAME(...)`` does at the Python prompt
(``hera.prompt``); both the local and the remote prompt implement exactly
these. :data:`CONTROL` lists the requests of the control channel
(docs/control.md), each with who answers it: the loop of ``hera up``
(``hera.loop``), a program's agent (``hera.program_agent``), or, for
:data:`ON_THE_AGENT`, whoever drives it (``hera.session.answer``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptCommand:
    """``agent.NAME(...)`` at the prompt."""

    name: str
    usage: str
    summary: str


PROMPT: tuple[PromptCommand, ...] = (
    PromptCommand("step", "agent.step(n=1)", "take n steps (stops early at a breakpoint)"),
    PromptCommand("run", "agent.run(n=None)", "run n steps, or until a breakpoint or Ctrl-C"),
    PromptCommand("run_until", "agent.run_until(cond)",
                  "run until cond(agent) is true (checked every step)"),
    PromptCommand("breakpoint", "agent.breakpoint(at=STEP | every=N | when=COND)",
                  "add a breakpoint"),
    PromptCommand("clear", "agent.clear(id=None)", "remove one breakpoint, or all"),
    PromptCommand("status", "agent.status()", "state, step, device, breakpoints"),
    PromptCommand("tensors", "agent.tensors()",
                  "every tensor of the agent (local prompt: CPU copies)"),
    PromptCommand("input", "agent.input(line)", "put a line into the input area"),
    PromptCommand("output", "agent.output()", "the output area since the last read, as a line"),
    PromptCommand("save", "agent.save()", "write a checkpoint to the cache now"),
    PromptCommand("down", "agent.down()", "save, close the prompt and stop the agent"),
    PromptCommand("help", "agent.help()", "this list"),
)

#: The prompt's help: every command, then how to leave.
HELP = "\n".join(f"{c.usage:<24} {c.summary}" if len(c.usage) <= 24
                 else f"{c.usage}   {c.summary}" for c in PROMPT) \
    + "\nCtrl-D closes the prompt; the agent runs on."

#: Control requests that act on the agent itself, answered the same way
#: whoever drives it (:func:`hera.session.answer`).
ON_THE_AGENT: dict[str, str] = {
    "input": "put a line (line) into the input area",
    "feed": "put arrays (values, spikes) into the input area",
    "output": "the output area since the last read, as a line",
    "output_array": "the output area since the last read, as numbers",
    "freeze": "freeze (frozen: true) or thaw all adaptation",
    "tensors": "every tensor's name, dtype and shape",
    "activity": "spikes per population since the agent was loaded",
    "save": "write a checkpoint to the cache now",
}

#: Every control request, with what it does.
CONTROL: dict[str, str] = {
    "status": "the agent's status",
    "pause": "stop stepping, between two steps",
    "continue": "step on",
    "step": "take steps (steps) and pause",
    "break": "add a breakpoint (at, every or when)",
    "clear": "remove one breakpoint (id), or all",
    **ON_THE_AGENT,
    "down": "save and stop",
    "signal": "act as on a signal (name)",
    "io": "turn the connection into the agent's input and output stream",
}
