"""List installed agents: this user's, another user's (--user NAME), or
those of every user and the system (--all). Agents kept only as files in
working directories are not listed.
"""

from __future__ import annotations

import argparse

from hera.commands._common import add_json_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", metavar="NAME", help="list the agents of user NAME")
    parser.add_argument("--system", action="store_true", help="list the system's agents")
    parser.add_argument("--all", action="store_true", help="list every user's and the system's agents")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from hera import places
    from hera.errors import UsageError
    from hera.output import human_count, print_json, print_table
    from hera.progress import duration
    from hera.store import AgentStore

    if args.all and (args.user or args.system):
        raise UsageError("--all lists everyone's agents; leave out --user/--system")
    if args.all:
        scopes = places.all_user_scopes() + [places.Scope("system")]
    else:
        scopes = [places.Scope.of(args.system, args.user)]
    rows = [live(agent_row(entry), store) for scope in scopes
            for store in [AgentStore(scope)] for entry in store.entries()]
    if args.json:
        print_json(rows)
        return 0
    headers = ["ID", "CALLSIGN", "FAMILY/LAYOUT", "STATUS", "STEPS", "PID", "DEVICE", "MODE",
               "UPTIME", "STEPS/S", "LAST RUN"]
    if args.all:
        headers.insert(0, "OWNER")
    table = []
    for row in rows:
        cells = [row["id"][:8], row["callsign"], f"{row['family']}/{row['layout']}", row["status"],
                 row["steps"], row["pid"] or "-", row["device"] or "-", row["mode"] or "-",
                 "-" if row["uptime"] is None else duration(row["uptime"]),
                 "-" if row["steps_per_s"] is None else human_count(round(row["steps_per_s"])),
                 last_run_cell(row["last_run"])]
        if args.all:
            cells.insert(0, row["scope"])
        table.append(cells)
    print_table(headers, table, empty="no agents installed")
    return 0


def live(row: dict, store) -> dict:
    """Ask an up agent for its current step and state over its control
    channel; keep what the files say if it does not answer at once."""
    if not row["control"]:
        return row
    from hera.control import ControlClient
    from hera.errors import HeraError

    try:
        with ControlClient(store.socket_path(row["id"]), store.token_path(row["id"]),
                           timeout=1.0, owner=store.owner) as client:
            status = client.request("status")["status"]
    except HeraError:
        return row
    row.update(steps=status["step"], status=status["state"],
               breakpoints=status["breakpoints"])
    if row["uptime"] and row.get("start_steps") is not None:
        row["steps_per_s"] = (row["steps"] - row["start_steps"]) / row["uptime"]
    return row


def agent_row(entry) -> dict:
    """One agent as a JSON-ready dict (also the ``--json`` schema)."""
    meta = entry.header.meta
    holder = entry.holder
    info = holder.info if holder else {}
    return {
        "id": entry.id,
        "callsign": entry.callsign,
        "family": meta["family"]["name"],
        "family_version": meta["family"]["version"],
        "layout": meta["layout"],
        "status": entry.status,
        "steps": meta["steps"],
        "incarnation": meta["incarnation"],
        "scope": entry.scope.label,
        "pid": holder.pid if holder else None,
        "device": info.get("device"),
        "backend": info.get("backend"),
        "ranks": info.get("ranks") if entry.is_up else None,
        "mode": info.get("mode") if entry.is_up else None,
        "control": info.get("socket") if entry.is_up else None,
        "breakpoints": None,  # filled in by live() for an up agent that answers
        "path": str(entry.header.path),
        "uptime": _uptime(holder.started) if entry.is_up else None,
        "start_steps": info.get("start_steps") if entry.is_up else None,
        "steps_per_s": None,  # filled in by live(): the mean since it came up
        "last_run": last_run(entry),
    }


def last_run(entry) -> dict | None:
    """How the agent's last run ended, for an agent that is not up: its
    ``outcome`` (``saved``, ``killed``, ``failed``, ``not saved``, ``save
    failed``), ``reason``, ``steps_lost`` (``None`` for a killed run: it
    could not say how far it got after its last save), ``ended`` (when, if
    known) and ``error``."""
    if entry.is_up:
        return None
    if entry.killed:
        return {"outcome": "killed", "reason": None, "steps_lost": None, "ended": None,
                "error": None}
    record = entry.ended
    if not record or not isinstance(record.get("outcome"), str):
        return None
    lost = _whole(record.get("steps")) - _whole(record.get("saved_steps"))
    return {"outcome": record["outcome"], "reason": record.get("reason"),
            "steps_lost": max(lost, 0), "ended": record.get("ended"),
            "error": record.get("error")}


def last_run_cell(last: dict | None) -> str:
    """``saved``, ``killed, unsaved steps lost``, ``failed, 40 steps lost``…"""
    if last is None:
        return "-"
    lost = last["steps_lost"]
    if lost is None:
        return f"{last['outcome']}, unsaved steps lost"
    return f"{last['outcome']}, {lost:,} steps lost" if lost else last["outcome"]


def _whole(value) -> int:
    return value if type(value) is int else 0


def _uptime(started: float | None) -> float | None:
    """Seconds since the process that holds the agent started (``None`` if
    unknown)."""
    import time

    if not isinstance(started, (int, float)):
        return None
    return max(time.time() - started, 0.0)
