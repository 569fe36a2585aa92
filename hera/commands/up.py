"""Load an agent onto a device and run it; on the way out its complete
state (weights, membranes, spikes in flight, random state) is saved to the
cache, and the next up resumes from exactly there.

Give a file (installed on first up) or --uuid/--callsign of an installed
agent. It runs --steps N iterations, or until 'hera down' or SIGTERM.
Modes: normal (a banner, then quiet), --silent, --interactive (a Python
prompt with the live agent, at once or --prompt-after N steps; Ctrl-D
resumes running, Ctrl-Z brings it back) and --daemon (detached; control
and I/O through the agent's control socket). --simulate works out what the
agent needs on the device and loads nothing. Signals: see 'hera signal'.
"""

from __future__ import annotations

import argparse

from hera.commands._common import (add_file_argument, add_json_option, add_scope_options,
                                   byte_size, configure, positive_int, seconds, store_for)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_argument(parser, "instance file (installed on first up)")
    parser.add_argument("--steps", type=positive_int, metavar="N", help="run N iterations, then down")
    parser.add_argument("--device", metavar="ID", help="cpu, cuda, cuda:N or auto (default: best)")
    parser.add_argument("--silent", action=argparse.BooleanOptionalAction, default=None,
                        help="print nothing (safe to put in the background)")
    parser.add_argument("--checkpoint", type=seconds, metavar="SECONDS",
                        help="save the running agent to the cache every SECONDS, so a crash "
                             "loses at most that much (default: 600; 0: only when it stops)")
    parser.add_argument("--chunk", type=positive_int, metavar="N",
                        help="iterations per family call (default: adapts to ~0.1 s)")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--interactive", action="store_true",
                       help="open a Python prompt with the live agent (at once, or see --prompt-after)")
    modes.add_argument("--daemon", action="store_true",
                       help="detach from the terminal; talk to the agent through its control socket")
    modes.add_argument("--simulate", action="store_true",
                       help="work out what the agent needs on the device; load nothing")
    parser.add_argument("--prompt-after", type=positive_int, metavar="N",
                        help="with --interactive: run N iterations, then open the prompt")
    parser.add_argument("--break-at", type=positive_int, action="append", metavar="STEP",
                        help="breakpoint at step STEP (repeatable)")
    parser.add_argument("--break-every", type=positive_int, action="append", metavar="N",
                        help="breakpoint every N steps (repeatable)")
    parser.add_argument("--break-when", action="append", metavar="EXPR",
                        help="breakpoint when the Python expression EXPR over `agent` is true, "
                             "checked every step (repeatable)")
    parser.add_argument("--output-every", type=positive_int, default=100, metavar="N",
                        help="steps per output line when output is piped or streamed (default: 100)")
    parser.add_argument("--log-every", type=seconds, default=60.0, metavar="SECONDS",
                        help="a detached agent (--daemon) writes its progress to its log every "
                             "SECONDS of running (default: 60; 0: never)")
    parser.add_argument("--record", action="append", metavar="WHAT[=WHICH]",
                        help="record while it runs (repeatable): spikes[=POPULATIONS|NEURONS], "
                             "rates[=BIN STEPS], membrane=NEURONS, threshold=NEURONS, "
                             "weights=EVERY STEPS; e.g. --record 'spikes=layer 3' "
                             "--record membrane=100-109 (see docs/commands.md)")
    parser.add_argument("--record-to", metavar="PATH",
                        help="where the recording goes when the run ends: .nwb (NWB) or .npz "
                             "(default: ./<callsign>.step<N>.npz)")
    parser.add_argument("--record-every", type=positive_int, default=1, metavar="N",
                        help="steps between samples of the recorded membranes and thresholds "
                             "(default: 1)")
    parser.add_argument("--record-max", type=byte_size, metavar="BYTES",
                        help="the most the recording may hold, e.g. 64M (default: 256M)")
    spread = parser.add_mutually_exclusive_group()
    spread.add_argument("--ranks", type=positive_int, metavar="N",
                        help="run the agent on N processes on this machine, its sheet split "
                             "between them (torch.distributed; see docs/distributed.md)")
    spread.add_argument("--distributed", action="store_true",
                        help="this is one of the ranks torchrun launched: rank 0 runs the "
                             "agent, the others serve it (see docs/distributed.md)")
    parser.add_argument("--rank-timeout", type=seconds, metavar="SECONDS",
                        help="with --ranks or --distributed: stop the agent when a rank does "
                             "not answer for SECONDS (default: 120)")
    parser.add_argument("--keep", choices=("installed", "file"),
                        help="when FILE and the installed agent hold different states: run the "
                             "installed one, or FILE (the installed copy is then saved to "
                             "./<uuid>.step<N>.json)")
    add_json_option(parser)
    add_scope_options(parser)


def run(args: argparse.Namespace) -> int:
    from hera import manager, runner
    from hera.errors import UsageError
    from hera.plugins import load_plugins

    configure(args)
    if args.distributed:
        from hera import distributed

        rank = distributed.launched_rank()
        if rank is None:
            raise UsageError("--distributed is for the ranks torchrun launches (it sets RANK "
                             "and WORLD_SIZE); on one machine use --ranks N")
        if rank > 0:  # a worker: rank 0 tells it everything else
            return distributed.serve_worker(args.rank_timeout)
    if args.rank_timeout is not None and not (args.ranks or args.distributed):
        raise UsageError("--rank-timeout goes with --ranks or --distributed")
    if args.prompt_after is not None and not args.interactive:
        raise UsageError("--prompt-after needs --interactive")
    if args.json and (args.simulate or args.interactive):
        raise UsageError("--json reports a run; --simulate and --interactive print for a person")
    store = store_for(args)
    target = manager.select_target(store, args.file, args.uuid, args.callsign, allow_uninstalled=True)
    if args.keep and not args.file:
        raise UsageError("--keep chooses between FILE and the installed agent: give FILE")
    if not args.simulate:
        target = manager.choose_copy(target, args.keep)
    plugins = load_plugins()
    if args.simulate:
        return simulate(plugins, target, args.device)
    if (args.record_to or args.record_max) and not args.record:
        raise UsageError("--record-to and --record-max go with --record")
    record = None
    if args.record:
        from hera.recording import parse_record_options

        record = parse_record_options(args.record, args.record_every, args.record_max,
                                      args.record_to)
    breakpoints = tuple([{"at": n} for n in args.break_at or []]
                        + [{"every": n} for n in args.break_every or []]
                        + [{"when": e} for e in args.break_when or []])
    mode = "interactive" if args.interactive else "daemon" if args.daemon else "foreground"
    options = runner.UpOptions(device=args.device, steps=args.steps, chunk=args.chunk,
                               silent=bool(args.silent or args.json), checkpoint=args.checkpoint,
                               mode=mode,
                               prompt_after=args.prompt_after, breakpoints=breakpoints,
                               output_every=args.output_every, log_every=args.log_every,
                               record=record, ranks=args.ranks or 1,
                               distributed=args.distributed, rank_timeout=args.rank_timeout)
    if mode != "daemon":
        result = runner.up(plugins, target, options)
        if args.json:
            from hera.output import print_json

            print_json({"id": result.agent_id, "callsign": result.callsign,
                        "steps": result.total_steps, "steps_this_run": result.steps_done,
                        "reason": result.reason.lower(), "seconds": round(result.seconds, 6),
                        "steps_per_s": result.steps_done / result.seconds if result.seconds else None,
                        "path": None if result.path is None else str(result.path),
                        "recording": None if result.recording is None else str(result.recording)})
        if result.recording_error is not None:
            from hera.errors import HeraError

            raise HeraError(f"the agent was saved, but not its recording: "
                            f"{result.recording_error}")
        return 0 if result.reason != "SIGABRT" else 1
    from hera.daemon import run_detached
    from hera.errors import HeraError

    answer = run_detached(lambda ready: runner.up(plugins, target, options, ready=ready))
    if not answer.get("ok"):
        raise HeraError(answer.get("error", "the agent did not start"))
    if args.json:
        from hera.output import print_json

        print_json({key: answer[key] for key in
                    ("id", "callsign", "pid", "device", "backend", "socket", "log")})
    elif not args.silent:
        print(f"up {answer['id']} ({answer['callsign']}) as a daemon, pid {answer['pid']}, on "
              f"{answer['device']} [{answer['backend']}]; control {answer['socket']}; "
              f"log {answer['log']}")
    return 0


def simulate(plugins, target, device_name: str | None) -> int:
    """``up --simulate``: every resource calculation, nothing loaded."""
    from hera import devices, runner
    from hera.instance import InstanceFile
    from hera.manager import upgrade
    from hera.output import human_bytes, print_table

    instance = target.store.load(target.id) if target.installed else InstanceFile.read(target.file)
    upgrade(plugins, instance)  # in memory: the report is for the current format
    device = devices.choose_device(device_name)
    report = runner.resource_report(plugins, instance, device, measure=True)
    if report is None:
        print(f"family {instance.family} gives no resource report")
        return 0
    capacity = devices.device_memory(device)
    rows = [[name, human_bytes(size), size] for name, size in report.tensors.items()]
    rows.append(["total", human_bytes(report.total), report.total])
    print(f"{instance.id} ({instance.callsign}) {instance.family}/{instance.layout} on {device}:")
    print_table(["TENSORS", "SIZE", "BYTES"], rows)
    print(f"{device} has {human_bytes(capacity)}; "
          + ("it fits." if report.total <= capacity else "it does NOT fit."))
    if report.total > capacity and not device.startswith("cuda"):
        gpu = runner.resource_report(plugins, instance, "cuda:0")
        if gpu is not None:
            print(f"On a GPU it needs {human_bytes(gpu.total)}: up it with --device cuda on "
                  "one with at least that much memory.")
    runner.check_fits(report, device, capacity)
    return 0
