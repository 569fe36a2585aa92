"""Tensors inside version-1 instance files: base64 of little-endian bytes,
maybe zlib. (hera writes version 2: :mod:`hera.tensor_stream`.)

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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hera.errors import InstanceFileError
from hera.tensor_stream import ITEMSIZE, check_fields, check_memory

if TYPE_CHECKING:  # pragma: no cover
    import torch

ENCODINGS = ("base64", "zlib+base64")

# Base64 text is decoded this many characters at a time (a multiple of 4, so
# that every piece but the last decodes on its own).
_TEXT_PIECE = 1 << 16

# Inflating gives out at most this many bytes at a time, whatever the input:
# a zlib stream inflates up to ~1032 times, so it is bounded per call rather
# than per piece of input.
_OUT_PIECE = 1 << 18

# Float tensors are checked for NaN and infinities this many elements at a
# time, so that the check needs little memory beside the tensor.
_FINITE_PIECE = 1 << 22

# Compression only pays when it saves; a zero-weight instance shrinks ~1000x.
_ZLIB_LEVEL = 1


def entry_checksum(dtype: str, shape: list[int], encoding: str, data: str) -> str:
    """The checksum stored beside a tensor's data (hex sha256)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([dtype, shape, encoding], separators=(",", ":")).encode())
    digest.update(b"\0")
    for start in range(0, len(data), _TEXT_PIECE):
        digest.update(data[start:start + _TEXT_PIECE].encode("ascii"))
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
    check_fields(name, entry, ("dtype", "shape", "encoding", "sha256", "data"), ENCODINGS)
    dtype, shape, encoding, data = (entry[k] for k in ("dtype", "shape", "encoding", "data"))
    # Base64 is ASCII; a JSON escape such as \u00e9 in the data must not
    # reach entry_checksum, which encodes the text as ASCII.
    if not (isinstance(data, str) and data.isascii()):
        raise InstanceFileError(f"tensor {name!r} has malformed data")
    if entry_checksum(dtype, shape, encoding, data) != entry["sha256"]:
        raise InstanceFileError(f"checksum mismatch in tensor {name!r}: the file is damaged or was edited")
    # The checksum proves the entry is as written, not that whoever wrote it
    # made data and shape agree: check that too, so no reader is surprised.
    # Inflating stops as soon as the data exceeds what the shape needs, so a
    # small shape with a zlib bomb behind it costs next to nothing.
    _decoded_length(name, entry)


def _needed(entry: dict[str, Any]) -> int:
    """Bytes the entry's dtype and shape call for."""
    return ITEMSIZE[entry["dtype"]] * math.prod(entry["shape"])


def _size_error(name: str, entry: dict[str, Any], held: int | str) -> InstanceFileError:
    return InstanceFileError(
        f"tensor {name!r} holds {held} bytes, but {entry['dtype']}{entry['shape']} needs "
        f"{_needed(entry)}")


def _text_pieces(data: str) -> Iterator[bytes]:
    """The bytes of base64 ``data`` piece by piece: the same bytes, and the
    same refusals, as ``base64.b64decode(data, validate=True)``."""
    for start in range(0, len(data), _TEXT_PIECE):
        piece = data[start:start + _TEXT_PIECE]
        if start + _TEXT_PIECE < len(data) and "=" in piece:
            # Padding before the last piece: b64decode refuses it as well.
            raise binascii.Error("Excess data after padding")
        yield base64.b64decode(piece, validate=True)


def _pieces(name: str, entry: dict[str, Any]) -> Iterator[bytes]:
    """The entry's bytes, piece by piece, each of bounded size (at most
    :data:`_OUT_PIECE` when inflating, three quarters of :data:`_TEXT_PIECE`
    otherwise), never more than dtype and shape need in all.

    Raises :class:`InstanceFileError` if the data can't be decoded, as soon
    as more bytes come out than dtype and shape need, and at the end if
    fewer did. Input is taken in bounded pieces too, so the work is linear
    in the sizes of input and output.
    """
    needed = _needed(entry)
    total = 0
    try:
        if entry["encoding"] == "base64":
            # Its output is smaller than its text: count it all, to say how
            # much it holds (and to call bad text bad wherever it is).
            for piece in _text_pieces(entry["data"]):
                total += len(piece)
                if total <= needed:
                    yield piece
        else:
            inflate = zlib.decompressobj()
            for packed in _text_pieces(entry["data"]):
                if inflate.eof:
                    raise zlib.error("data after the end of the compressed stream")
                while True:
                    out = inflate.decompress(packed, _OUT_PIECE)
                    packed = inflate.unconsumed_tail  # what is left of one piece
                    total += len(out)
                    if total > needed:
                        held = total if inflate.eof else f"more than {needed}"
                        raise _size_error(name, entry, held)
                    if out:
                        yield out
                    if inflate.eof:
                        # zlib keeps input after the end as an unconsumed
                        # tail when output was bounded: asking again would
                        # never empty it.
                        if packed or inflate.unused_data:
                            raise zlib.error("data after the end of the compressed stream")
                        break
                    # A full piece out may leave output pending even when
                    # all the input went in: ask again until less comes.
                    if not packed and len(out) < _OUT_PIECE:
                        break
                if inflate.unused_data:
                    raise zlib.error("data after the end of the compressed stream")
            out = inflate.flush()
            total += len(out)
            if total > needed:
                raise _size_error(name, entry, total)
            if out:
                yield out
            if not inflate.eof:
                raise zlib.error("incomplete compressed data")
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise InstanceFileError(f"tensor {name!r} cannot be decoded: {exc}") from None
    if total != needed:
        raise _size_error(name, entry, total)


def _decoded_length(name: str, entry: dict[str, Any]) -> int:
    """Bytes the entry's data decodes to, without keeping them; raises
    :class:`InstanceFileError` unless that is what dtype and shape need."""
    total = 0
    for piece in _pieces(name, entry):
        total += len(piece)
    return total


def decode_bytes(name: str, entry: dict[str, Any]) -> bytes:
    """The raw little-endian bytes of a checked entry."""
    return b"".join(_pieces(name, entry))


def decode_tensor(name: str, entry: dict[str, Any]) -> "torch.Tensor":
    """Decode a checked entry to a CPU tensor.

    Refuses a float tensor holding NaN or an infinity: a NaN weight or
    membrane potential makes the agent's state meaningless.
    """
    import torch

    dtype = getattr(torch, entry["dtype"])
    itemsize = ITEMSIZE[entry["dtype"]]
    needed = _needed(entry)
    if not needed:
        for _ in _pieces(name, entry):  # still refuse data that isn't empty
            pass
        return torch.empty(entry["shape"], dtype=dtype)
    if sys.byteorder != "little" and itemsize > 1:  # pragma: no cover
        raw = _byteswap(decode_bytes(name, entry), itemsize)
        tensor = torch.frombuffer(bytearray(raw), dtype=dtype).reshape(entry["shape"])
    else:
        check_memory(name, needed)
        # Straight into the tensor's own memory: no second copy of the data.
        buffer = torch.empty(needed, dtype=torch.uint8)
        target = memoryview(buffer.numpy())
        at = 0
        for piece in _pieces(name, entry):  # never more than `needed` in all
            target[at:at + len(piece)] = piece
            at += len(piece)
        tensor = buffer.view(dtype).reshape(entry["shape"])
    if not is_finite(tensor):
        raise InstanceFileError(
            f"tensor {name!r} holds NaN or an infinity, which leaves the agent meaningless")
    return tensor


def is_finite(tensor: "torch.Tensor") -> bool:
    """Whether no element of ``tensor`` (any device) is NaN or infinite
    (always true of integer tensors)."""
    import torch

    if not tensor.is_floating_point():
        return True
    flat = tensor.detach().reshape(-1)
    for start in range(0, flat.numel(), _FINITE_PIECE):
        piece = flat[start:start + _FINITE_PIECE]
        # A NaN or infinity makes the sum NaN or infinite; so can large
        # finite values (overflow), so only then look element by element.
        # The sum is about five times faster than isfinite().all().
        if not (bool(torch.isfinite(piece.sum())) or bool(torch.isfinite(piece).all())):
            return False
    return True


def _byteswap(raw: bytes, itemsize: int) -> bytes:  # pragma: no cover - big-endian hosts
    out = bytearray(len(raw))
    for i in range(itemsize):
        out[i::itemsize] = raw[itemsize - 1 - i :: itemsize]
    return bytes(out)
