"""Printing for people (aligned tables) and for scripts (``--json``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO


def human_bytes(count: int | float) -> str:
    """``1536`` → ``1.5 KiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def human_count(count: int) -> str:
    """``1234567`` → ``1.23M``."""
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= limit:
            return f"{count / limit:.3g}{suffix}"
    return str(count)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                stream: TextIO | None = None, empty: str = "", header: bool = True) -> None:
    """Print rows under headers (unless ``header`` is false: rows only),
    columns aligned; ``empty`` if no rows."""
    stream = stream or sys.stdout
    if not rows:
        if empty:
            print(empty, file=stream)
        return
    cells = ([[str(c) for c in headers]] if header else []) + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=stream)


def print_json(value: Any, stream: TextIO | None = None) -> None:
    """Print ``value`` as indented JSON."""
    print(json.dumps(value, indent=2, sort_keys=True), file=stream or sys.stdout)
