"""Build an instance file from a family and a layout.

The file is written to the working directory, named by the agent's UUID
unless FILE is given. Its weights are as the family builds them (usually
zero) and it has no dynamic state yet: it is dead until its first up.
Layout parameters come from the layout, then ~/.herarc, then ./hera.json,
then --set, each overriding the one before.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hera.commands._common import add_json_option, configure, parse_assignments, path_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", metavar="FILE", help="file to write (default: <uuid>.json)")
    parser.add_argument("--set", action="append", metavar="PARAM=VALUE",
                        help="override a layout parameter (repeatable)")
    parser.add_argument("--name", dest="new_callsign", metavar="CALLSIGN",
                        help="callsign for the new agent (default: made from its id)")
    parser.add_argument("--force", action="store_true", help="replace FILE if it exists")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from hera import manager
    from hera.plugins import load_plugins

    config = configure(args)
    overrides = dict(config.definition)
    overrides.update(parse_assignments(args.set, "--set"))
    plugins = load_plugins()
    path, instance = manager.build(plugins, args.family, args.layout, overrides,
                                   path_arg(args.file), args.new_callsign, args.force)
    if args.json:
        from hera.output import print_json

        print_json({"id": instance.id, "callsign": instance.callsign, "family": instance.family,
                    "layout": instance.layout, "path": str(Path(path).absolute())})
        _say_where_it_runs(plugins, instance, Path(path))
        return 0
    print(f"built {instance.id} ({instance.callsign}) {instance.family}/{instance.layout} -> {path}")
    _say_where_it_runs(plugins, instance, path)
    return 0


def _say_where_it_runs(plugins, instance, path) -> None:
    """A note on stderr when the agent won't fit the device ``up`` would
    take here (it may be built for another machine)."""
    import sys

    from hera import devices
    from hera.output import human_bytes
    from hera.runner import resource_report

    device = devices.choose_device(None)
    report = resource_report(plugins, instance, device)
    capacity = devices.device_memory(device)
    if report is not None and report.total > capacity:
        sys.stdout.flush()
        print(f"note: it needs {human_bytes(report.total)} on {device}, which has "
              f"{human_bytes(capacity)}: up it on a device that holds it (see hera up "
              f"{path.name} --simulate)", file=sys.stderr)
