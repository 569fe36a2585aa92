"""A live look at a running agent: its state, steps/s and spikes/s, and the
rate of each of its populations (spikes per neuron per step), redrawn in
place every --interval seconds until Ctrl-C or until the agent goes down.
With nothing named, the one running agent. --once takes one sample (over
one interval) and prints it; with --json, as one object.

It reads the agent over its control channel (the family's hera_activity)
and changes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from hera.commands._common import add_file_argument, add_json_option, add_scope_options, store_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_argument(parser, "the agent's instance file")
    parser.add_argument("--interval", type=_interval, default=1.0, metavar="SECONDS",
                        help="seconds between samples (default: 1)")
    parser.add_argument("--once", action="store_true", help="take one sample, print it, stop")
    add_json_option(parser)
    add_scope_options(parser, "watch")


def _interval(text: str) -> float:
    from hera.commands._common import seconds

    value = seconds(text)
    if value < 0.05:
        raise argparse.ArgumentTypeError(f"must be at least 0.05: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from hera import manager
    from hera.control import ControlClient
    from hera.errors import HeraError, UsageError

    if args.json and not args.once:
        raise UsageError("--json prints one sample: give --once too")
    store = store_for(args)
    target = manager.running_target(store, args.file, args.uuid, args.callsign)
    label = f"agent {target.id[:8]} ({target.header.callsign})"
    holder = store.holder(target.id)
    if holder is None or holder.info.get("op") != "up":
        raise HeraError(f"{label} is not up")
    client = ControlClient(store.socket_path(target.id), store.token_path(target.id),
                           owner=store.owner)
    live = sys.stdout.isatty() and not args.once
    drawn = 0
    try:
        before = _sample(client)
        while True:
            time.sleep(args.interval)
            try:
                after = _sample(client)
            except HeraError:
                if args.once:
                    raise
                print(f"{label} is no longer up")
                return 0
            report = compare(before, after)
            if args.once:
                if args.json:
                    from hera.output import print_json

                    print_json(report)
                else:
                    print("\n".join(lines(label, report)))
                return 0
            text = lines(label, report)
            if live and drawn:  # back over the previous drawing
                sys.stdout.write(f"\x1b[{drawn}F")
            sys.stdout.write("".join(f"{ln}\x1b[K\n" for ln in text) if live
                             else "\n".join(text) + "\n\n")
            sys.stdout.flush()
            drawn = len(text)
            before = after
    except KeyboardInterrupt:  # how a person ends it
        return 0
    finally:
        client.close()


def _sample(client: Any) -> dict[str, Any]:
    """The agent's status and activity now, and when they were read."""
    status = client.request("status")["status"]
    activity = client.request("activity")
    return {"time": time.monotonic(), "status": status, "step": activity["step"],
            "activity": activity["activity"]}


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the agent did between two samples: steps/s, spikes/s, and each
    population's rate in spikes per neuron per step (``None`` over no step)."""
    seconds = max(after["time"] - before["time"], 1e-9)
    steps = after["step"] - before["step"]
    populations, spikes = [], 0
    for name, (count, size) in after["activity"].items():
        earlier = before["activity"].get(name, [0, size])[0]
        # a count below the last one: the agent was upped again meanwhile
        fired = count - earlier if count >= earlier else count
        spikes += fired
        populations.append({"name": name, "size": size, "spikes": fired,
                            "rate": fired / (size * steps) if steps > 0 and size else None})
    status = after["status"]
    return {"id": status["id"], "callsign": status["callsign"], "state": status["state"],
            "step": after["step"], "seconds": seconds, "steps_per_s": steps / seconds,
            "spikes_per_s": spikes / seconds, "populations": populations}


def lines(label: str, report: dict[str, Any]) -> list[str]:
    """The report as a person reads it."""
    from hera.output import human_count

    head = (f"{label} {report['state']} at step {report['step']:,} · "
            f"{human_count(round(report['steps_per_s']))} steps/s · "
            f"{human_count(round(report['spikes_per_s']))} spikes/s")
    width = max([len("POPULATION"), *(len(p["name"]) for p in report["populations"])])
    rows = [f"{'POPULATION':<{width}}  {'SIZE':>8}  {'SPIKES':>10}  RATE (spikes/neuron/step)"]
    for p in report["populations"]:
        rate = "-" if p["rate"] is None else f"{p['rate']:.5f}"
        rows.append(f"{p['name']:<{width}}  {p['size']:>8,}  {p['spikes']:>10,}  {rate}")
    return [head, *rows]
