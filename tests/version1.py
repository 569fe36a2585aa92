"""Instance files of format version 1, as hera wrote them before version 2:
the document checksum before the tensors, sha256 per tensor, zlib where it
paid. hera still reads them; these make them for the tests."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hera import tensor_codec
from hera.instance import InstanceFile


def document_checksum(doc: dict[str, Any]) -> str:
    """The version-1 document checksum (like Python's json, it lets NaN
    through: the reader must not)."""
    state = doc["state"]
    summary = {
        "meta": doc["meta"], "definition": doc["definition"],
        "tensors": {k: e["sha256"] for k, e in doc["tensors"].items()},
        "state": None if state is None else {
            "values": state["values"],
            "tensors": {k: e["sha256"] for k, e in state["tensors"].items()}},
    }
    text = json.dumps(summary, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def document(instance: InstanceFile) -> dict[str, Any]:
    """``instance`` as a version-1 document."""
    state = instance.state()
    doc = {
        "format": "hera-instance", "version": 1,
        "meta": instance.meta, "definition": instance.definition,
        "tensors": {k: tensor_codec.encode_tensor(t) for k, t in instance.tensors().items()},
        "state": None if state is None else {
            "values": state.values,
            "tensors": {k: tensor_codec.encode_tensor(t) for k, t in state.tensors.items()}},
    }
    doc["checksum"] = document_checksum(doc)
    return doc


def file_bytes(instance: InstanceFile) -> bytes:
    """``instance`` as hera laid out a version-1 file."""
    return lay_out(document(instance))


def lay_out(doc: dict[str, Any]) -> bytes:
    """A version-1 document as hera laid it out (one section a line)."""
    compact = {"separators": (",", ":")}
    lines = [f'{{"format":"hera-instance","version":1,',
             f'"meta":{json.dumps(doc["meta"], **compact)},',
             f'"definition":{json.dumps(doc["definition"], **compact)},',
             f'"checksum":"{doc["checksum"]}",',
             f'"tensors":{json.dumps(doc["tensors"], **compact)},',
             f'"state":{json.dumps(doc["state"], **compact)}', "}"]
    return ("\n".join(lines) + "\n").encode()
