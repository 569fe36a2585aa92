"""Tensor entries of instance files: encode → decode is bit-exact for every
dtype a file may hold, and any edit to an entry is caught by its checksum."""

from __future__ import annotations

import base64
import math
import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hera import tensor_codec
from hera.errors import InstanceFileError
from hera.tensor_codec import ITEMSIZE, check_entry, decode_tensor, encode_tensor

DTYPES = sorted(ITEMSIZE)


def raw_bytes(tensor: torch.Tensor) -> bytes:
    """The tensor's elements in logical order, as bytes (NaN payloads included)."""
    if tensor.numel() == 0:
        return b""
    dense = torch.empty(tensor.shape, dtype=tensor.dtype).copy_(tensor.detach())
    return dense.reshape(-1).view(torch.uint8).numpy().tobytes()


def tensor_from_bytes(raw: bytes, dtype: str, shape: list[int]) -> torch.Tensor:
    torch_dtype = getattr(torch, dtype)
    if not raw:
        return torch.empty(shape, dtype=torch_dtype)
    return torch.frombuffer(bytearray(raw), dtype=torch_dtype).reshape(shape)


def assert_same(decoded: torch.Tensor, original: torch.Tensor) -> None:
    assert decoded.dtype == original.dtype
    assert list(decoded.shape) == list(original.shape)
    assert decoded.device.type == "cpu"
    assert raw_bytes(decoded) == raw_bytes(original)


@st.composite
def tensors(draw, max_elements: int = 64) -> torch.Tensor:
    """Any tensor of a storable dtype: random bit patterns (NaNs, infinities,
    subnormals), sometimes highly compressible, sometimes non-contiguous."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.lists(st.integers(0, 5), max_size=4).filter(
        lambda s: math.prod(s) <= max_elements))
    nbytes = math.prod(shape) * ITEMSIZE[dtype]
    if dtype == "bool":
        raw = bytes(draw(st.lists(st.integers(0, 1), min_size=nbytes, max_size=nbytes)))
    elif draw(st.booleans()):
        pattern = draw(st.binary(min_size=1, max_size=ITEMSIZE[dtype]))
        raw = (pattern * nbytes)[:nbytes]
    else:
        raw = draw(st.binary(min_size=nbytes, max_size=nbytes))
    tensor = tensor_from_bytes(raw, dtype, shape)
    view = draw(st.sampled_from(["as is", "transposed", "strided", "offset"]))
    if view == "transposed" and tensor.dim() >= 2:
        tensor = tensor.transpose(0, -1)
    elif view == "strided" and tensor.dim() >= 1:
        tensor = tensor[::2]
    elif view == "offset" and tensor.dim() >= 1:
        tensor = tensor[1:]
    return tensor


# -- round trips -------------------------------------------------------------


def test_itemsize_matches_torch():
    for dtype, size in ITEMSIZE.items():
        assert getattr(torch, dtype).itemsize == size, dtype


def _samples(dtype: str) -> torch.Tensor:
    """A 3x5 tensor of the dtype with its awkward values where it has them."""
    torch_dtype = getattr(torch, dtype)
    if dtype == "bool":
        return torch.tensor([True, False, True, True, False] * 3).reshape(3, 5)
    if torch_dtype.is_floating_point:
        info = torch.finfo(torch_dtype)
        values = [0.0, -0.0, 1.0, -2.5, math.inf, -math.inf, math.nan, info.max, info.min,
                  info.tiny, info.eps, 3.0, 1e-3, 7.0, -7.0]
        return torch.tensor(values, dtype=torch_dtype).reshape(3, 5)
    info = torch.iinfo(torch_dtype)
    values = [0, 1, -1, info.min, info.max, 2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    return torch.tensor([v if info.min <= v <= info.max else 0 for v in values],
                        dtype=torch_dtype).reshape(3, 5)


@pytest.mark.parametrize("compress", [True, False], ids=["compress", "plain"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_dtype(dtype, compress):
    original = _samples(dtype)
    entry = encode_tensor(original, compress=compress)
    assert entry["dtype"] == dtype
    assert entry["shape"] == [3, 5]
    check_entry("t", entry)
    assert_same(decode_tensor("t", entry), original)


@pytest.mark.parametrize("shape", [[0], [3, 0, 2], [0, 0]], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_tensors(dtype, shape):
    original = torch.empty(shape, dtype=getattr(torch, dtype))
    entry = encode_tensor(original)
    assert entry["shape"] == shape
    assert entry["data"] == ""
    assert entry["encoding"] == "base64"
    check_entry("t", entry)
    assert_same(decode_tensor("t", entry), original)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_dimensional_tensors(dtype):
    original = _samples(dtype)[1, 4].clone()
    assert original.dim() == 0
    entry = encode_tensor(original)
    assert entry["shape"] == []
    check_entry("t", entry)
    decoded = decode_tensor("t", entry)
    assert decoded.dim() == 0
    assert_same(decoded, original)


@pytest.mark.parametrize("view", [
    lambda t: t.t(),
    lambda t: t[:, ::2],
    lambda t: t[1:, 1:],
    lambda t: t[0].expand(4, 6),
    lambda t: t.T[::3],
], ids=["transposed", "strided", "offset", "expanded", "transposed-strided"])
def test_non_contiguous_input(view):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) * 1.5
    original = view(base)
    assert not original.is_contiguous() or original.storage_offset() > 0
    entry = encode_tensor(original, compress=False)
    assert entry["shape"] == list(original.shape)
    decoded = decode_tensor("t", entry)
    assert decoded.is_contiguous()
    assert torch.equal(decoded, original)
    assert_same(decoded, original)


def test_refuses_unstorable_dtype():
    with pytest.raises(InstanceFileError, match="complex64"):
        encode_tensor(torch.zeros(3, dtype=torch.complex64))


def test_decoded_tensor_does_not_share_memory_with_the_entry():
    entry = encode_tensor(torch.ones(4))
    first = decode_tensor("t", entry)
    first.zero_()
    assert torch.equal(decode_tensor("t", entry), torch.ones(4))


@settings(max_examples=300)
@given(tensors(), st.booleans())
def test_any_tensor_round_trips_bit_exactly(original, compress):
    entry = encode_tensor(original, compress=compress)
    check_entry("t", entry)
    assert entry["sha256"] == tensor_codec.entry_checksum(
        entry["dtype"], entry["shape"], entry["encoding"], entry["data"])
    assert_same(decode_tensor("t", entry), original)


# -- compression ---------------------------------------------------------------


def test_compresses_what_shrinks():
    original = torch.zeros(10_000)
    packed, plain = encode_tensor(original), encode_tensor(original, compress=False)
    assert packed["encoding"] == "zlib+base64"
    assert plain["encoding"] == "base64"
    assert len(packed["data"]) * 100 < len(plain["data"])
    assert_same(decode_tensor("t", packed), original)


def test_does_not_compress_what_would_grow():
    generator = torch.Generator().manual_seed(0)
    original = torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=generator)
    entry = encode_tensor(original)
    assert entry["encoding"] == "base64"
    assert base64.b64decode(entry["data"]) == raw_bytes(original)


@settings(max_examples=150)
@given(tensors())
def test_compression_is_chosen_only_when_it_saves(original):
    raw = raw_bytes(original)
    entry = encode_tensor(original)
    stored = base64.b64decode(entry["data"])
    if entry["encoding"] == "zlib+base64":
        assert len(stored) < len(raw)
        assert zlib.decompress(stored) == raw
    else:
        assert stored == raw
        assert not raw or len(zlib.compress(raw, tensor_codec._ZLIB_LEVEL)) >= len(raw)
    assert encode_tensor(original, compress=False)["encoding"] == "base64"


# -- checking ------------------------------------------------------------------


def _entry() -> dict:
    return encode_tensor(torch.arange(12, dtype=torch.int32).reshape(3, 4), compress=False)


@pytest.mark.parametrize("change, message", [
    (lambda e: "not a dict", "not an object"),
    (lambda e: {k: v for k, v in e.items() if k != "sha256"}, "lacks sha256"),
    (lambda e: {k: v for k, v in e.items() if k not in ("data", "shape")}, "lacks data, shape"),
    (lambda e: {**e, "dtype": "complex64"}, "unknown dtype"),
    (lambda e: {**e, "dtype": ["float32"]}, "unknown dtype"),
    (lambda e: {**e, "shape": [3, -4]}, "malformed shape"),
    (lambda e: {**e, "shape": [3, 4.0]}, "malformed shape"),
    (lambda e: {**e, "shape": [3, True]}, "malformed shape"),
    (lambda e: {**e, "shape": "3x4"}, "malformed shape"),
    (lambda e: {**e, "encoding": "gzip+base64"}, "unknown encoding"),
    (lambda e: {**e, "data": 12}, "malformed data"),
    (lambda e: {**e, "sha256": e["sha256"][::-1]}, "checksum mismatch"),
    (lambda e: {**e, "sha256": None}, "checksum mismatch"),
], ids=["not-object", "no-sha", "no-data-shape", "dtype", "dtype-list", "negative-dim",
        "float-dim", "bool-dim", "shape-string", "encoding", "data-type", "sha", "sha-null"])
def test_check_entry_refuses(change, message):
    with pytest.raises(InstanceFileError, match=message) as caught:
        check_entry("weights", change(_entry()))
    assert "'weights'" in str(caught.value)
    assert "\n" not in str(caught.value)


def _with_valid_checksum(entry: dict) -> dict:
    entry = dict(entry)
    entry["sha256"] = tensor_codec.entry_checksum(
        entry["dtype"], entry["shape"], entry["encoding"], entry["data"])
    return entry


@pytest.mark.parametrize("change, message", [
    (lambda e: {**e, "shape": [3, 5]}, "holds 48 bytes, but int32\\[3, 5\\] needs 60"),
    (lambda e: {**e, "dtype": "int64"}, "holds 48 bytes, but int64\\[3, 4\\] needs 96"),
    (lambda e: {**e, "data": e["data"][:-4]}, "holds 45 bytes"),
    (lambda e: {**e, "data": "!!" + e["data"]}, "cannot be decoded"),
    (lambda e: {**e, "encoding": "zlib+base64"}, "cannot be decoded"),
], ids=["shape", "dtype", "short-data", "bad-base64", "not-zlib"])
def test_decode_refuses_consistent_but_wrong_entries(change, message):
    """Entries whose checksum was recomputed after an edit pass the checksum,
    but their data length or encoding still gives them away, to the check
    and to the decoder alike."""
    entry = _with_valid_checksum(change(_entry()))
    with pytest.raises(InstanceFileError, match=message):
        check_entry("t", entry)
    with pytest.raises(InstanceFileError, match=message):
        decode_tensor("t", entry)


@settings(max_examples=300)
@given(tensors(max_elements=32).filter(lambda t: t.numel() > 0), st.data())
def test_any_single_byte_change_to_the_data_is_detected(original, data):
    entry = encode_tensor(original)
    text = entry["data"]
    index = data.draw(st.integers(0, len(text) - 1), label="index")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != ord(text[index])), label="byte")
    edited = {**entry, "data": text[:index] + chr(byte) + text[index + 1:]}
    with pytest.raises(InstanceFileError):
        check_entry("t", edited)


@settings(max_examples=200)
@given(tensors(), st.data())
def test_any_change_to_dtype_shape_encoding_or_checksum_is_detected(original, data):
    entry = encode_tensor(original)
    field = data.draw(st.sampled_from(["dtype", "shape", "encoding", "sha256", "data length"]))
    edited = dict(entry)
    if field == "dtype":
        edited["dtype"] = data.draw(st.sampled_from([d for d in DTYPES if d != entry["dtype"]]))
    elif field == "shape":
        shape = list(entry["shape"])
        how = data.draw(st.sampled_from(["grow", "add", "drop"] if shape else ["add"]))
        if how == "grow":
            i = data.draw(st.integers(0, len(shape) - 1))
            shape[i] += data.draw(st.integers(1, 3))
        elif how == "add":
            shape.insert(data.draw(st.integers(0, len(shape))), data.draw(st.integers(0, 3)))
        else:
            del shape[data.draw(st.integers(0, len(shape) - 1))]
        edited["shape"] = shape
    elif field == "encoding":
        edited["encoding"] = next(e for e in tensor_codec.ENCODINGS if e != entry["encoding"])
    elif field == "sha256":
        i = data.draw(st.integers(0, len(entry["sha256"]) - 1))
        digit = data.draw(st.sampled_from("0123456789abcdef").filter(
            lambda c: c != entry["sha256"][i]))
        edited["sha256"] = entry["sha256"][:i] + digit + entry["sha256"][i + 1:]
    else:
        text = entry["data"]
        i = data.draw(st.integers(0, len(text)))
        if text and data.draw(st.booleans()):
            edited["data"] = text[:i] + text[i + 1:]
        else:
            edited["data"] = text[:i] + data.draw(st.sampled_from("A/+=")) + text[i:]
    if edited == entry:  # e.g. deleting from nothing
        return
    with pytest.raises(InstanceFileError):
        check_entry("t", edited)
