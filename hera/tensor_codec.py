"""Tensors inside instance files: base64 of little-endian bytes, maybe zlib.

An encoded tensor is a JSON object::

    {"dtype": "float32", "shape": [4, 8], "encoding": "zlib+base64",
     "sha256": "<hex>", "data": "<base64>"}

``sha256`` covers dtype, shape, encoding and the stored ``data`` text, so a
change to any byte of the entry is caught. Checking needs no torch; only
:func:`decode_tensor` and :func:`encode_tensor` import it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import sys
import zlib
from typing import TYPE_CHECKING, Any

from hera.errors import InstanceFileError

if TYPE_CHECKING:  # pragma: no cover
    import torch

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

ENCODINGS = ("base64", "zlib+base64")

# Inflating to count bytes keeps at most this much of a tensor in memory.
_INFLATE_CHUNK = 1 << 24

# Compression only pays when it saves; a zero-weight instance shrinks ~1000x.
_ZLIB_LEVEL = 1


def entry_checksum(dtype: str, shape: list[int], encoding: str, data: str) -> str:
    """The checksum stored beside a tensor's data (hex sha256)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([dtype, shape, encoding], separators=(",", ":")).encode())
    digest.update(b"\0")
    digest.update(data.encode("ascii"))
    return digest.hexdigest()


def encode_tensor(tensor: "torch.Tensor", compress: bool = True) -> dict[str, Any]:
    """Encode a tensor (any device) as an instance-file entry."""
    import torch

    dtype = str(tensor.dtype).removeprefix("torch.")
    if dtype not in ITEMSIZE:
        raise InstanceFileError(f"cannot store tensors of dtype {dtype}")
    cpu = tensor.detach().to("cpu").contiguous()
    nbytes = cpu.numel() * cpu.element_size()
    # Through numpy: ctypes.string_at takes a C int size and fails past 2 GiB.
    flat = cpu.reshape(-1)
    if flat.numel() and flat.stride(0) != 1:  # a size-1 tensor may keep an odd stride
        flat = torch.empty(flat.numel(), dtype=flat.dtype).copy_(flat)
    raw = flat.view(torch.uint8).numpy().tobytes() if nbytes else b""
    if sys.byteorder != "little" and cpu.element_size() > 1:  # pragma: no cover
        raw = _byteswap(raw, cpu.element_size())
    encoding = "base64"
    if compress and raw:
        packed = zlib.compress(raw, _ZLIB_LEVEL)
        if len(packed) < len(raw):
            raw, encoding = packed, "zlib+base64"
    data = base64.b64encode(raw).decode("ascii")
    shape = list(cpu.shape)
    return {
        "dtype": dtype,
        "shape": shape,
        "encoding": encoding,
        "sha256": entry_checksum(dtype, shape, encoding, data),
        "data": data,
    }


def check_entry(name: str, entry: Any) -> None:
    """Raise :class:`InstanceFileError` unless ``entry`` is a well-formed,
    untampered tensor entry. Needs no torch."""
    if not isinstance(entry, dict):
        raise InstanceFileError(f"tensor {name!r} is not an object")
    missing = {"dtype", "shape", "encoding", "sha256", "data"} - entry.keys()
    if missing:
        raise InstanceFileError(f"tensor {name!r} lacks {', '.join(sorted(missing))}")
    dtype, shape, encoding, data = (entry[k] for k in ("dtype", "shape", "encoding", "data"))
    if not isinstance(dtype, str) or dtype not in ITEMSIZE:
        raise InstanceFileError(f"tensor {name!r} has unknown dtype {dtype!r}")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise InstanceFileError(f"tensor {name!r} has a malformed shape")
    if encoding not in ENCODINGS:
        raise InstanceFileError(f"tensor {name!r} has unknown encoding {encoding!r}")
    # Base64 is ASCII; a JSON escape such as \u00e9 in the data must not
    # reach entry_checksum, which encodes the text as ASCII.
    if not (isinstance(data, str) and data.isascii()):
        raise InstanceFileError(f"tensor {name!r} has malformed data")
    if entry_checksum(dtype, shape, encoding, data) != entry["sha256"]:
        raise InstanceFileError(f"checksum mismatch in tensor {name!r}: the file is damaged or was edited")
    # The checksum proves the entry is as written, not that whoever wrote it
    # made data and shape agree: check that too, so no reader is surprised.
    needed = ITEMSIZE[dtype] * math.prod(shape)
    held = _decoded_length(name, entry)
    if held != needed:
        raise InstanceFileError(
            f"tensor {name!r} holds {held} bytes, but {dtype}{shape} needs {needed}")


def _decoded_length(name: str, entry: dict[str, Any]) -> int:
    """Bytes the entry's data decodes to, without keeping them."""
    try:
        packed = base64.b64decode(entry["data"], validate=True)
        if entry["encoding"] == "base64":
            return len(packed)
        inflate = zlib.decompressobj()
        total = len(inflate.decompress(packed, _INFLATE_CHUNK))
        while inflate.unconsumed_tail:
            total += len(inflate.decompress(inflate.unconsumed_tail, _INFLATE_CHUNK))
        total += len(inflate.flush())
        if not inflate.eof:
            raise zlib.error("incomplete compressed data")
        return total
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise InstanceFileError(f"tensor {name!r} cannot be decoded: {exc}") from None


def decode_bytes(name: str, entry: dict[str, Any]) -> bytes:
    """The raw little-endian bytes of a checked entry."""
    try:
        raw = base64.b64decode(entry["data"], validate=True)
        if entry["encoding"] == "zlib+base64":
            raw = zlib.decompress(raw)
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise InstanceFileError(f"tensor {name!r} cannot be decoded: {exc}") from None
    count = 1
    for dim in entry["shape"]:
        count *= dim
    if len(raw) != count * ITEMSIZE[entry["dtype"]]:
        raise InstanceFileError(
            f"tensor {name!r} holds {len(raw)} bytes, but {entry['dtype']}{entry['shape']} needs "
            f"{count * ITEMSIZE[entry['dtype']]}"
        )
    return raw


def decode_tensor(name: str, entry: dict[str, Any]) -> "torch.Tensor":
    """Decode a checked entry to a CPU tensor."""
    import torch

    raw = decode_bytes(name, entry)
    dtype = getattr(torch, entry["dtype"])
    itemsize = ITEMSIZE[entry["dtype"]]
    if sys.byteorder != "little" and itemsize > 1:  # pragma: no cover
        raw = _byteswap(raw, itemsize)
    if not raw:
        return torch.empty(entry["shape"], dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(entry["shape"])


def _byteswap(raw: bytes, itemsize: int) -> bytes:  # pragma: no cover - big-endian hosts
    out = bytearray(len(raw))
    for i in range(itemsize):
        out[i::itemsize] = raw[itemsize - 1 - i :: itemsize]
    return bytes(out)
