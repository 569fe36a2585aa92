"""Reading version-2 instance files: streamed where hera's writer laid the
file out, whole where someone else did.

The streaming reader follows the writer's layout byte for byte (see
``docs/instance-file.md``), decoding each tensor's data straight into the
tensor's memory as it reads it, with the checksums computed on the way:
one pass, and memory beyond the tensors of a few MiB. Wherever the file
departs from that layout (re-indented by hand, cut short, damaged between
tokens) it gives up with :class:`NotLaidOut`, and the caller parses the
whole document as JSON instead (:func:`from_document`), which reads every
valid version-2 document and explains every invalid one.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hera import finite_json, tensor_stream
from hera.errors import InstanceFileError
from hera.instance_meta import check_meta, check_sections, summary_checksum
from hera.stored_tensor import Decoded

#: The first line of every version-2 file hera writes.
FIRST_LINE = b'{"format":"hera-instance","version":2,\n'

# Longest line of metadata, definition, state values or entry header the
# streaming reader takes (a longer one is read the slow way).
_LINE_LIMIT = 1 << 26
_WINDOW = 1 << 16
_DIGEST_HEX = 32


class NotLaidOut(Exception):
    """The file is not laid out as hera's writer lays it out."""


@dataclass
class Contents:
    """What a version-2 file holds, decoded and checked."""

    meta: dict[str, Any]
    definition: dict[str, Any]
    tensors: dict[str, Decoded]
    state: dict[str, Decoded] | None
    values: dict[str, Any] | None
    digests: dict[str, str] = field(default_factory=dict)
    checksum: str = ""


ReadAt = Callable[[int, int], bytes]


def pread_from(fd: int) -> ReadAt:
    """A :data:`ReadAt` over an open file: up to ``n`` bytes at ``offset``
    (fewer only at the end of the file)."""
    def read_at(offset: int, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            part = os.pread(fd, n - got, offset + got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)
    return read_at


def slice_from(data: bytes | memoryview) -> ReadAt:
    """A :data:`ReadAt` over bytes in memory."""
    view = memoryview(data)
    return lambda offset, n: view[offset:offset + n]


class _Cursor:
    """Reads forward through the file: small reads through a window, data
    straight from the file in large pieces."""

    def __init__(self, read_at: ReadAt) -> None:
        self.read_at = read_at
        self.pos = 0
        self.window: bytes | memoryview = b""
        self.window_at = 0

    def _ahead(self, n: int) -> bytes:
        start = self.pos - self.window_at
        if len(self.window) - start < n:
            self.window = self.read_at(self.pos, max(n, _WINDOW))
            self.window_at, start = self.pos, 0
        return bytes(self.window[start:start + n])

    def take(self, n: int) -> bytes:
        got = self._ahead(n)
        if len(got) < n:
            raise NotLaidOut
        self.pos += n
        return got

    def expect(self, literal: bytes) -> None:
        if self.take(len(literal)) != literal:
            raise NotLaidOut

    def peek(self, n: int) -> bytes:
        return self._ahead(n)

    def through(self, marker: bytes) -> bytes:
        """The bytes up to and including ``marker``."""
        size = _WINDOW
        while True:
            got = self._ahead(size)
            found = got.find(marker)
            if found >= 0:
                self.pos += found + len(marker)
                return got[:found + len(marker)]
            if len(got) < size or size >= _LINE_LIMIT:
                raise NotLaidOut
            size *= 4

    def data(self, length: int) -> list[Callable[[], bytes | memoryview]]:
        """The next ``length`` bytes, as calls that read them piece by piece
        (the cursor moves past them at once)."""
        start, self.pos = self.pos, self.pos + length
        return [functools.partial(self._piece, at, min(tensor_stream.TEXT_PIECE, start + length - at))
                for at in range(start, start + length, tensor_stream.TEXT_PIECE)]

    def _piece(self, at: int, n: int) -> bytes | memoryview:
        piece = self.read_at(at, n)
        if len(piece) != n:
            raise InstanceFileError("the file changed while it was read")
        return piece


def _json(text: bytes) -> Any:
    try:
        return finite_json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise NotLaidOut from None


def stream(read_at: ReadAt) -> Contents:
    """Read a version-2 file laid out by hera's writer.

    :raises NotLaidOut: it is laid out otherwise (or damaged in its layout).
    :raises InstanceFileError: its contents are wrong: a tensor's data is
        not what its entry declares, or a checksum does not match.
    """
    cursor = _Cursor(read_at)
    cursor.expect(FIRST_LINE)
    cursor.expect(b'"meta":')
    meta = _json(cursor.through(b",\n")[:-2])
    cursor.expect(b'"definition":')
    definition = _json(cursor.through(b",\n")[:-2])
    if not (isinstance(meta, dict) and isinstance(definition, dict)):
        raise NotLaidOut
    check_meta(meta)
    digests: dict[str, str] = {}
    tensors = _entries(cursor, "", digests)
    cursor.expect(b',\n"state":')
    state = values = None
    if cursor.peek(4) == b"null":
        cursor.expect(b"null")
    else:
        cursor.expect(b'{"values":')
        values = _json(cursor.through(b',\n"tensors":')[:-len(b',\n"tensors":')])
        if not isinstance(values, dict):
            raise NotLaidOut
        cursor.pos -= len(b'"tensors":')
        state = _entries(cursor, "state.", digests)
        cursor.expect(b"}")
    cursor.expect(b',\n"checksum":"')
    checksum = cursor.take(64).decode("ascii", "replace")
    cursor.expect(b'"\n}')
    while rest := cursor.read_at(cursor.pos, _WINDOW):  # only whitespace may follow
        if bytes(rest).strip(b" \t\n\r"):
            raise NotLaidOut
        cursor.pos += len(rest)
    contents = Contents(meta, definition, tensors, state, values, digests, checksum)
    if document_checksum(contents) != checksum:
        raise InstanceFileError("checksum mismatch: the file is damaged or was edited")
    return contents


def _entries(cursor: _Cursor, prefix: str, digests: dict[str, str]) -> dict[str, Decoded]:
    cursor.expect(b'"tensors":{')
    entries: dict[str, Decoded] = {}
    separator = b"\n"
    while cursor.peek(2) != b"\n}":
        cursor.expect(separator)
        separator = b",\n"
        name, stored, digest = _entry(cursor, prefix)
        if name in entries:
            raise NotLaidOut  # JSON keeps the last; let the whole-document reader say so
        entries[name], digests[prefix + name] = stored, digest
    cursor.expect(b"\n}")
    return entries


def _entry(cursor: _Cursor, prefix: str) -> tuple[str, Decoded, str]:
    head = cursor.through(b'"data":"')
    try:
        name, end = json.decoder.scanstring(head.decode("ascii"), 1)
    except (ValueError, UnicodeDecodeError):
        raise NotLaidOut from None
    if not (head.startswith(b'"') and head[end:end + 1] == b":"):
        raise NotLaidOut
    header = _json(head[end + 1:] + b'"}')
    try:
        layout = tensor_stream.check_header(prefix + name, header, tensor_stream.FIELDS[:-1])
    except InstanceFileError:  # perhaps the fields are in another order: read it whole
        raise NotLaidOut from None
    if tensor_stream.header_text(layout).encode() != head[end + 1:]:
        raise NotLaidOut
    tail = cursor.read_at(cursor.pos + layout.length, 10)
    if tail != b'","xxh3":"':
        if len(tail) < 10:
            raise NotLaidOut  # cut short: the whole-document reader says where
        raise _length_error(prefix + name, layout)
    stored = ""

    def checksum() -> str:
        nonlocal stored
        cursor.expect(b'","xxh3":"')
        stored = cursor.take(_DIGEST_HEX).decode("ascii", "replace")
        cursor.expect(b'"}')
        return stored

    decoded = tensor_stream.decode(prefix + name, layout, cursor.data(layout.length), checksum)
    return name, Decoded(layout.dtype, layout.shape, decoded, layout.encoding), stored


def from_document(doc: dict[str, Any]) -> Contents:
    """Check and decode a version-2 document parsed whole."""
    check_sections(doc)
    meta = doc["meta"]
    digests: dict[str, str] = {}
    tensors = {name: _decoded(name, entry, "", digests) for name, entry in doc["tensors"].items()}
    state = values = None
    if doc["state"] is not None:
        section = doc["state"]
        if not (isinstance(section, dict) and isinstance(section.get("tensors"), dict)
                and isinstance(section.get("values"), dict)):
            raise InstanceFileError("section 'state' is malformed")
        state = {name: _decoded(name, entry, "state.", digests)
                 for name, entry in section["tensors"].items()}
        values = section["values"]
    contents = Contents(meta, doc["definition"], tensors, state, values, digests,
                        doc["checksum"])
    if document_checksum(contents) != doc["checksum"]:
        raise InstanceFileError("checksum mismatch: the file is damaged or was edited")
    return contents


def _decoded(name: str, entry: Any, prefix: str, digests: dict[str, str]) -> Decoded:
    layout = tensor_stream.check_header(prefix + name, entry)
    data, stored = entry["data"], entry["xxh3"]
    if not isinstance(data, str) or not isinstance(stored, str):
        raise InstanceFileError(f"tensor {prefix + name!r} has malformed data or checksum")
    if len(data) != layout.length:
        raise _length_error(prefix + name, layout)
    decoded = tensor_stream.decode(prefix + name, layout,
                                   tensor_stream.text_pieces(prefix + name, data), lambda: stored)
    digests[prefix + name] = stored
    return Decoded(layout.dtype, layout.shape, decoded, layout.encoding)


def _length_error(name: str, layout: tensor_stream.Layout) -> InstanceFileError:
    return InstanceFileError(
        f"tensor {name!r}: its data is not the {layout.length} characters its entry declares")


def document_checksum(contents: Contents) -> str:
    """The document checksum of a version-2 file: sha256 of meta,
    definition, state values and every tensor's checksum."""
    state = None
    if contents.state is not None:
        state = {"values": contents.values or {},
                 "tensors": {k: contents.digests[f"state.{k}"] for k in contents.state}}
    return summary_checksum(contents.meta, contents.definition,
                            {k: contents.digests[k] for k in contents.tensors}, state)
