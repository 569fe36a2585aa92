"""The ``hera`` command line.

Command modules are listed by name and imported on use; none of them imports
torch or triton at module level, so ``hera --help``, ``agents``, ``families``
and ``layouts`` start fast. Errors are one line on stderr (``HERA_DEBUG=1``
shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType

import hera
from hera.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, HeraError, did_you_mean

#: name → (module, one-line summary), in the order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("hera.commands.build", "build an instance file from a family and a layout"),
    "install": ("hera.commands.install", "install an instance file into the agent cache"),
    "up": ("hera.commands.up", "load an agent onto a device and run it"),
    "down": ("hera.commands.down", "save a running agent into the cache and stop it"),
    "grow": ("hera.commands.grow", "extend a downed agent, keeping what it learned"),
    "uninstall": ("hera.commands.uninstall", "move a downed agent out of the cache into a file"),
    "destroy": ("hera.commands.destroy", "remove a downed agent from the cache for good"),
    "signal": ("hera.commands.signal", "send a named signal to a running agent"),
    "agents": ("hera.commands.agents", "list installed agents"),
    "inspect": ("hera.commands.inspect", "show an agent's metadata, definition and tensors"),
    "logs": ("hera.commands.logs", "show (and follow) the log of a detached agent"),
    "plot": ("hera.commands.plot", "draw spikes, rates, input fields or weights to PNG or SVG"),
    "top": ("hera.commands.top", "watch a running agent: steps/s, spikes/s, rates per population"),
    "devices": ("hera.commands.devices", "list the devices on this host"),
    "layouts": ("hera.commands.layouts", "list the layouts of the installed families"),
    "families": ("hera.commands.families", "list the installed families"),
}

EPILOG = """\
Global options go before the command (hera --family abraxas --layout example build)
and are accepted after it too. Identify an agent by file name, --uuid ID (any unique
prefix) or --callsign NAME. Set HERA_DEBUG=1 to see tracebacks.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with 'did you mean' for mistyped commands and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if "invalid choice" in message and message.lower().startswith("argument command"):
            wrong = message.split("'")[1] if "'" in message else ""
            message = f"unknown command {wrong!r}" + (
                did_you_mean(wrong, COMMANDS) or " (see 'hera --help')")
        self.exit(EXIT_USAGE, f"hera: error: {message}\n")


def add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The options every command accepts before (and after) its name."""
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("global options")
    group.add_argument("--family", default=default, metavar="NAME", help="family to build from")
    group.add_argument("--layout", default=default, metavar="NAME", help="layout of the family")
    group.add_argument("--uuid", "--id", dest="uuid", default=default, metavar="ID",
                       help="the agent's UUID or any unique prefix of it")
    group.add_argument("--callsign", default=default, metavar="NAME", help="the agent's callsign")


def command_module(name: str) -> ModuleType:
    """Import the module of command ``name``."""
    return importlib.import_module(COMMANDS[name][0])


def build_parser() -> argparse.ArgumentParser:
    """The full parser (imports every command module; they are light)."""
    parser = _Parser(prog="hera", description=hera.__doc__.splitlines()[0] if hera.__doc__ else None,
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"hera {hera.__version__}")
    add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (_, summary) in COMMANDS.items():
        module = command_module(name)
        cmd = sub.add_parser(name, help=summary, description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd)
        add_global_options(cmd, suppress=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    debug = os.environ.get("HERA_DEBUG", "") not in ("", "0")
    try:
        parser = build_parser()
        if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (hera.completion)
            from hera.completion import complete

            complete(parser)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        return command_module(args.command).run(args) or 0
    except HeraError as exc:
        if debug:
            raise
        print(f"hera: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("hera: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `hera agents | head`: the reader left; nothing to report.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the one place that catches everything
        if debug:
            raise
        print(f"hera: internal error: {type(exc).__name__}: {exc} "
              "(run with HERA_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_ERROR
