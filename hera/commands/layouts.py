"""List the layouts of the installed families with their size: neurons,
synapses and the memory an up of a fresh instance needs at its peak on the
device it would up on (--device ID: on that device, keeping the layouts
that fit it). On the CPU that is the process's peak, as ``up --simulate``
works it out (hera.estimates).
"""

from __future__ import annotations

import argparse

from hera.commands._common import add_json_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", metavar="ID", help="keep the layouts that fit device ID (cpu, cuda:0, ...)")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from hera.output import human_bytes, human_count, print_json, print_table
    from hera.plugins import load_plugins

    plugins = load_plugins()
    family_filter = getattr(args, "family", None)
    if family_filter:
        plugins.family(family_filter)  # unknown family → clear error
    from hera import devices
    from hera.estimates import up_report

    limit = None
    device = devices.likely_default_device()
    if args.device:
        device = args.device.strip().lower()
        limit = devices.device_memory(device)
    rows = []
    for info, _, _ in plugins.families():
        if family_filter and info.name != family_filter:
            continue
        hooks = plugins.family_hooks(info.name)
        for layout in plugins.layouts(info.name):
            try:
                family_report = hooks.hera_simulate(definition=dict(layout.parameters),
                                                    device=device)
            except Exception:  # noqa: BLE001 - a listing shows the family's own figure then
                family_report = None
            report = up_report(plugins, info.name, family_report, device)
            need = layout.bytes if report is None else report.total
            if limit is not None and need > limit:
                continue
            rows.append({"family": info.name, "layout": layout.name, "neurons": layout.neurons,
                         "synapses": layout.synapses, "bytes": need,
                         "summary": layout.summary, "parameters": layout.parameters})
    if args.json:
        print_json(rows)
        return 0
    empty = "no layout fits that device" if limit is not None else "no layouts (no families installed?)"
    print_table(["FAMILY/LAYOUT", "NEURONS", "SYNAPSES", "MEMORY", "SUMMARY"],
                [[f"{r['family']}/{r['layout']}", human_count(r["neurons"]), human_count(r["synapses"]),
                  human_bytes(r["bytes"]), r["summary"]] for r in rows], empty=empty)
    return 0
