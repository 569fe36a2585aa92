"""Configuration: ``~/.herarc`` (TOML) and ``./hera.json``.

Both files have the same two tables::

    [options]          # defaults for command-line options
    family = "abraxas"
    layout = "example"
    device = "cpu"

    [definition]       # layout parameters to override at build
    width = 6

Precedence, lowest first: built-in defaults < ``~/.herarc`` < ``./hera.json``
< the command line.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hera import finite_json, places
from hera.errors import HeraError

#: Options a configuration file may set, with the type each must have.
OPTION_TYPES: dict[str, type | tuple[type, ...]] = {
    "family": str,
    "layout": str,
    "device": str,
    "steps": int,
    "chunk": int,
    "silent": bool,
    "checkpoint": (int, float),
}
SECTIONS = ("options", "definition")
_TYPE_WORDS = {str: "a string", int: "a whole number", bool: "true or false",
               (int, float): "a number"}
_MINIMUM = {"steps": 1, "chunk": 1, "checkpoint": 0}


@dataclass
class Config:
    """Merged configuration, each value tagged with the file it came from."""

    options: dict[str, Any] = field(default_factory=dict)
    definition: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)


def load_config(user_file: Path | None = None, project_file: Path | None = None) -> Config:
    """Read ``~/.herarc`` then ``./hera.json`` (later wins)."""
    config = Config()
    user_file = places.user_config_file() if user_file is None else user_file
    project_file = places.project_config_file() if project_file is None else project_file
    for path, reader in ((user_file, _read_toml), (project_file, _read_json)):
        if not path.is_file():
            continue
        data = reader(path)
        _merge(config, data, str(path))
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise HeraError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HeraError(f"{path}: cannot read: {exc}") from None
    except RecursionError:
        raise HeraError(f"{path}: nested too deeply") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = finite_json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HeraError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno})") from None
    except (ValueError, RecursionError) as exc:
        raise HeraError(f"{path}: not valid JSON: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HeraError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise HeraError(f"{path}: must hold a JSON object")
    return data


def _merge(config: Config, data: dict[str, Any], where: str) -> None:
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise HeraError(f"{where}: unknown section {sorted(unknown)[0]!r} (known: options, definition)")
    for section in SECTIONS:
        values = data.get(section, {})
        if not isinstance(values, dict):
            raise HeraError(f"{where}: {section!r} must be a table of values")
        if section == "options":
            for key, value in values.items():
                kind = OPTION_TYPES.get(key)
                if kind is None:
                    raise HeraError(
                        f"{where}: unknown option {key!r} (known: {', '.join(sorted(OPTION_TYPES))})"
                    )
                if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                    raise HeraError(f"{where}: option {key!r} must be {_TYPE_WORDS[kind]}")
                if isinstance(value, float) and not math.isfinite(value):
                    raise HeraError(f"{where}: option {key!r} must be a finite number, not {value}")
                least = _MINIMUM.get(key)
                if least is not None and not value >= least:
                    raise HeraError(f"{where}: option {key!r} must be at least {least}, not {value}")
        if section == "definition":
            for key, value in values.items():
                if not finite_json.is_finite_value(value):
                    raise HeraError(f"{where}: definition value {key!r} holds a number that "
                                    "is not finite (NaN or infinity)")
        target = config.options if section == "options" else config.definition
        for key, value in values.items():
            target[key] = value
            config.origin[f"{section}.{key}"] = where


def apply_option_defaults(args: Any, config: Config, builtin: dict[str, Any]) -> None:
    """Fill options not given on the command line (``None``) from the
    configuration, then from ``builtin``."""
    for key in set(OPTION_TYPES) | set(builtin):
        if getattr(args, key, None) is not None:
            continue
        if key in config.options:
            setattr(args, key, config.options[key])
        elif key in builtin:
            setattr(args, key, builtin[key])
