"""JSON as the standard has it: no NaN, no Infinity.

Python's ``json`` reads the bare tokens ``NaN``, ``Infinity`` and
``-Infinity`` (and ``1e999`` as an infinity) and writes them back, though
strict JSON parsers reject them. Every place where hera reads JSON that it
may write into an instance file (the file itself, ``./hera.json``,
``--set`` values) reads it through :func:`loads`.
"""

from __future__ import annotations

import json
import math
from typing import Any


class NonFiniteNumber(ValueError):
    """A NaN or infinite number where JSON allows none."""

    def __init__(self, token: str):
        super().__init__(f"{token} is not a finite number")
        #: the offending token, shortened for messages
        self.token = token if len(token) <= 24 else token[:20] + "..."


def _refuse_constant(token: str) -> Any:
    raise NonFiniteNumber(token)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999
        raise NonFiniteNumber(text)
    return value


def loads(data: bytes | str) -> Any:
    """``json.loads`` that raises :class:`NonFiniteNumber` for NaN,
    Infinity, -Infinity and numbers too large for a float; nesting too deep
    for Python is a :class:`RecursionError`."""
    return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)


def is_finite_value(value: Any, depth: int = 0) -> bool:
    """Whether no float inside ``value`` (lists and tables too, as TOML
    gives them) is NaN or infinite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if depth > 100:
        return False
    if isinstance(value, dict):
        return all(is_finite_value(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return all(is_finite_value(v, depth + 1) for v in value)
    return True
