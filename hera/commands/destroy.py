"""Remove a downed agent from the cache for good.

The cache holds the only copy of an agent's evolved state: this cannot be
undone. A running agent is refused (down it first). On a terminal you are
asked to confirm unless --yes is given.
"""

from __future__ import annotations

import argparse
import sys

from hera.commands._common import add_file_argument, add_scope_options, store_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_argument(parser, "the agent's instance file")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    add_scope_options(parser, "destroy")


def run(args: argparse.Namespace) -> int:
    from hera import manager
    from hera.errors import HeraError

    store = store_for(args)
    target = manager.select_target(store, args.file, args.uuid, args.callsign)
    label = f"{target.id} ({target.header.callsign})"
    entry = store.entry(target.header)
    if entry.is_up:
        pid = entry.holder.pid if entry.holder else "?"
        raise HeraError(f"agent {label} is running (pid {pid}); down it first")
    if not args.yes and sys.stdin.isatty():
        try:
            answer = input(f"destroy agent {label} at step {target.header.meta['steps']}? "
                           "This cannot be undone. [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("not destroyed")
            return 1
    manager.destroy(target)
    print(f"destroyed {label}; this cannot be undone")
    return 0
