"""Pieces several commands share: options, configuration, stores, targets."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hera import finite_json, places
from hera.config import Config, apply_option_defaults, load_config
from hera.errors import UsageError
from hera.store import AgentStore

#: Option defaults when neither the command line nor a config file sets one.
#: No family: with one installed, that one; with several, the user says which.
BUILTIN_OPTIONS: dict[str, Any] = {"layout": "example", "device": "auto",
                                   "silent": False,
                                   # a crash (kill -9, power loss) loses at most this much
                                   "checkpoint": 600.0}


def add_scope_options(parser: argparse.ArgumentParser, verb: str = "use") -> None:
    """``--system`` / ``--user NAME``: whose agents."""
    parser.add_argument("--system", action="store_true", help=f"{verb} a system agent")
    parser.add_argument("--user", metavar="NAME", help=f"{verb} an agent of user NAME")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def add_file_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("file", nargs="?", metavar="FILE", help=what)


def configure(args: argparse.Namespace) -> Config:
    """Load ``~/.herarc`` and ``./hera.json`` and fill unset options."""
    config = load_config()
    apply_option_defaults(args, config, BUILTIN_OPTIONS)
    return config


def store_for(args: argparse.Namespace) -> AgentStore:
    """The store named by ``--system`` / ``--user``."""
    return AgentStore(places.Scope.of(getattr(args, "system", False), getattr(args, "user", None)))


def parse_assignments(pairs: list[str] | None, what: str) -> dict[str, Any]:
    """``["width=8", "name=x"]`` → ``{"width": 8, "name": "x"}`` (values are
    JSON when they parse as JSON, else strings)."""
    result: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{what} takes PARAM=VALUE, not {pair!r}")
        try:
            value = finite_json.loads(text)
        except finite_json.NonFiniteNumber:
            raise UsageError(f"{what} {key.strip()}: {text} is not a finite number") from None
        except (ValueError, RecursionError):
            if text.strip().lower().lstrip("+-") in ("nan", "inf"):
                raise UsageError(f"{what} {key.strip()}: {text} is not a finite number") from None
            value = text
        result[key.strip()] = value
    return result


def path_arg(text: str | None) -> Path | None:
    return Path(text) if text else None


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def seconds(text: str) -> float:
    """argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


def byte_size(text: str) -> int:
    """argparse type: a size in bytes, ``65536``, ``64K``, ``64M`` or ``2G``."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    word = text.strip().upper().removesuffix("B")
    scale = units.get(word[-1:], 1)
    try:
        value = int(float(word[:-1] if word[-1:] in units else word) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte: {text!r}")
    return value
