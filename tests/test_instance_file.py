"""The instance file: whatever is written reads back bit-exactly, and
whatever is damaged, truncated, edited or foreign is refused with one line."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hera import tensor_codec, tensor_stream
from hera.errors import InstanceFileError
from hera.hooks.types import DynamicState
from hera.instance import InstanceFile, read_header
from hera.tensor_stream import ITEMSIZE

DTYPES = sorted(ITEMSIZE)

# Hypothesis reuses tmp_path across examples; every example overwrites the
# same file, which is what the atomic writer is for anyway.
def file_settings(max_examples: int) -> settings:
    return settings(max_examples=max_examples,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def raw_bytes(tensor: torch.Tensor) -> bytes:
    if tensor.numel() == 0:
        return b""
    dense = torch.empty(tensor.shape, dtype=tensor.dtype).copy_(tensor)
    return dense.reshape(-1).view(torch.uint8).numpy().tobytes()


def canonical(value) -> str:
    """JSON text that tells 1 from 1.0 from True, -0.0 from 0.0 and keeps
    key order: equal texts mean bit-exactly equal values."""
    return json.dumps(value, ensure_ascii=True)


def assert_same_tensors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype, name
        assert list(got[name].shape) == list(tensor.shape), name
        assert raw_bytes(got[name]) == raw_bytes(tensor), name


# -- strategies ------------------------------------------------------------------

# Only finite floats: JSON has no NaN or Infinity, and hera neither writes
# nor reads them.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)

metas = st.fixed_dictionaries(
    {
        "id": st.uuids().map(str),
        "callsign": st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True),
        "family": st.fixed_dictionaries(
            {"name": st.text(max_size=10), "version": st.text(max_size=10),
             "data_format": st.integers()},
            optional={"extra": json_values},
        ),
        "layout": st.text(max_size=10),
        "created": st.text(max_size=30),
        "seed": st.integers(0, 2**63 - 1),
        "steps": st.integers(min_value=0),
        "incarnation": st.integers(min_value=0),
        "hera_version": st.text(max_size=10),
    },
    optional={"note": json_values},
)


@st.composite
def tensors(draw, max_elements: int = 24) -> torch.Tensor:
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.lists(st.integers(0, 4), max_size=3).filter(
        lambda s: math.prod(s) <= max_elements))
    nbytes = math.prod(shape) * ITEMSIZE[dtype]
    if dtype == "bool":
        raw = bytes(draw(st.lists(st.integers(0, 1), min_size=nbytes, max_size=nbytes)))
    else:
        raw = draw(st.binary(min_size=nbytes, max_size=nbytes))
    if not raw:
        return torch.empty(shape, dtype=getattr(torch, dtype))
    tensor = torch.frombuffer(bytearray(raw), dtype=getattr(torch, dtype)).reshape(shape)
    if tensor.is_floating_point():  # a reader refuses NaN and infinities
        tensor = tensor.masked_fill(~torch.isfinite(tensor), 0)
    return tensor


tensor_dicts = st.dictionaries(st.text(max_size=8), tensors(), max_size=4)
states = st.none() | st.builds(DynamicState, tensors=tensor_dicts, values=json_objects)


@st.composite
def instances(draw, tensor_dicts=tensor_dicts):
    """An InstanceFile and the tensors and state it was made from."""
    tensors_, state = draw(tensor_dicts), draw(states)
    instance = InstanceFile(meta=draw(metas), definition=draw(json_objects))
    instance.set_tensors(tensors_, state)
    return instance, tensors_, state


def small_instance(alive: bool = True) -> InstanceFile:
    """A fixed, valid instance with two tensors (and state when alive)."""
    meta = {
        "id": "5f0c9a8e-0000-4000-8000-000000000001", "callsign": "amber-otter",
        "family": {"name": "abraxas", "version": "1.0", "data_format": 1},
        "layout": "example", "created": "2024-01-01T00:00:00Z", "seed": 7, "steps": 12,
        "incarnation": 1, "hera_version": "0.1.0",
    }
    instance = InstanceFile(meta, {"neurons": 8, "rule": "stdp"})
    state = DynamicState({"v": torch.linspace(-1, 1, 5)}, {"clock": 3}) if alive else None
    instance.set_tensors({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7,
                          "mask": torch.tensor([True, False, True])}, state)
    return instance


@pytest.fixture
def no_fsync(monkeypatch):
    """Skip fsync in the many-example properties: it only costs time here
    (durability is test_atomic's subject)."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


@pytest.fixture
def written(tmp_path) -> tuple[Path, InstanceFile, bytes]:
    path = tmp_path / "agent.json"
    instance = small_instance()
    instance.write(path)
    return path, instance, path.read_bytes()


def refused(path: Path) -> InstanceFileError:
    """The error ``InstanceFile.read`` refuses ``path`` with (one line, naming it)."""
    with pytest.raises(InstanceFileError) as caught:
        InstanceFile.read(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return caught.value


# -- round trips -----------------------------------------------------------------


@file_settings(120)
@given(instances())
def test_any_instance_round_trips_bit_exactly(tmp_path, no_fsync, made):
    instance, tensors_, state = made
    path = tmp_path / "agent.json"
    instance.write(path)
    written_bytes = path.read_bytes()

    read = InstanceFile.read(path)
    assert canonical(read.meta) == canonical(instance.meta)
    assert canonical(read.definition) == canonical(instance.definition)
    assert read.digests == instance.digests
    assert_same_tensors(read.tensors(), tensors_)
    assert read.alive == (state is not None) == read.meta["alive"]
    if state is None:
        assert read.state() is None
    else:
        got = read.state()
        assert_same_tensors(got.tensors, state.tensors)
        assert canonical(got.values) == canonical(state.values)
    assert read.checksum() == instance.checksum()
    # Writing what was read gives the very same bytes.
    assert b"".join(read.chunks()) == written_bytes

    header = read_header(path)
    assert header.path == path
    assert canonical(header.meta) == canonical(instance.meta)
    assert (header.id, header.callsign) == (instance.id, instance.callsign)


def test_properties_of_a_read_file(written):
    path, instance, _ = written
    read = InstanceFile.read(path)
    assert (read.id, read.callsign, read.family, read.layout, read.steps) == (
        instance.meta["id"], "amber-otter", "abraxas", "example", 12)
    assert read.alive and read.state().values == {"clock": 3}


def test_dead_instance_round_trips(tmp_path):
    path = tmp_path / "dead.json"
    small_instance(alive=False).write(path)
    read = InstanceFile.read(path)
    assert not read.alive and read.state() is None and read.meta["alive"] is False


def test_state_without_values_round_trips(tmp_path):
    """State tensors given without a values dict: the writer stores ``{}``,
    so the checksum must treat missing values as ``{}`` too."""
    instance = small_instance(alive=False)
    instance.set_tensors(instance.tensors(), DynamicState({"v": torch.ones(3)}, {}))
    instance.state_values = None
    path = tmp_path / "agent.json"
    instance.write(path)
    read = InstanceFile.read(path)
    assert read.alive and read.state().values == {}
    assert torch.equal(read.state().tensors["v"], torch.ones(3))


def test_read_header_does_not_read_tensors(written, monkeypatch):
    path, instance, raw = written

    def explode(*args):
        raise AssertionError("read_header looked at a tensor")

    monkeypatch.setattr(tensor_stream, "decode", explode)
    monkeypatch.setattr(tensor_codec, "check_entry", explode)
    assert read_header(path).meta == instance.meta
    # Everything after the meta line may even be missing.
    second_line_end = raw.index(b"\n", raw.index(b"\n") + 1) + 1
    path.write_bytes(raw[:second_line_end])
    assert read_header(path).meta == instance.meta


def test_read_header_of_a_reformatted_file_reads_it_whole(written):
    path, instance, raw = written
    path.write_text(json.dumps(json.loads(raw), indent=2))
    assert read_header(path).meta == instance.meta
    path.write_text(json.dumps(json.loads(raw), indent=2).replace('"steps": 12', '"steps": 13'))
    with pytest.raises(InstanceFileError, match="checksum mismatch"):
        read_header(path)


def test_read_header_checks_format_version_and_meta(written):
    path, _, raw = written
    for old, new, message in [
        (b'"version":2', b'"version":3', "newer version"),
        (b'"hera-instance"', b'"hera-other"', "not a hera instance file"),
        (b'"steps":12', b'"steps":"12"', "'steps' is missing or malformed"),
        (b'"steps":12', b'"steps":NaN', "non-finite number, NaN,"),
        (b'"steps":12', b'"steps":12,"x":[1e400]', "non-finite number, 1e400,"),
        (b'"steps":12', b'"steps":-12', "'steps' is negative"),
        (b'"seed":7', b'"seed":9223372036854775808', "'seed' is out of range"),
    ]:
        path.write_bytes(raw.replace(old, new, 1))
        with pytest.raises(InstanceFileError, match=message) as caught:
            read_header(path)
        assert str(caught.value).startswith(f"{path}: ")


# -- damage ------------------------------------------------------------------------


def _tensor_region_start(raw: bytes) -> int:
    return raw.index(b'\n"tensors":') + 1


def _assert_detected_or_identical(damaged: bytes, instance: InstanceFile) -> None:
    """Damage is refused with InstanceFileError (and nothing else); a change
    the reader accepts must leave every value as it was (e.g. a newline
    turned into a space)."""
    try:
        read = InstanceFile.parse(damaged)
    except InstanceFileError as exc:
        assert "\n" not in str(exc)
        return
    assert read.checksum() == instance.checksum()
    assert read.digests == instance.digests
    assert_same_tensors(read.tensors(), instance.tensors())
    assert_same_tensors(read.state().tensors, instance.state().tensors)


@file_settings(200)
@given(st.data())
def test_any_single_byte_corruption_of_tensor_data_is_detected(tmp_path, no_fsync, data):
    # Not all zero: an all-zero tensor is stored with no data at all.
    some_data = st.dictionaries(st.text(max_size=8), tensors().filter(
        lambda t: bool(t.contiguous().reshape(-1).view(torch.uint8).any())), min_size=1, max_size=3)
    instance = data.draw(instances(some_data).map(lambda made: made[0]), label="instance")
    path = tmp_path / "agent.json"
    instance.write(path)
    raw = path.read_bytes()
    # Somewhere inside one of the "data" strings of the tensors section.
    spans, at = [], _tensor_region_start(raw)
    while (start := raw.find(b'"data":"', at)) != -1:
        start += len(b'"data":"')
        at = raw.index(b'"', start)
        if at > start:
            spans.append((start, at))
    start, end = data.draw(st.sampled_from(spans), label="data span")
    index = data.draw(st.integers(start, end - 1), label="index")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[index]), label="byte")
    path.write_bytes(raw[:index] + bytes([byte]) + raw[index + 1:])
    with pytest.raises(InstanceFileError):
        InstanceFile.read(path)


@file_settings(200)
@given(st.data())
def test_any_single_byte_corruption_after_the_header_is_caught(tmp_path, no_fsync, data):
    instance = data.draw(instances().map(lambda made: made[0]), label="instance")
    path = tmp_path / "agent.json"
    instance.write(path)
    raw = path.read_bytes()
    index = data.draw(st.integers(_tensor_region_start(raw), len(raw) - 1), label="index")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[index]), label="byte")
    path.write_bytes(raw[:index] + bytes([byte]) + raw[index + 1:])
    try:
        read = InstanceFile.read(path)
    except InstanceFileError as exc:
        assert "\n" not in str(exc)
        return
    assert read.checksum() == instance.checksum()
    assert read.digests == instance.digests


def test_every_bit_flip_in_the_tensors_section_is_caught(written):
    """In memory (``parse`` is ``read`` after reading the bytes), so that
    all eight flips of every byte stay cheap."""
    _, instance, raw = written
    for index in range(_tensor_region_start(raw), len(raw)):
        for bit in range(8):
            damaged = raw[:index] + bytes([raw[index] ^ (1 << bit)]) + raw[index + 1:]
            _assert_detected_or_identical(damaged, instance)


def test_json_escapes_in_tensor_data_are_refused(written):
    """A backslash turning ``XuABCD`` into ``\\uABCD`` yields valid JSON with
    a non-ASCII character inside the data."""
    path, _, raw = written
    start = raw.index(b'"data":"', _tensor_region_start(raw)) + len(b'"data":"')
    for escape in (b"\\u00e9", b"\\ud800", b"\\u0041", b"\\n", b"\\/"):
        path.write_bytes(raw[:start] + escape + raw[start + len(escape):])
        refused(path)


def test_every_truncation_is_refused(written):
    path, instance, raw = written
    for length in range(len(raw) - 1):
        path.write_bytes(raw[:length])
        error = refused(path)
        assert "truncated" in error.message, (length, error.message)
        try:
            header = read_header(path)
        except InstanceFileError as exc:
            assert "\n" not in str(exc)
        else:
            assert header.meta == instance.meta
    # Only the final newline missing: the document is whole.
    path.write_bytes(raw[:-1])
    assert InstanceFile.read(path).checksum() == instance.checksum()


# -- refusals ------------------------------------------------------------------------


def _edit(raw: bytes, change) -> bytes:
    doc = json.loads(raw)
    change(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("make, message", [
    (lambda raw: b"", "truncated"),
    (lambda raw: b"{not json}", "not valid JSON"),
    (lambda raw: raw.replace(b'"tensors":{', b'"tensors":{{', 1), "not valid JSON"),
    (lambda raw: b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    (lambda raw: b'{"format":"hera-instance","version":' + b"9" * 5000 + b"}", "not valid JSON"),
    (lambda raw: raw.replace(b'"rule":"stdp"', b'"rule":"st\xffdp"', 1), "not UTF-8"),
    (lambda raw: b"\x89PNG\r\n\x1a\n" + raw, "not UTF-8"),
    (lambda raw: raw.replace(b'"hera-instance"', b'"hera-instancf"', 1),
     "not a hera instance file"),
    (lambda raw: b"[1, 2]", "not a hera instance file"),
    (lambda raw: b'"hera-instance"', "not a hera instance file"),
    (lambda raw: raw.replace(b'"version":2', b'"version":3', 1), "version 3 is a newer"),
    (lambda raw: raw.replace(b'"version":2', b'"version":0', 1), "version 0 is an older"),
    (lambda raw: raw.replace(b'"version":2', b'"version":"2"', 1), "no format version"),
    (lambda raw: raw.replace(b'"version":2', b'"version":2.0', 1), "no format version"),
    (lambda raw: _edit(raw, lambda d: d.pop("version")), "no format version"),
    (lambda raw: _edit(raw, lambda d: d["meta"].update(steps=13)), "checksum mismatch"),
    (lambda raw: _edit(raw, lambda d: d["meta"].update(alive=False)), "checksum mismatch"),
    (lambda raw: _edit(raw, lambda d: d["definition"].update(neurons=9)), "checksum mismatch"),
    (lambda raw: _edit(raw, lambda d: d["state"]["values"].update(clock=4)),
     "checksum mismatch"),
    (lambda raw: _edit(raw, lambda d: d.update(state=None)), "checksum mismatch"),
    (lambda raw: _edit(raw, lambda d: d["tensors"].pop("mask")), "checksum mismatch"),
    (lambda raw: _edit(raw, lambda d: d["tensors"].update(w2=d["tensors"].pop("w"))),
     "checksum mismatch"),
    (lambda raw: _edit(raw, lambda d: d["state"]["tensors"].update(w=d["tensors"]["w"])),
     "checksum mismatch"),
    (lambda raw: _edit(raw, lambda d: d.update(checksum="0" * 64)), "checksum mismatch"),
    (lambda raw: _edit(raw, lambda d: d["tensors"]["w"].update(shape=[3, 2])),
     "checksum mismatch in tensor 'w'"),
    (lambda raw: _edit(raw, lambda d: d["state"]["tensors"]["v"].update(dtype="float64")),
     "tensor 'state.v' declares 28 characters of data, but float64[5]"),
    (lambda raw: _edit(raw, lambda d: d["state"]["tensors"]["v"].update(dtype="int32")),
     "checksum mismatch in tensor 'state.v'"),
    (lambda raw: _edit(raw, lambda d: d["meta"].update(steps="12")),
     "meta field 'steps' is missing or malformed"),
    (lambda raw: _edit(raw, lambda d: d["meta"].update(seed=True)),
     "meta field 'seed' is missing or malformed"),
    (lambda raw: _edit(raw, lambda d: d["meta"].pop("id")),
     "meta field 'id' is missing or malformed"),
    (lambda raw: _edit(raw, lambda d: d["meta"]["family"].pop("data_format")),
     "meta field 'family' is malformed"),
    (lambda raw: _edit(raw, lambda d: d.update(meta=[])), "section 'meta' is not an object"),
    (lambda raw: _edit(raw, lambda d: d.update(definition=[])),
     "section 'definition' is not an object"),
    (lambda raw: _edit(raw, lambda d: d.update(tensors=[])),
     "section 'tensors' is not an object"),
    (lambda raw: _edit(raw, lambda d: d["state"].pop("values")), "section 'state' is malformed"),
    (lambda raw: _edit(raw, lambda d: d.update(state=[])), "section 'state' is malformed"),
    (lambda raw: _edit(raw, lambda d: d["tensors"].update(w={"dtype": ["x"]})),
     "tensor 'w' lacks"),
    (lambda raw: _edit(raw, lambda d: d["tensors"]["w"].update(dtype={})), "unknown dtype"),
    # JSON has no NaN or Infinity, though Python's json reads them.
    (lambda raw: raw.replace(b'"neurons":8', b'"neurons":NaN', 1), "non-finite number, NaN,"),
    (lambda raw: raw.replace(b'"steps":12', b'"steps":Infinity', 1),
     "non-finite number, Infinity,"),
    (lambda raw: raw.replace(b'"clock":3', b'"clock":[-Infinity]', 1),
     "non-finite number, -Infinity,"),
    (lambda raw: raw.replace(b'"neurons":8', b'"neurons":1e999', 1), "non-finite number, 1e999,"),
    (lambda raw: raw.replace(b'"neurons":8', b'"neurons":-' + b"9" * 400 + b".5", 1),
     "non-finite number, -9999"),
    (lambda raw: raw.replace(b'"tensors":{', b'"tensors":{"x":{"y":NaN},', 1),
     "non-finite number, NaN,"),
    (lambda raw: raw.replace(b'"state":{', b'"nothing":NaN,"state":{', 1),
     "non-finite number, NaN,"),
    # Ranges of the metadata.
    (lambda raw: _edit(raw, lambda d: d["meta"].update(seed=2**70)),
     "meta field 'seed' is out of range (0 <= seed < 2**63)"),
    (lambda raw: _edit(raw, lambda d: d["meta"].update(seed=2**63)), "'seed' is out of range"),
    (lambda raw: _edit(raw, lambda d: d["meta"].update(seed=-1)), "'seed' is out of range"),
    (lambda raw: _edit(raw, lambda d: d["meta"].update(steps=-1)),
     "meta field 'steps' is negative"),
    (lambda raw: _edit(raw, lambda d: d["meta"].update(incarnation=-5)),
     "meta field 'incarnation' is negative"),
], ids=lambda v: None if callable(v) else v)
def test_refuses(written, make, message):
    path, _, raw = written
    path.write_bytes(make(raw))
    assert message in refused(path).message


def test_nesting_json_reads_but_the_checksum_cannot_write_is_refused(written):
    """Somewhere below the recursion limit, json.loads takes a nesting that
    json.dumps, a few frames deeper in the checksum, can't: every depth is
    read or refused in one line, never a RecursionError."""
    _, _, raw = written
    for depth in range(600, 1001):
        nested = b"[" * depth + b"]" * depth
        try:
            InstanceFile.parse(raw.replace(b'"neurons":8', b'"neurons":' + nested, 1))
        except InstanceFileError as exc:
            assert "checksum mismatch" in exc.message or "nesting too large" in exc.message


@pytest.mark.parametrize("section", ["meta", "definition", "checksum", "tensors", "state"])
def test_refuses_missing_sections(written, section):
    path, _, raw = written
    path.write_bytes(_edit(raw, lambda d: d.pop(section)))
    assert f"missing section {section!r}" in refused(path).message


def test_refuses_what_is_not_a_file(tmp_path):
    assert "no such file" in refused(tmp_path / "absent.json").message
    assert "is a directory" in refused(tmp_path).message
    with pytest.raises(InstanceFileError, match="no such file"):
        read_header(tmp_path / "absent.json")
    with pytest.raises(InstanceFileError, match="is a directory"):
        read_header(tmp_path)


def _rewritten(raw: bytes, name: str, change) -> bytes:
    """``raw`` with tensor ``name``'s entry changed by ``change`` and every
    checksum recomputed, laid out as hera's writer lays it out."""
    doc = json.loads(raw)
    entry = doc["tensors"][name]
    change(entry)
    layout = tensor_stream.Layout(entry["dtype"], entry["shape"], entry["encoding"],
                                  entry.get("count"))
    digest = tensor_stream.new_digest()
    digest.update(tensor_stream.header_text(layout).replace(
        f'"length":{layout.length}', f'"length":{entry["length"]}').encode())
    digest.update(entry["data"].encode())
    entry["xxh3"] = digest.hexdigest()
    doc["checksum"] = _document_checksum(doc)
    lines = [b'{"format":"hera-instance","version":2,']
    for section in ("meta", "definition"):
        lines.append(f'"{section}":{json.dumps(doc[section], separators=(",", ":"))},'.encode())
    lines.append(b'"tensors":{')
    lines.append(b",\n".join(f'{json.dumps(k)}:{json.dumps(e, separators=(",", ":"))}'.encode()
                             for k, e in doc["tensors"].items()))
    lines.append(b'},\n"state":null,')
    lines.append(f'"checksum":"{doc["checksum"]}"'.encode())
    return b"\n".join(lines) + b"\n}\n"


@pytest.mark.parametrize("change, message", [
    (lambda e: e.update(shape=[7]), "declares 32 characters of data, but float32[7] stored as "
                                    "base64 takes 40"),
    (lambda e: e.update(shape=[1, 2]), "but float32[1, 2] stored as base64 takes 12"),
    (lambda e: e.update(dtype="float64"), "but float64[6] stored as base64 takes 64"),
    (lambda e: e.update(dtype="int8"), "but int8[6] stored as base64 takes 8"),
    (lambda e: e.update(encoding="zeros"), "but float32[6] stored as zeros takes 0"),
    (lambda e: e.update(shape=[7], length=40), "its data is not the 40 characters"),
    (lambda e: e.update(data=e["data"][:-4]), "its data is not the 32 characters"),
    (lambda e: e.update(encoding="sparse", count=3),
     "sparse records out of order or out of range"),
], ids=["shape-longer", "shape-shorter", "dtype-wider", "dtype-narrower", "zeros",
        "length-lies", "data-short", "sparse-lies"])
def test_refuses_tensor_whose_entry_does_not_fit_its_data(tmp_path, change, message):
    """An entry edited with its checksums recomputed passes the checksums;
    its declared length, or its data, still gives it away."""
    instance = small_instance(alive=False)
    instance.set_tensors({"w": torch.arange(1, 7, dtype=torch.float32)}, None)
    path = tmp_path / "agent.json"
    instance.write(path)
    path.write_bytes(_rewritten(path.read_bytes(), "w", change))
    error = refused(path)
    assert message in error.message, error.message


@pytest.mark.parametrize("laid_out", [True, False], ids=["streamed", "parsed whole"])
def test_declared_sizes_are_checked_before_anything_is_allocated(tmp_path, laid_out):
    """A 300-byte file declaring a 4 GiB tensor: refused before the tensor's
    memory is taken, whichever reader reads it."""
    import tracemalloc

    instance = small_instance(alive=False)
    instance.set_tensors({"w": torch.arange(1, 7, dtype=torch.float32)}, None)
    path = tmp_path / "agent.json"
    instance.write(path)
    huge = 1 << 30
    raw = _rewritten(path.read_bytes(), "w", lambda e: e.update(
        shape=[huge], length=tensor_stream.text_length(4 * huge)))
    path.write_bytes(raw if laid_out else json.dumps(json.loads(raw), indent=1).encode())
    tracemalloc.start()
    try:
        message = refused(path).message
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "its data is not the" in message or "truncated" in message, message
    assert peak < 8 << 20


def test_seed_range_ends_are_accepted(tmp_path):
    for seed in (0, 2**63 - 1):
        instance = small_instance()
        instance.meta["seed"] = seed
        instance.write(tmp_path / "agent.json")
        assert InstanceFile.read(tmp_path / "agent.json").meta["seed"] == seed
        assert read_header(tmp_path / "agent.json").meta["seed"] == seed


# -- what isn't a regular file, or is too big ---------------------------------------


def _refused_both_ways(path: Path, message: str) -> None:
    assert message in refused(path).message
    with pytest.raises(InstanceFileError, match=re.escape(message)) as caught:
        read_header(path)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")


def test_refuses_devices_fifos_and_links_to_them(tmp_path):
    """``/dev/zero`` would be read until memory runs out, and a FIFO without
    a writer would block forever: neither is even read."""
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")
    for path in (Path("/dev/zero"), Path("/dev/null"), fifo, link):
        _refused_both_ways(path, "not a regular file")


def test_refuses_a_socket(tmp_path):
    import socket

    path = tmp_path / "s.json"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        _refused_both_ways(path, "not a regular file")


def test_a_file_that_becomes_a_fifo_after_the_first_look_is_refused(tmp_path, monkeypatch):
    """The check that counts is made on the open descriptor (and opening
    doesn't block): a swap between looking and opening changes nothing."""
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    real_stat = os.stat
    regular = real_stat(__file__)
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: regular if Path(path) == fifo
                        else real_stat(path, *a, **k))
    assert "not a regular file" in refused(fifo).message


def test_every_os_error_is_one_line(tmp_path):
    long_name = tmp_path / ("a" * 300 + ".json")
    _refused_both_ways(long_name, "cannot read it (File name too long)")
    (tmp_path / "afile").write_text("")
    _refused_both_ways(tmp_path / "afile" / "x.json", "cannot read it (Not a directory)")
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    _refused_both_ways(loop, "cannot read it (Too many levels of symbolic links)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(written):
    path, _, _ = written
    path.chmod(0)
    _refused_both_ways(path, "permission denied")


def test_refuses_a_file_larger_than_the_memory_available(written, monkeypatch):
    import collections

    import psutil

    path, _, raw = written
    Memory = collections.namedtuple("Memory", "total available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: Memory(1 << 40, 100 << 20))
    assert InstanceFile.read(path).id == small_instance().id  # small files don't ask
    # As hera lays it out, a file is streamed: its size takes no memory.
    path.write_bytes(raw + b" " * (128 << 20))
    assert InstanceFile.read(path).id == small_instance().id
    assert read_header(path).meta == small_instance().meta  # it only reads the start
    # Laid out otherwise, it is read whole, by read_header too: refused.
    path.write_bytes(raw.replace(b"\n", b" ", 1) + b" " * (128 << 20))
    message = refused(path).message
    assert "too large to read" in message and str(100 << 20) in message
    with pytest.raises(InstanceFileError, match="too large to read"):
        read_header(path)


def test_read_header_of_a_foreign_layout_reads_the_file_it_opened(written, monkeypatch):
    """A file not laid out by hera's writer is read whole from the very file
    that was opened, not opened again by name."""
    path, instance, raw = written
    path.write_text(json.dumps(json.loads(raw), indent=2))
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    assert read_header(path).meta == instance.meta
    assert opened == [path]


# -- NaN and Infinity on writing -------------------------------------------------------


@pytest.mark.parametrize("where, change", [
    ("section 'meta'", lambda i: i.meta.update(note=[1.0, math.nan])),
    ("section 'definition'", lambda i: i.definition.update(rate=math.inf)),
    ("section 'state' (its values)", lambda i: i.state_values.update(t=-math.inf)),
], ids=["meta", "definition", "state values"])
def test_the_writer_never_writes_nan_or_infinity(tmp_path, where, change):
    instance = small_instance()
    change(instance)
    path = tmp_path / "agent.json"
    with pytest.raises(InstanceFileError) as caught:
        instance.write(path)
    message = str(caught.value)
    assert f"{where} holds a non-finite number" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == [], "nothing written, no temporary file left"


def test_the_writer_ignores_values_of_a_dead_instance(tmp_path):
    instance = small_instance(alive=False)
    instance.state_values = {"t": math.nan}  # not written: there is no state
    instance.write(tmp_path / "agent.json")
    assert InstanceFile.read(tmp_path / "agent.json").state_values is None


def test_float_tensors_holding_nan_are_refused_when_read(tmp_path):
    instance = small_instance()
    state = instance.state()
    state.tensors["v"][2] = math.nan
    instance.set_tensors(instance.tensors(), state)
    instance.write(tmp_path / "agent.json")
    with pytest.raises(InstanceFileError, match="tensor 'state.v' holds NaN or an infinity"):
        InstanceFile.read(tmp_path / "agent.json")


# -- through the hera command ----------------------------------------------------------


def _one_line(proc, *words: str) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hera: error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_hera_refuses_what_is_not_a_regular_file(world):
    """``/dev/zero`` was read until a MemoryError, a FIFO hung hera forever,
    and a long name escaped as an internal error."""
    fifo = world.workdir / "fifo.json"
    os.mkfifo(fifo)
    for args in (["install", "/dev/zero"], ["up", "/dev/zero", "--steps", "1"],
                 ["install", "fifo.json"], ["up", "fifo.json", "--steps", "1"]):
        _one_line(world.run(*args, check=False, timeout=60), "not a regular file")
    _one_line(world.run("install", "a" * 300 + ".json", check=False, timeout=60),
              "File name too long")


def test_hera_agents_skips_non_regular_files_in_the_store(world):
    agent_id, path = world.build()
    world.run("install", path.name)
    os.mkfifo(world.agents_dir / "fifo.json")
    (world.agents_dir / "zero.json").symlink_to("/dev/zero")
    proc = world.run("agents", "--json", timeout=60)
    assert [row["id"] for row in json.loads(proc.stdout)] == [agent_id]
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == 2 and all("not a regular file" in w for w in warnings), proc.stderr
    assert "fifo.json" in proc.stderr and "zero.json" in proc.stderr


def test_hera_refuses_a_file_larger_than_the_memory(world):
    """A sparse file (no disk used) bigger than the memory available."""
    import psutil

    big = world.workdir / "big.json"
    try:
        with open(big, "wb") as stream:
            stream.truncate(psutil.virtual_memory().available + (4 << 30))
    except OSError as exc:  # a file system without sparse files that large
        pytest.skip(f"cannot make a large sparse file here: {exc}")
    _one_line(world.run("install", "big.json", check=False, timeout=60), "too large to read")


def _document_checksum(doc: dict) -> str:
    """The recipe of docs/instance-file.md (which, like Python, lets NaN through)."""
    import hashlib

    state = doc["state"]
    summary = {"meta": doc["meta"], "definition": doc["definition"],
               "tensors": {k: e["xxh3"] for k, e in doc["tensors"].items()},
               "state": None if state is None else {
                   "values": state["values"],
                   "tensors": {k: e["xxh3"] for k, e in state["tensors"].items()}}}
    text = json.dumps(summary, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def test_hera_refuses_nan_and_out_of_range_metadata(world):
    _, path = world.build()
    doc = json.loads(path.read_text())
    cases = {
        "nan.json": ("definition", "nan", math.nan, "non-finite number, NaN"),
        "inf.json": ("meta", "note", -math.inf, "non-finite number, -Infinity"),
        "seed.json": ("meta", "seed", 2**70, "meta field 'seed' is out of range"),
        "steps.json": ("meta", "steps", -1, "meta field 'steps' is negative"),
        "incarnation.json": ("meta", "incarnation", -1, "meta field 'incarnation' is negative"),
    }
    for name, (section, key, value, message) in cases.items():
        edited = json.loads(json.dumps(doc))
        edited[section][key] = value
        edited["checksum"] = _document_checksum(edited)
        (world.workdir / name).write_text(json.dumps(edited))
        _one_line(world.run("install", name, check=False), message)
        _one_line(world.run("up", name, "--steps", "1", check=False), message)
    assert world.agents() == []


def test_hera_up_refuses_a_nan_weight(world):
    _, path = world.build()
    instance = InstanceFile.read(path)
    tensors_ = instance.tensors()
    name = next(k for k, t in tensors_.items() if t.is_floating_point() and t.numel())
    tensors_[name].view(-1)[0] = math.nan
    instance.set_tensors(tensors_, instance.state())
    instance.write(world.workdir / "nan-weight.json")
    _one_line(world.run("up", "nan-weight.json", "--steps", "1", check=False),
              f"tensor {name!r} holds NaN or an infinity")
    assert world.agents() == [], "nothing installed"


# -- older versions ------------------------------------------------------------------


@pytest.mark.parametrize("alive", [True, False], ids=["alive", "dead"])
def test_version_1_files_are_still_read_and_written_again_as_version_2(tmp_path, alive):
    from tests import version1

    instance = small_instance(alive)
    instance.set_tensors({**instance.tensors(), "zeros": torch.zeros(300, dtype=torch.int64)},
                         instance.state())
    path = tmp_path / "old.json"
    path.write_bytes(version1.file_bytes(instance))
    old = InstanceFile.read(path)
    assert read_header(path).meta == old.meta == instance.meta
    assert_same_tensors(old.tensors(), instance.tensors())
    assert old.alive == alive and (not alive or old.state().values == {"clock": 3})
    old.write(path)
    assert path.read_bytes().startswith(b'{"format":"hera-instance","version":2,\n')
    again = InstanceFile.read(path)
    assert_same_tensors(again.tensors(), instance.tensors())
    if alive:
        assert_same_tensors(again.state().tensors, instance.state().tensors)
    # Damage in a version-1 file is caught as before.
    raw = version1.file_bytes(instance).replace(b'"steps":12', b'"steps":13', 1)
    path.write_bytes(raw)
    assert "checksum mismatch" in refused(path).message


def test_the_format_page_decodes_and_checks_what_hera_writes(tmp_path):
    """docs/instance-file.md's Python (decode, document_checksum) and its
    recipe for a tensor's xxh3, run on a file hera wrote with every
    encoding."""
    import xxhash

    page = (Path(__file__).resolve().parent.parent / "docs" / "instance-file.md").read_text()
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", page, re.S):
        exec(block, namespace)
    sparse = torch.zeros(7, 9)
    sparse[2, 3], sparse[6, 8] = 1.5, -0.0
    tensors = {"dense": torch.randn(5, 3), "zero": torch.zeros(4, dtype=torch.int16),
               "sparse": sparse, "flags": torch.tensor([True, False, True])}
    instance = small_instance()
    instance.set_tensors(tensors, instance.state())
    path = tmp_path / "agent.json"
    instance.write(path)
    doc = json.loads(path.read_text())
    assert {e["encoding"] for e in doc["tensors"].values()} == {"base64", "zeros", "sparse"}
    for name, tensor in tensors.items():
        entry = doc["tensors"][name]
        decoded = namespace["decode"](entry)
        assert decoded.tobytes() == tensor.contiguous().numpy().tobytes(), name
        header = json.dumps({k: v for k, v in entry.items() if k not in ("data", "xxh3")},
                            separators=(",", ":"))[:-1] + ',"data":"'
        assert xxhash.xxh3_128((header + entry["data"]).encode()).hexdigest() == entry["xxh3"]
    assert namespace["document_checksum"](doc) == doc["checksum"]
