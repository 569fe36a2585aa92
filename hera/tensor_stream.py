"""Tensors inside version-2 instance files, streamed at disk speed.

An entry is one JSON object, written on one line in this key order::

    {"dtype":"float32","shape":[4,8],"encoding":"base64","length":44,
     "data":"<base64>","xxh3":"<32 hex digits>"}

* ``encoding`` is ``base64`` (the raw little-endian bytes), ``zeros`` (an
  all-zero tensor: no data) or ``sparse`` (a tensor that is mostly zero:
  ``count`` records of the element's index, unsigned little-endian, 4 bytes
  or 8 where the tensor has 2**32 elements or more, followed by the
  element's bytes, in increasing index order).
* ``length`` is the number of characters of ``data``: a reader checks it
  against dtype, shape and ``count`` and finds the string's end there before
  it allocates anything.
* ``xxh3`` is the XXH3-128 digest of the entry's header text (everything up
  to the opening quote of ``data``, as :func:`header_text` writes it) and of
  the data text, so it is computed while the text streams by.

Zero is bitwise zero: ``-0.0`` is stored as itself. Encoding and decoding
take the data a piece at a time, so memory beyond the tensor itself stays a
few MiB. Needs numpy, never torch.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pybase64
import xxhash

from hera import huge_pages
from hera.errors import InstanceFileError
from hera.ordered_map import ordered_map

#: Bytes per element of every dtype a file may hold.
ITEMSIZE = {
    "bool": 1,
    "uint8": 1,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "float16": 2,
    "bfloat16": 2,
    "float32": 4,
    "float64": 8,
}

ENCODINGS = ("base64", "zeros", "sparse")

#: Raw bytes encoded at a time (a multiple of 3: the pieces' base64 texts
#: simply concatenate) and characters decoded at a time (a multiple of 4).
RAW_PIECE = 3 << 19
TEXT_PIECE = 4 * RAW_PIECE // 3

_WORDS = {1: np.uint8, 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}
_FLOATS = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4"), "float64": np.dtype("<f8")}

# Sparse pays where its records take at most this share of the dense bytes.
_SPARSE_SHARE = 0.5

# Elements looked at per piece when counting non-zeros or scattering them.
_ELEMENTS_PIECE = 1 << 20


def new_digest() -> Any:
    """The running digest an entry's checksum is made with."""
    return xxhash.xxh3_128()


def entry_digest(layout: "Layout") -> Any:
    """An entry's running checksum, started with its header text (writer
    and readers alike: the data text follows)."""
    digest = new_digest()
    digest.update(header_text(layout).encode())
    return digest


def nbytes_of(dtype: str, shape: list[int]) -> int:
    """Bytes a dense tensor of ``dtype`` and ``shape`` holds."""
    return ITEMSIZE[dtype] * math.prod(shape)


def index_size(numel: int) -> int:
    """Bytes of a sparse record's index for a tensor of ``numel`` elements."""
    return 4 if numel <= 1 << 32 else 8


def text_length(payload: int) -> int:
    """Characters of base64 for ``payload`` bytes."""
    return 4 * -(-payload // 3)


@dataclass(frozen=True)
class Layout:
    """How one tensor is stored: what its entry's header says."""

    dtype: str
    shape: list[int]
    encoding: str
    count: int | None = None

    @property
    def payload(self) -> int:
        """Bytes the data decodes to."""
        if self.encoding == "zeros":
            return 0
        if self.encoding == "sparse":
            numel = math.prod(self.shape)
            return (self.count or 0) * (index_size(numel) + ITEMSIZE[self.dtype])
        return nbytes_of(self.dtype, self.shape)

    @property
    def length(self) -> int:
        """Characters of the data text."""
        return text_length(self.payload)


def header_text(layout: Layout) -> str:
    """The entry's text up to and including the opening quote of ``data``:
    what the checksum starts with, in both writer and readers."""
    count = f',"count":{layout.count}' if layout.encoding == "sparse" else ""
    shape = json.dumps(layout.shape, separators=(",", ":"))
    return (f'{{"dtype":"{layout.dtype}","shape":{shape},"encoding":"{layout.encoding}"'
            f'{count},"length":{layout.length},"data":"')


# -- writing -----------------------------------------------------------------


def words(raw: np.ndarray, itemsize: int) -> np.ndarray:
    """``raw`` (flat uint8) seen as unsigned integers of ``itemsize`` bytes."""
    return raw.view(_WORDS[itemsize])


def choose_layout(dtype: str, shape: list[int], raw: np.ndarray) -> Layout:
    """The most compact of the encodings for these bytes (flat, contiguous
    uint8, little-endian). Counting stops as soon as the tensor proves dense."""
    itemsize = ITEMSIZE[dtype]
    numel = math.prod(shape)
    if numel == 0:
        return Layout(dtype, shape, "base64")
    limit = int(numel * itemsize * _SPARSE_SHARE) // (index_size(numel) + itemsize)
    elements = words(raw, itemsize)
    count = 0
    for start in range(0, numel, _ELEMENTS_PIECE):
        count += int(np.count_nonzero(elements[start:start + _ELEMENTS_PIECE]))
        if count > limit:
            return Layout(dtype, shape, "base64")
    if count == 0:
        return Layout(dtype, shape, "zeros")
    return Layout(dtype, shape, "sparse", count)


def _sparse_records(raw: np.ndarray, layout: Layout) -> Iterator[bytes]:
    """The sparse payload: one record per non-zero element, index order."""
    itemsize = ITEMSIZE[layout.dtype]
    numel = math.prod(layout.shape)
    record = np.dtype([("index", _WORDS[index_size(numel)]), ("value", _WORDS[itemsize])])
    elements = words(raw, itemsize)
    for start in range(0, numel, _ELEMENTS_PIECE):
        piece = elements[start:start + _ELEMENTS_PIECE]
        where = np.flatnonzero(piece)
        if where.size:
            out = np.empty(where.size, dtype=record)
            out["index"] = where + start
            out["value"] = piece[where]
            yield out.tobytes()


def _dense_pieces(raw: np.ndarray) -> Iterator[memoryview]:
    view = memoryview(raw)
    for start in range(0, len(view), RAW_PIECE):
        yield view[start:start + RAW_PIECE]


def _base64_pieces(pieces: Iterable[bytes | memoryview]) -> Iterator[bytes]:
    """Base64 of the concatenated pieces, piece by piece (a remainder of
    under 3 bytes waits for the next piece)."""
    carry = b""
    for piece in pieces:
        if carry:
            piece = carry + bytes(piece)
        cut = len(piece) - len(piece) % 3
        carry = bytes(piece[cut:])
        if cut:
            yield pybase64.b64encode(piece[:cut])
    if carry:
        yield pybase64.b64encode(carry)


def encode(layout: Layout, raw: np.ndarray | None, digest: Any) -> Iterator[bytes]:
    """The entry's data text for ``raw`` (flat, contiguous, little-endian
    uint8) in ``layout``, piece by piece, each piece added to ``digest``."""
    if layout.encoding == "zeros" or raw is None:
        return
    if layout.encoding == "sparse":
        texts = _base64_pieces(_sparse_records(raw, layout))
    else:  # whole pieces of 3 bytes: encoded on several threads
        texts = ordered_map(pybase64.b64encode, _dense_pieces(raw))
    for text in texts:
        digest.update(text)
        yield text


# -- reading -----------------------------------------------------------------


def check_fields(name: str, entry: Any, parts: Iterable[str], encodings: Iterable[str]) -> None:
    """Raise :class:`InstanceFileError` unless ``entry`` is an object with
    every field of ``parts``, a known dtype, a shape and one of
    ``encodings`` (the checks entries of every file version share)."""
    if not isinstance(entry, dict):
        raise InstanceFileError(f"tensor {name!r} is not an object")
    missing = set(parts) - entry.keys()
    if missing:
        raise InstanceFileError(f"tensor {name!r} lacks {', '.join(sorted(missing))}")
    dtype, shape, encoding = entry["dtype"], entry["shape"], entry["encoding"]
    if not isinstance(dtype, str) or dtype not in ITEMSIZE:
        raise InstanceFileError(f"tensor {name!r} has unknown dtype {dtype!r}")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise InstanceFileError(f"tensor {name!r} has a malformed shape")
    if encoding not in encodings:
        raise InstanceFileError(f"tensor {name!r} has unknown encoding {encoding!r}")


#: The fields of every entry (a sparse one has ``count`` too).
FIELDS = ("dtype", "shape", "encoding", "length", "data", "xxh3")


def check_header(name: str, header: Any, parts: tuple[str, ...] = FIELDS) -> Layout:
    """The layout an entry declares, checked: raise :class:`InstanceFileError`
    for a malformed entry, or one whose ``length`` is not what dtype, shape
    and ``count`` call for. Allocates nothing.

    :param parts: the fields the entry must have (a header read before its
        data and checksum lacks those two).
    """
    check_fields(name, header, parts, ENCODINGS)
    dtype, shape, encoding = header["dtype"], header["shape"], header["encoding"]
    count = header.get("count")
    if encoding == "sparse" and (type(count) is not int or not 0 < count <= math.prod(shape)):
        raise InstanceFileError(f"tensor {name!r} has a malformed count")
    extra = header.keys() - set(FIELDS) - ({"count"} if encoding == "sparse" else set())
    if extra:
        raise InstanceFileError(f"tensor {name!r} has unknown fields: {', '.join(sorted(extra))}")
    layout = Layout(dtype, shape, encoding, count if encoding == "sparse" else None)
    length = header["length"]
    if type(length) is not int or length != layout.length:
        raise InstanceFileError(
            f"tensor {name!r} declares {length!r} characters of data, but {dtype}{shape} "
            f"stored as {encoding} takes {layout.length}")
    return layout


def empty_buffer(name: str, layout: Layout) -> np.ndarray:
    """The zero-filled memory the tensor will be decoded into, if the memory
    available can hold it (pages the OS zeroes lazily)."""
    needed = nbytes_of(layout.dtype, layout.shape)
    check_memory(name, needed)
    return huge_pages.advise_array(np.zeros(needed, dtype=np.uint8))


def decode(name: str, layout: Layout, pieces: Iterable[Callable[[], bytes | memoryview]],
           checksum: Callable[[], str]) -> np.ndarray | bytes:
    """The tensor's bytes, decoded from its data text and checked; for zero
    and sparse data, the sparse records (``b""`` for zeros), checked, which
    :func:`materialize` turns into the tensor's bytes when they are needed.

    :param pieces: one call per piece of the text, in order, each giving
        :data:`TEXT_PIECE` characters but the last. Dense data is read and
        decoded on several threads, a few pieces ahead, straight into the
        tensor's memory (which the text's length, found in the file,
        already vouches for). Zero and sparse data, whose size the text
        doesn't show, take no memory of the tensor's size here.
    :param checksum: gives the checksum stored with the entry, asked for
        once the text is read (the text's own is computed as it goes by).
    :raises InstanceFileError: text that is not base64, data of another
        size than the layout says, a checksum that doesn't match, sparse
        records out of order or out of range, NaN or an infinity in a
        float tensor, and a tensor larger than the memory available.
    """
    digest = entry_digest(layout)
    if layout.encoding == "base64":
        buffer = empty_buffer(name, layout)
        _decode_dense(name, layout, pieces, buffer, digest)
        _check_digest(name, digest, checksum())
        return buffer
    gathered = bytearray()
    for piece in pieces:
        text = piece()
        digest.update(text)
        gathered += _b64decode(name, text)
    _check_digest(name, digest, checksum())
    if len(gathered) != layout.payload:
        raise _size_error(name, layout, layout.payload)
    check_memory(name, nbytes_of(layout.dtype, layout.shape))
    records = bytes(gathered)
    if records:
        _check_records(name, layout, _records(layout, records))
    return records


def materialize(layout: Layout, records: bytes) -> np.ndarray:
    """The bytes of a zero or sparse tensor from its checked records."""
    # no huge pages: a few records would each take 2 MiB of them
    buffer = np.zeros(nbytes_of(layout.dtype, layout.shape), dtype=np.uint8)
    if records:
        table = _records(layout, records)
        words(buffer, ITEMSIZE[layout.dtype])[table["index"].astype(np.int64)] = table["value"]
    return buffer


def _records(layout: Layout, payload: bytes) -> np.ndarray:
    numel = math.prod(layout.shape)
    record = np.dtype([("index", _WORDS[index_size(numel)]),
                       ("value", _WORDS[ITEMSIZE[layout.dtype]])])
    return np.frombuffer(payload, dtype=record)


def _check_records(name: str, layout: Layout, records: np.ndarray) -> None:
    numel = math.prod(layout.shape)
    last = -1
    for start in range(0, records.size, _ELEMENTS_PIECE):
        index = records["index"][start:start + _ELEMENTS_PIECE].astype(np.int64)
        if int(index[-1]) >= numel or int(index[0]) <= last or not bool((np.diff(index) > 0).all()):
            raise InstanceFileError(
                f"tensor {name!r} has sparse records out of order or out of range")
        last = int(index[-1])
    values = np.ascontiguousarray(records["value"]).view(np.uint8)
    if not is_finite(layout.dtype, values):
        raise _non_finite(name)


def _check_digest(name: str, digest: Any, stored: str) -> None:
    if digest.hexdigest() != stored:
        raise InstanceFileError(
            f"checksum mismatch in tensor {name!r}: the file is damaged or was edited")


def _decode_dense(name: str, layout: Layout, pieces: Iterable[Callable[[], bytes | memoryview]],
                  buffer: np.ndarray, digest: Any) -> None:
    def place(job: tuple[int, Callable[[], bytes | memoryview]]) -> tuple[bytes | memoryview, int]:
        index, piece = job
        text = piece()
        raw = _b64decode(name, text)
        at = index * RAW_PIECE
        if at + len(raw) > len(buffer) or (len(raw) != RAW_PIECE and at + len(raw) != len(buffer)):
            raise _size_error(name, layout, len(buffer))
        region = buffer[at:at + len(raw)]
        region[:] = np.frombuffer(raw, dtype=np.uint8)
        if not is_finite(layout.dtype, region):
            raise _non_finite(name)
        return text, len(raw)

    total = 0
    for text, size in ordered_map(place, enumerate(pieces)):
        digest.update(text)
        total += size
    if total != len(buffer):
        raise _size_error(name, layout, len(buffer))


def _b64decode(name: str, text: bytes | memoryview) -> bytes:
    try:
        return pybase64.b64decode(text, validate=True)
    except ValueError as exc:
        raise InstanceFileError(f"tensor {name!r} cannot be decoded: {exc}") from None


def _size_error(name: str, layout: Layout, needed: int) -> InstanceFileError:
    return InstanceFileError(
        f"tensor {name!r} holds other than the {needed} bytes {layout.dtype}{layout.shape} "
        "calls for")


def _non_finite(name: str) -> InstanceFileError:
    return InstanceFileError(
        f"tensor {name!r} holds NaN or an infinity, which leaves the agent meaningless")


def is_finite(dtype: str, buffer: np.ndarray) -> bool:
    """Whether no element of a float tensor's bytes is NaN or infinite
    (always true of other dtypes)."""
    itemsize = ITEMSIZE[dtype]
    step = _ELEMENTS_PIECE * 4
    if dtype in _FLOATS:
        values = buffer.view(_FLOATS[dtype])
        return all(bool(np.isfinite(values[s:s + step]).all()) for s in range(0, values.size, step))
    if dtype == "bfloat16":  # no numpy type: all-ones exponent bits are NaN or infinity
        bits = words(buffer, itemsize)
        return not any(bool(((bits[s:s + step] & 0x7F80) == 0x7F80).any())
                       for s in range(0, bits.size, step))
    return True


def check_memory(name: str, needed: int) -> None:
    """Refuse, in one line, a tensor bigger than the memory available."""
    if needed <= 1 << 26:  # 64 MiB: not worth asking
        return
    import psutil

    available = psutil.virtual_memory().available
    if needed > available:
        raise InstanceFileError(
            f"tensor {name!r} needs {needed} bytes of memory, but only {available} are available")


def text_pieces(name: str, text: str) -> list[Callable[[], bytes]]:
    """The pieces :func:`decode` takes, cut from a whole data string (a
    reader that parsed the whole document); refuses non-ASCII text."""
    if not text.isascii():
        raise InstanceFileError(f"tensor {name!r} cannot be decoded: its data is not base64")
    return [functools.partial(_ascii, text, start) for start in range(0, len(text), TEXT_PIECE)]


def _ascii(text: str, start: int) -> bytes:
    return text[start:start + TEXT_PIECE].encode("ascii")

