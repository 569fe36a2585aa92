"""Load an agent onto a device and run it; on the way out its complete
state (weights, membranes, spikes in flight, random state) is saved to the
cache, and the next up resumes from exactly there.

Give a file (installed on first up) or --uuid/--callsign of an installed
agent. It runs --steps N iterations, or until 'hera down', SIGTERM or
Ctrl-C. Only one up of an agent runs at a time.
"""

from __future__ import annotations

import argparse

from hera.commands._common import add_file_argument, add_scope_options, configure, store_for


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_argument(parser, "instance file (installed on first up)")
    parser.add_argument("--steps", type=_positive, metavar="N", help="run N iterations, then down")
    parser.add_argument("--device", metavar="ID", help="cpu, cuda, cuda:N or auto (default: best)")
    parser.add_argument("--silent", action=argparse.BooleanOptionalAction, default=None,
                        help="print nothing (safe to put in the background)")
    parser.add_argument("--checkpoint", type=_seconds, metavar="SECONDS",
                        help="save the running agent to the cache every SECONDS, so a crash "
                             "loses at most that much (default: 600; 0: only when it stops)")
    parser.add_argument("--chunk", type=_positive, metavar="N",
                        help="iterations per family call (default: adapts to ~0.1 s)")
    add_scope_options(parser)


def run(args: argparse.Namespace) -> int:
    from hera import manager, runner
    from hera.plugins import load_plugins

    configure(args)
    store = store_for(args)
    target = manager.select_target(store, args.file, args.uuid, args.callsign, allow_uninstalled=True)
    options = runner.UpOptions(device=args.device, steps=args.steps, chunk=args.chunk,
                               silent=bool(args.silent), checkpoint=args.checkpoint)
    runner.up(load_plugins(), target, options)
    return 0
