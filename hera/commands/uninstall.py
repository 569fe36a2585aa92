"""Move a downed agent out of the cache into a file: --output, else the
FILE it was named by, else ./<uuid>.json. An earlier copy of the same agent
there (such as the file it was built as) is replaced; any other existing
file is kept unless --force. The copy holds the agent's complete state, so 'hera up FILE'
brings it back.
"""

from __future__ import annotations

import argparse

from hera.commands._common import add_file_argument, add_scope_options, store_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_argument(parser, "the agent's instance file")
    parser.add_argument("--output", metavar="PATH", help="where to put the copy (default: ./<uuid>.json)")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    add_scope_options(parser, "uninstall")


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from hera import manager

    from hera.errors import UsageError

    if args.output and args.output.endswith(("/", os.sep)) and not Path(args.output).is_dir():
        raise UsageError(f"--output {args.output}: no such directory")
    store = store_for(args)
    target = manager.select_target(store, args.file, args.uuid, args.callsign)
    # The file the agent was named by gets its state back; else ./<uuid>.json.
    destination = Path(args.output or args.file or Path.cwd())
    path = manager.uninstall(target, destination, args.force)
    print(f"uninstalled {target.id} ({target.header.callsign}); its state is in {path}")
    return 0
