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


def finite(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor with NaN and infinities (which a reader refuses) set to 0,
    every other element bit for bit as it was."""
    if not tensor.is_floating_point():
        return tensor
    return tensor.masked_fill(~torch.isfinite(tensor), 0)


@st.composite
def tensors(draw, max_elements: int = 64, allow_non_finite: bool = False) -> torch.Tensor:
    """Any tensor of a storable dtype: random bit patterns (subnormals, and
    NaNs and infinities if allowed), sometimes highly compressible,
    sometimes non-contiguous."""
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
    if not allow_non_finite:
        tensor = finite(tensor)
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
    """A 3x5 tensor of the dtype with its awkward (finite) values where it
    has them."""
    torch_dtype = getattr(torch, dtype)
    if dtype == "bool":
        return torch.tensor([True, False, True, True, False] * 3).reshape(3, 5)
    if torch_dtype.is_floating_point:
        info = torch.finfo(torch_dtype)
        values = [0.0, -0.0, 1.0, -2.5, info.tiny / 4, -info.tiny / 2, 0.5, info.max, info.min,
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
@given(tensors(allow_non_finite=True))
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
@given(tensors(max_elements=32, allow_non_finite=True).filter(lambda t: t.numel() > 0), st.data())
def test_any_single_byte_change_to_the_data_is_detected(original, data):
    entry = encode_tensor(original)
    text = entry["data"]
    index = data.draw(st.integers(0, len(text) - 1), label="index")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != ord(text[index])), label="byte")
    edited = {**entry, "data": text[:index] + chr(byte) + text[index + 1:]}
    with pytest.raises(InstanceFileError):
        check_entry("t", edited)


@settings(max_examples=200)
@given(tensors(allow_non_finite=True), st.data())
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


# -- non-finite floats -----------------------------------------------------------

FLOAT_DTYPES = [d for d in DTYPES if getattr(torch, d).is_floating_point]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("compress", [True, False], ids=["compress", "plain"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_decode_refuses_non_finite_floats(dtype, compress, value):
    """A NaN weight or membrane leaves the agent meaningless: one such value
    anywhere makes the tensor unreadable (the entry itself is well formed)."""
    original = torch.zeros(1000, dtype=getattr(torch, dtype))
    original[997] = value
    entry = encode_tensor(original, compress=compress)
    check_entry("weights", entry)  # no torch there: only decoding looks
    with pytest.raises(InstanceFileError, match="tensor 'weights' holds NaN or an infinity") as caught:
        decode_tensor("weights", entry)
    assert "\n" not in str(caught.value)


def test_non_finite_check_looks_at_every_piece(monkeypatch):
    monkeypatch.setattr(tensor_codec, "_FINITE_PIECE", 7)
    original = torch.ones(100)
    assert_same(decode_tensor("t", encode_tensor(original)), original)
    original[-1] = math.nan
    with pytest.raises(InstanceFileError, match="'t' holds NaN"):
        decode_tensor("t", encode_tensor(original))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_large_finite_values_whose_sum_overflows_are_accepted(dtype):
    """The check sums first (fast); a sum that overflows is no NaN."""
    original = torch.full((1000,), torch.finfo(getattr(torch, dtype)).max,
                          dtype=getattr(torch, dtype))
    assert not torch.isfinite(original.sum())
    assert_same(decode_tensor("t", encode_tensor(original)), original)


def test_integer_and_bool_tensors_are_not_checked_for_nan():
    original = torch.tensor([-1, 0, 2**31 - 1], dtype=torch.int32)
    assert_same(decode_tensor("t", encode_tensor(original)), original)


# -- bombs and big inputs -----------------------------------------------------------


def _zlib_entry(packed: bytes, dtype: str = "float32", shape: list[int] | None = None) -> dict:
    data = base64.b64encode(packed).decode()
    shape = [4] if shape is None else shape
    return _with_valid_checksum({"dtype": dtype, "shape": shape, "encoding": "zlib+base64",
                                 "sha256": "", "data": data})


def _peak(call) -> int:
    """Peak bytes Python allocated while ``call`` ran."""
    import tracemalloc

    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def bomb() -> dict:
    """64 KiB of zlib that inflates to 64 MiB, in a float32[4] entry."""
    return _zlib_entry(zlib.compress(bytes(64 << 20), 9))


@pytest.mark.parametrize("reader", [check_entry, decode_tensor, tensor_codec.decode_bytes],
                         ids=["check_entry", "decode_tensor", "decode_bytes"])
def test_a_zlib_bomb_is_refused_without_inflating_it(bomb, reader):
    """Inflating stops as soon as the data exceeds the 16 bytes that the
    shape needs: one bounded piece, never the 64 MiB."""
    assert len(bomb["data"]) < 100_000

    def read():
        with pytest.raises(InstanceFileError, match=r"tensor 'w' holds more than 16 bytes, "
                                                    r"but float32\[4\] needs 16"):
            reader("w", bomb)

    assert _peak(read) < 3 << 20


@pytest.mark.parametrize("reader", [check_entry, tensor_codec.decode_bytes],
                         ids=["check_entry", "decode_bytes"])
def test_data_after_a_stream_that_ends_on_a_full_piece_is_refused_at_once(monkeypatch, reader):
    """A stream whose last output fills a bounded piece, then one byte more:
    zlib keeps that byte as an unconsumed tail after the end, and asking it
    again never emptied it (a reader that spun for ever)."""
    import signal

    monkeypatch.setattr(tensor_codec, "_TEXT_PIECE", 12)
    monkeypatch.setattr(tensor_codec, "_OUT_PIECE", 28)
    entry = _with_valid_checksum({"dtype": "uint8", "shape": [2553], "encoding": "zlib+base64",
                                  "sha256": "", "data": "eNrtwQEBAAAAgiD/r25IQAEAcGEJ+QABWw=="})

    def spun(*_):
        raise AssertionError("the reader did not stop")

    previous = signal.signal(signal.SIGALRM, spun)
    signal.alarm(10)
    try:
        with pytest.raises(InstanceFileError, match="data after the end"):
            reader("t", entry)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_inflating_a_large_tensor_is_linear_and_bounded(monkeypatch):
    """The compressed input goes to zlib in bounded pieces (never the whole
    rest of it again and again), and each piece gives bounded output."""
    generator = torch.Generator().manual_seed(1)
    original = torch.randint(0, 4, (1 << 20,), dtype=torch.int32, generator=generator)
    entry = encode_tensor(original)
    assert entry["encoding"] == "zlib+base64"
    assert len(entry["data"]) > 4 * tensor_codec._TEXT_PIECE
    fed, given = [], []
    real = zlib.decompressobj

    class Recorder:
        def __init__(self, *args):
            self._inflate = real(*args)

        def __getattr__(self, name):
            return getattr(self._inflate, name)

        def decompress(self, data, max_length=0):
            out = self._inflate.decompress(data, max_length)
            fed.append(len(data))
            given.append(len(out))
            return out

    monkeypatch.setattr(zlib, "decompressobj", Recorder)
    check_entry("t", entry)
    assert max(fed) <= tensor_codec._TEXT_PIECE * 3 // 4
    assert sum(fed) <= len(base64.b64decode(entry["data"])) * 2  # tails are re-fed once at most
    assert max(given) <= tensor_codec._OUT_PIECE
    assert_same(decode_tensor("t", entry), original)


def test_decode_tensor_holds_the_data_once():
    """Straight into the tensor: no whole copy of the data beside it (torch's
    own memory isn't traced, so only Python's copies would show)."""
    original = torch.arange(1 << 22, dtype=torch.int32)  # 16 MiB
    entry = encode_tensor(original)
    assert _peak(lambda: decode_tensor("t", entry)) < 3 << 20


@pytest.mark.parametrize("dtype, shape", [("float32", [2**40]), ("uint8", [10**30])])
def test_a_huge_shape_with_little_data_is_refused(dtype, shape):
    entry = _zlib_entry(zlib.compress(bytes(1000)), dtype, shape)
    with pytest.raises(InstanceFileError, match="holds 1000 bytes"):
        check_entry("t", entry)
    with pytest.raises(InstanceFileError, match="'t' needs .* bytes of memory"):
        decode_tensor("t", entry)


def test_data_after_the_zlib_stream_is_refused():
    packed = zlib.compress(bytes(16))
    entry = _zlib_entry(packed + b"junk")
    with pytest.raises(InstanceFileError, match="cannot be decoded: data after the end"):
        check_entry("t", entry)
    with pytest.raises(InstanceFileError, match="cannot be decoded"):
        decode_tensor("t", entry)


def test_padding_before_the_end_is_refused_in_any_piece(monkeypatch):
    monkeypatch.setattr(tensor_codec, "_TEXT_PIECE", 8)
    data = base64.b64encode(bytes(4)).decode() + base64.b64encode(bytes(8)).decode()
    assert data[7] == "="
    entry = _with_valid_checksum({"dtype": "uint8", "shape": [12], "encoding": "base64",
                                  "sha256": "", "data": data})
    with pytest.raises(InstanceFileError, match="cannot be decoded"):
        check_entry("t", entry)


base64_texts = st.one_of(
    st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
    st.text(alphabet="AQgw+/=", max_size=40),
    st.lists(st.binary(max_size=6).map(lambda b: base64.b64encode(b).decode()),
             max_size=4).map("".join),
)


@settings(max_examples=300)
@given(data=st.data(), compress=st.booleans(), text_piece=st.sampled_from([4, 8, 12, 64]),
       out_piece=st.integers(1, 40))
def test_decoding_in_pieces_is_decoding_in_one_go(data, compress, text_piece, out_piece):
    """Whatever the sizes of the pieces, the bytes and the refusals are those
    of ``b64decode(validate=True)`` and of inflating in one go."""
    if compress:
        raw = data.draw(st.binary(max_size=300) | st.integers(0, 3000).map(bytes), label="raw")
        packed = zlib.compress(raw, data.draw(st.integers(0, 9), label="level"))
        cut = data.draw(st.integers(0, len(packed) + 2), label="cut")
        text = base64.b64encode(packed[:cut] + data.draw(st.binary(max_size=3))).decode()
    else:
        text = data.draw(base64_texts, label="text")
    try:
        want = base64.b64decode(text, validate=True)
        if compress:
            inflate = zlib.decompressobj()
            want = inflate.decompress(want) + inflate.flush()
            if not inflate.eof or inflate.unused_data:  # zlib.decompress ignores what follows
                want = None
    except (ValueError, zlib.error):
        want = None
    length = len(want) if want is not None else data.draw(st.integers(0, 50), label="length")
    entry = _with_valid_checksum({"dtype": "uint8", "shape": [length],
                                  "encoding": "zlib+base64" if compress else "base64",
                                  "sha256": "", "data": text})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tensor_codec, "_TEXT_PIECE", text_piece)
        patch.setattr(tensor_codec, "_OUT_PIECE", out_piece)
        if want is None:
            with pytest.raises(InstanceFileError):
                tensor_codec.decode_bytes("t", entry)
            with pytest.raises(InstanceFileError):
                check_entry("t", entry)
        else:
            assert tensor_codec.decode_bytes("t", entry) == want
            check_entry("t", entry)
            assert raw_bytes(decode_tensor("t", entry)) == want
