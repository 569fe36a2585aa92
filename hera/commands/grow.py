"""Extend a downed agent: widths, heights, depths, dendrite and axon
lengths, as its family allows. What it learned stays where it was; new
parts start at zero. Shrinking is refused.

Example: hera --uuid 3f2a grow width=8 axon=5
"""

from __future__ import annotations

import argparse

from hera.commands._common import add_scope_options, parse_assignments, store_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("changes", nargs="*", metavar="PARAM=VALUE", help="new, larger values")
    parser.add_argument("--file", dest="file", metavar="FILE", help="the agent's instance file")
    add_scope_options(parser)


def run(args: argparse.Namespace) -> int:
    from hera import manager
    from hera.plugins import load_plugins

    changes = parse_assignments(args.changes, "grow")
    store = store_for(args)
    target = manager.select_target(store, args.file, args.uuid, args.callsign)
    instance = manager.grow(load_plugins(), target, changes)
    grown = ", ".join(f"{k}={v}" for k, v in changes.items())
    print(f"grew {instance.id} ({instance.callsign}): {grown}")
    return 0
