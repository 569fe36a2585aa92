"""Show the log of an agent: what it printed while it ran detached (upped
with --daemon, or after losing its terminal), across all its runs. With
nothing named, the one running agent's. --follow (-f) keeps printing what
it writes until the agent is no longer up, or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

from hera.commands._common import add_file_argument, add_scope_options, positive_int, store_for

#: How often --follow looks for more (seconds).
POLL = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_argument(parser, "the agent's instance file")
    parser.add_argument("-f", "--follow", action="store_true",
                        help="keep printing what the agent writes until it is down")
    parser.add_argument("-n", "--tail", type=positive_int, metavar="N",
                        help="start with the last N lines only")
    add_scope_options(parser, "show the log of")


def run(args: argparse.Namespace) -> int:
    from hera import manager
    from hera.errors import HeraError
    from hera.pidfile import open_regular

    store = store_for(args)
    target = manager.running_target(store, args.file, args.uuid, args.callsign)
    path = store.log_path(target.id)
    try:
        fd = open_regular(path, os.O_RDONLY, store.owner)
    except FileNotFoundError:
        raise HeraError(f"agent {target.id[:8]} ({target.header.callsign}) has no log: only an "
                        "agent that ran detached (up --daemon) writes one") from None
    out = sys.stdout.buffer
    try:
        with os.fdopen(fd, "rb") as log:
            if args.tail is not None:
                log.seek(_start_of_last_lines(log, args.tail))
            shutil.copyfileobj(log, out)
            out.flush()
            if args.follow:
                _follow(log, lambda: store.entry(target.header).is_up, out)
    except KeyboardInterrupt:  # how a person ends --follow
        pass
    return 0


def _start_of_last_lines(log, count: int, block: int = 1 << 16) -> int:
    """The offset where the last ``count`` lines of ``log`` begin, found by
    reading back from its end a block at a time (a log can be large)."""
    end = log.seek(0, os.SEEK_END)
    position, newlines = end, 0
    while position > 0:
        step = min(block, position)
        position -= step
        log.seek(position)
        data = log.read(step)
        if position + step == end and data.endswith(b"\n"):
            data = data[:-1]  # the last line's own end does not start another
        at = len(data)
        while True:
            at = data.rfind(b"\n", 0, at)
            if at < 0:
                break
            newlines += 1
            if newlines == count:
                return position + at + 1
    return 0


def _follow(log, is_up, out) -> None:
    """Copy what is appended to ``log`` to ``out`` until ``is_up()`` is
    false and nothing more has come."""
    while True:
        up = is_up()  # asked before reading, so the last words are not missed
        data = log.read()
        if data:
            out.write(data)
            out.flush()
        elif not up:
            return
        else:
            time.sleep(POLL)
