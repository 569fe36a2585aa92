"""What each signal does to an upped agent's stepping loop (the seed's
table, :mod:`hera.signals`): stop and save, stand by, pause or open the
prompt, run on, checkpoint, detach, and hand stdin or stdout to the agent's
lines.
"""

from __future__ import annotations

import time
from typing import Any

from hera.session import PAUSED, RUNNING, STANDBY
from hera.signals import ENDING

#: A second SIGINT this soon after the first, in standby, saves and stops.
SECOND_CTRL_C_S = 2.0


class SignalActions:
    """The answers to signals of ``loop`` (a :class:`hera.loop.Loop`, which
    imports this module), called on its thread between chunks."""

    def __init__(self, loop: Any):
        self.loop = loop
        self._last_interrupt = float("-inf")

    def act_on(self, name: str) -> None:
        """Do what signal ``name`` means."""
        loop = self.loop
        console, session = loop.console, loop.session
        if name in ENDING:
            loop.stop_reason = loop.stop_reason or name  # a second one starts no second save
        elif name == "SIGINT":
            self._interrupt()
        elif name == "SIGCONT":
            if session.state != RUNNING:
                loop.set_state(RUNNING)
                console.tell(f"running from step {session.step_count}")
        elif name == "SIGTSTP" and not loop.can_prompt:
            console.tell("SIGTSTP ignored: no terminal to stop at (use SIGSTOP or SIGINT)")
        elif name in ("SIGTSTP", "SIGSTOP"):
            loop.set_state(PAUSED)
            if loop.can_prompt:
                loop.want_prompt = True
            else:  # 'hera signal SIGSTOP' attaches its own terminal over the control channel
                console.tell(f"paused at step {session.step_count} ({name})")
        elif name == "SIGUSR1":
            if loop.checkpoint_now():
                console.tell(f"saved at step {session.step_count} (SIGUSR1)")
        elif name == "SIGHUP":
            console.try_detach()
        elif name == "SIGTTIN":
            loop.streams.pipe_stdin()
        elif name == "SIGTTOU" and loop.streams.pipe_stdout(console.write_output):
            console.clear_progress()  # output lines take stdout from here on

    def _interrupt(self) -> None:
        """Ctrl-C: standby; a second one within SECOND_CTRL_C_S saves and stops."""
        loop = self.loop
        console, session = loop.console, loop.session
        now = time.monotonic()
        if session.state == STANDBY and now - self._last_interrupt <= SECOND_CTRL_C_S:
            console.tell(f"Ctrl-C twice: saving at step {session.step_count} and stopping")
            loop.stop_reason = loop.stop_reason or "Ctrl-C twice"
            return
        self._last_interrupt = now
        loop.set_state(STANDBY)
        if loop.can_prompt:
            console.tell(f"standby at step {session.step_count}: Ctrl-C again within "
                         f"{SECOND_CTRL_C_S:.0f} s saves and stops; Ctrl-Z opens the prompt "
                         "(Ctrl-D there runs on); 'hera signal SIGCONT' runs on")
        else:
            console.tell(f"standby at step {session.step_count} (SIGCONT resumes, "
                         f"'hera down' saves and stops)")
