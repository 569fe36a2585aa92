"""List every compute device on this host, usable or not: the CPU (cores,
memory) and each CUDA GPU, with the backend hera runs on it.
"""

from __future__ import annotations

import argparse

from hera.commands._common import add_json_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from hera.devices import list_devices
    from hera.output import human_bytes, print_json, print_table

    found = list_devices()
    if args.json:
        print_json([d.as_json() for d in found])
        return 0
    rows = []
    for d in found:
        what = d.name + (f" ({d.cores} cores)" if d.cores else "")
        rows.append([d.id, what, human_bytes(d.memory), "yes" if d.usable else "no",
                     d.backend or "-", d.note])
    print_table(["DEVICE", "NAME", "MEMORY", "USABLE", "BACKEND", "NOTE"], rows)
    return 0
