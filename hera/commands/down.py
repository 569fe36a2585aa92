"""Save a running agent into the cache and stop it.

With one agent running no identifier is needed; with several, give a file,
--uuid or --callsign. Waits until the agent has written its state.
"""

from __future__ import annotations

import argparse
import sys

from hera.commands._common import (add_file_argument, add_json_option, add_scope_options, seconds,
                                   store_for)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_argument(parser, "the agent's instance file")
    parser.add_argument("--timeout", type=seconds, default=120.0, metavar="SECONDS",
                        help="how long to wait for the save (default: 120)")
    add_json_option(parser)
    add_scope_options(parser)


def run(args: argparse.Namespace) -> int:
    from hera import manager

    store = store_for(args)
    target = manager.running_target(store, args.file, args.uuid, args.callsign)
    shown = [False]

    def progress(waited: float) -> None:
        if waited > 1.0 and not shown[0] and sys.stderr.isatty():
            print(f"waiting for {target.header.callsign} to save...", file=sys.stderr)
            shown[0] = True

    header = manager.down(target, timeout=args.timeout, progress=progress)
    if args.json:
        from hera.output import print_json

        print_json({"id": header.id, "callsign": header.callsign, "steps": header.meta["steps"]})
        return 0
    print(f"down {header.id} ({header.callsign}) at step {header.meta['steps']}")
    return 0
