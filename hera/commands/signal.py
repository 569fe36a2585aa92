"""Send a named signal to a running agent (the seed's table):

  SIGCONT  continue the inner loop if stopped; release the terminal
  SIGSTOP  stop the inner loop; attach this terminal (a prompt) to a
           detached agent. Closing the prompt (Ctrl-D) lets it run on
  SIGTSTP  stop the inner loop and open the prompt, if it has a terminal
  SIGHUP   detach from the terminal: output goes to the log at once
  SIGINT   standby: stop stepping, stay loaded
  SIGQUIT  save to the cache, then terminate with a core dump
  SIGABRT  terminate with a core dump, without saving
  SIGKILL  terminate at once, without saving (the cache keeps the last save)
  SIGTERM  save to the cache and terminate normally
  SIGTTIN  from now on, lines on the agent's stdin go into its input area
  SIGTTOU  from now on, its output area is written line by line to stdout

Signals outside the seed's table never lose a run: SIGUSR1 saves to the
cache and runs on; SIGPWR and SIGXCPU save and terminate; SIGUSR2,
SIGALRM, SIGVTALRM, SIGPROF, SIGIO and SIGXFSZ are ignored.

SIGSTOP and SIGKILL cannot be caught by a process: SIGSTOP is asked over
the agent's control channel, and SIGKILL goes to the verified pid. The
other signals are delivered as real signals. With one agent running no
identifier is needed.
"""

from __future__ import annotations

import argparse

from hera.commands._common import add_file_argument, add_scope_options, store_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="SIGTERM, TERM, term or 15, ...")
    add_file_argument(parser, "the agent's instance file")
    parser.add_argument("--no-attach", action="store_true",
                        help="with SIGSTOP: only pause, do not open a prompt here")
    add_scope_options(parser)


def run(args: argparse.Namespace) -> int:
    import os
    import signal as signals
    import sys

    from hera import manager
    from hera.control import ControlClient
    from hera.errors import UsageError
    from hera.signals import parse_name

    try:
        name = parse_name(args.name)
    except ValueError:
        raise UsageError(f"unknown signal {args.name!r} (see 'hera signal --help')") from None
    store = store_for(args)
    target = manager.running_target(store, args.file, args.uuid, args.callsign)
    holder = manager.verified_holder(target)
    label = f"{target.id} ({target.header.callsign})"
    if name != "SIGSTOP":
        at_step = _current_step(store, target) if name == "SIGKILL" else None
        try:
            os.kill(holder.pid, getattr(signals, name))
        except ProcessLookupError:
            pass
        except PermissionError:
            from hera.errors import HeraError

            raise HeraError(f"not allowed to signal agent {label} (pid {holder.pid})") from None
        print(f"sent {name} to {label}, pid {holder.pid}")
        if name == "SIGKILL":
            saved = _saved_step(store, target)
            lost = "" if at_step is None or saved is None else f" ({at_step - saved} steps lost)"
            print(f"killed without saving: the cache keeps the save at step {saved}, "
                  f"the steps after it are lost{lost}" if saved is not None else
                  "killed without saving: the cache keeps its last save")
        return 0
    with ControlClient(store.socket_path(target.id), store.token_path(target.id),
                       owner=store.owner) as client:
        status = client.request("signal", name="SIGSTOP")["status"]
        attach = not args.no_attach and sys.stdin.isatty() and status["mode"] == "daemon"
        if not attach:
            print(f"stopped the inner loop of {label}")
            return 0
        from hera.prompt import run_remote_prompt

        run_remote_prompt(client)
        try:
            client.request("continue")
            print(f"detached; {label} runs on")
        except Exception:  # noqa: BLE001 - it may have been downed from the prompt
            print(f"detached from {label}")
    return 0


def _current_step(store, target) -> int | None:
    """The step a running agent is at, if it answers at once."""
    from hera.control import ControlClient
    from hera.errors import HeraError

    try:
        with ControlClient(store.socket_path(target.id), store.token_path(target.id),
                           timeout=1.0, owner=store.owner) as client:
            return int(client.request("status")["status"]["step"])
    except (HeraError, KeyError, TypeError, ValueError):
        return None


def _saved_step(store, target) -> int | None:
    """The step of the agent's file in the store."""
    from hera.errors import HeraError

    try:
        return int(store.header(target.id).meta["steps"])
    except HeraError:
        return None
