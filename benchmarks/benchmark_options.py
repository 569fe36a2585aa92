"""The ``--set NAME=VALUE`` option that the learning benchmarks share: an
override of the layout's parameters, named in every result."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` a repeatable ``--set NAME=VALUE`` (VALUE in JSON)."""
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a parameter of the layout (named in the output)")


def overrides(pairs: list[str]) -> dict[str, Any]:
    """The overrides that ``--set`` gave, as a definition's values.

    :raises SystemExit: for a pair without ``=`` or a value that is not JSON.
    """
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            if not sep:
                raise ValueError("no '='")
            found[key] = json.loads(value)
        except ValueError:
            raise SystemExit(f"--set {pair!r}: expected NAME=VALUE with a JSON value") from None
    return found
