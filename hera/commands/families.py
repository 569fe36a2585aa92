"""List the installed families: name, version, where each was found
(entry point or working directory) and which hooks it implements.
"""

from __future__ import annotations

import argparse

from hera.commands._common import add_json_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from hera.output import print_json, print_table
    from hera.plugins import load_plugins

    plugins = load_plugins()
    rows = []
    for info, name, source in plugins.families():
        rows.append({
            "name": info.name,
            "version": info.version,
            "data_format": info.data_format,
            "upgrades_from": list(info.upgrades_from),
            "summary": info.summary,
            "found": source.kind,
            "location": source.location,
            "distribution": source.distribution,
            "hooks": plugins.hooks_of(name),
        })
    if args.json:
        print_json(rows)
        return 0
    print_table(["FAMILY", "VERSION", "FOUND", "LOCATION", "SUMMARY"],
                [[r["name"], r["version"], r["found"], r["location"], r["summary"]] for r in rows],
                empty="no families installed")
    return 0
