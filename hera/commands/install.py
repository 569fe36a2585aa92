"""Install an instance file into the agent cache, without starting it.

The cache copy gets the install record (when, by whom, for whom). With
--system or --user NAME it installs for the system or for another user. The file in the working directory stays as it is and
does not evolve; the cached agent does.
"""

from __future__ import annotations

import argparse

from hera.commands._common import add_scope_options, configure, store_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="instance file to install")
    add_scope_options(parser, "install as")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hera import manager
    from hera.errors import UsageError
    from hera.plugins import load_plugins

    if args.uuid or args.callsign:
        raise UsageError("install takes a file, not --uuid/--callsign")
    configure(args)
    store = store_for(args)
    instance = manager.install(load_plugins(), store, Path(args.file))
    print(f"installed {instance.id} ({instance.callsign}) for {store.scope.label} in {store.dir}")
    return 0
