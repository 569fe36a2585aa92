"""What every instance file version shares: its format line, its metadata,
and the document checksum over everything but the tensor data."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hera import identity
from hera.errors import InstanceFileError

FORMAT = "hera-instance"

#: The version hera writes, and every version it reads.
VERSION = 2
READS = (1, 2)

#: Metadata keys every file has, with their JSON types.
META_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "callsign": str,
    "family": dict,
    "layout": str,
    "created": str,
    "seed": int,
    "steps": int,
    "incarnation": int,
    "hera_version": str,
}

#: The seed is an unsigned 63-bit number (families hand it to generators
#: that take a signed 64-bit one).
SEED_LIMIT = 1 << 63

# Never NaN or Infinity: they aren't JSON, and hera's reader refuses them.
COMPACT = {"separators": (",", ":"), "ensure_ascii": True, "allow_nan": False}


def summary_checksum(meta: dict[str, Any], definition: dict[str, Any],
                     tensors: dict[str, Any], state: dict[str, Any] | None) -> str:
    """The document checksum: sha256 of metadata, definition, the tensors'
    own checksums and, for a live agent, its state values and state tensors'
    checksums (``state``: ``{"values": …, "tensors": {name: checksum}}``)."""
    summary = {"meta": meta, "definition": definition, "tensors": tensors, "state": state}
    text = json.dumps(summary, sort_keys=True, **COMPACT)
    return hashlib.sha256(text.encode()).hexdigest()


def check_format(doc: Any) -> int:
    """The file's format version, if hera reads it."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InstanceFileError("not a hera instance file")
    version = doc.get("version")
    if type(version) is not int:
        raise InstanceFileError("instance file has no format version")
    if version not in READS:
        newer = "a newer" if version > VERSION else "an older"
        raise InstanceFileError(
            f"instance file format version {version} is {newer} version than this hera reads "
            f"({', '.join(map(str, READS))})")
    return version


def check_sections(doc: dict[str, Any]) -> None:
    """Raise :class:`InstanceFileError` unless the document has every
    top-level section, its meta well-formed, and its definition and tensors
    objects."""
    for key in ("meta", "definition", "checksum", "tensors", "state"):
        if key not in doc:
            raise InstanceFileError(f"missing section {key!r}")
    check_meta(doc["meta"])
    if not isinstance(doc["definition"], dict):
        raise InstanceFileError("section 'definition' is not an object")
    if not isinstance(doc["tensors"], dict):
        raise InstanceFileError("section 'tensors' is not an object")


def check_meta(meta: Any) -> None:
    """Raise :class:`InstanceFileError` unless ``meta`` is well-formed."""
    if not isinstance(meta, dict):
        raise InstanceFileError("section 'meta' is not an object")
    for key, kind in META_FIELDS.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InstanceFileError(f"meta field {key!r} is missing or malformed")
    if not identity.is_canonical_id(meta["id"]):
        raise InstanceFileError(f"meta field 'id' is not a UUID: {meta['id']!r}")
    if not identity.is_valid_callsign(meta["callsign"]):
        raise InstanceFileError(f"meta field 'callsign' is malformed: {meta['callsign']!r}")
    if not 0 <= meta["seed"] < SEED_LIMIT:
        raise InstanceFileError("meta field 'seed' is out of range (0 <= seed < 2**63)")
    for key in ("steps", "incarnation"):
        if meta[key] < 0:
            raise InstanceFileError(f"meta field {key!r} is negative")
    family = meta["family"]
    if not (isinstance(family.get("name"), str) and isinstance(family.get("version"), str)
            and type(family.get("data_format")) is int):
        raise InstanceFileError("meta field 'family' is malformed")
