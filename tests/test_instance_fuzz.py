"""Fuzzing the instance-file reader.

Whatever the bytes, :meth:`InstanceFile.parse`, :meth:`InstanceFile.read`
and :func:`read_header` either accept them or raise
:class:`InstanceFileError` with a one-line message; no other exception
escapes, and the peak of Python's allocations while reading stays within
:func:`memory_bound` of the input's size and the tensors accepted (zlib
bombs and huge declared shapes included). What they accept is something
hera can write again and use: finite numbers only, metadata in range,
tensors that decode (or are refused in one line, for NaN).

Inputs are mutations of valid files, one written by hera's own writer
(version 2) and one of version 1, and documents generated from them: wrong
types, bad and huge shapes, lying lengths, zlib bombs, NaN and Infinity,
deep nesting, with the checksums recomputed or not, so that the checks
behind the checksums are reached too.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import re
import tracemalloc
import zlib
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from hera import tensor_codec, tensor_stream
from hera.errors import InstanceFileError
from hera.hooks.types import DynamicState
from hera.instance import InstanceFile, read_header
from tests import version1

MiB = 1 << 20


def memory_bound(size: int, tensors: int = 0) -> int:
    """The most Python may allocate, at its peak, to read ``size`` bytes
    holding ``tensors`` bytes of tensors."""
    return 4 * size + tensors + 8 * MiB


def valid_instance() -> InstanceFile:
    """A small instance as hera writes it: a few tensors of several dtypes,
    one of them compressed, and dynamic state."""
    meta = {
        "id": "0b5e7c1a-9d2f-4e8b-a1c3-5f6d7e8f9a0b", "callsign": "fuzzy-otter",
        "family": {"name": "abraxas", "version": "0.3.0", "data_format": 1},
        "layout": "example", "created": "2026-01-02T03:04:05+00:00", "seed": 3429782861203940549,
        "steps": 1200, "incarnation": 2, "hera_version": "0.1.0", "saved": "2026-01-02T04:00:00+00:00",
    }
    definition = {"width": 3, "height": 2, "rate": 0.25, "rule": "stdp",
                  "layers": [{"cells": 4, "leak": 0.9}, {"cells": 2, "leak": 0.5}]}
    instance = InstanceFile(meta, definition)
    sparse = torch.zeros(40, dtype=torch.float32)
    sparse[[3, 17]] = torch.tensor([0.25, -2.0])
    tensors = {
        "weights": torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7,
        "mask": torch.tensor([True, False, True, True]),
        "counts": torch.zeros(64, dtype=torch.int64),  # all zero: no data
        "sparse": sparse,  # two records
        "bias": torch.tensor(-0.5, dtype=torch.bfloat16),
    }
    state = DynamicState({"potential": torch.linspace(-1, 1, 6, dtype=torch.float16),
                          "rng": torch.arange(16, dtype=torch.uint8)}, {"t": 1200, "phase": 0.5})
    instance.set_tensors(tensors, state)
    return instance


VALID = b"".join(valid_instance().chunks())
VALID_DOC = json.loads(VALID)
assert {e["encoding"] for e in VALID_DOC["tensors"].values()} == {"base64", "zeros", "sparse"}
VALID_V1 = version1.file_bytes(valid_instance())
VALID_V1_DOC = json.loads(VALID_V1)
assert InstanceFile.parse(VALID_V1).tensors().keys() == InstanceFile.parse(VALID).tensors().keys()


# -- reading, and what must hold of every outcome ----------------------------------


def check_outcome(read: Callable[[], Any], size: int, where: str) -> str:
    """Run ``read`` and check what it did: returns "accepted" or "refused"."""
    outcome, result, held = "accepted", None, 0
    tracemalloc.start()
    try:
        try:
            result = read()
            if isinstance(result, InstanceFile):
                # Decoding is part of reading: each tensor decodes (in a
                # version-1 file, when asked for), or is refused in one
                # line (NaN, infinities).
                for stored in [*result.stored.values(), *(result.stored_state or {}).values()]:
                    held += tensor_stream.nbytes_of(stored.dtype, stored.shape)
                    try:
                        stored.tensor()
                    except InstanceFileError as exc:
                        assert "\n" not in exc.message, exc.message
        except InstanceFileError as exc:
            assert "\n" not in exc.message, exc.message
            assert exc.message.startswith(f"{where}: "), exc.message
            outcome = "refused"
            if currently_in_test_context():  # what refused it, for --hypothesis-show-statistics
                event(re.sub(r"'[^']*'|\d+", "", exc.message[len(where) + 2:])[:48])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Refusals too: a bomb must not cost its inflated size before it is refused.
    assert peak <= memory_bound(size, held), f"peak {peak} bytes reading {size} bytes"
    if outcome == "accepted":
        check_accepted(result)
    return outcome


def check_accepted(result: Any) -> None:
    """What the reader accepts is in range and can be written again."""
    meta = result.meta
    assert 0 <= meta["seed"] < 2**63  # docs/instance-file.md
    assert meta["steps"] >= 0 and meta["incarnation"] >= 0
    json.dumps(meta, allow_nan=False)  # no NaN or Infinity anywhere
    if isinstance(result, InstanceFile):
        json.dumps([result.definition, result.state_values], allow_nan=False)
        again = b"".join(result.chunks())
        assert InstanceFile.parse(again).checksum() == result.checksum()


def read_everywhere(raw: bytes, path: Path) -> list[str]:
    """Parse ``raw``, and read it from ``path`` whole and by its header."""
    outcomes = [check_outcome(lambda: InstanceFile.parse(raw, "<fuzz>"), len(raw), "<fuzz>")]
    path.write_bytes(raw)
    outcomes.append(check_outcome(lambda: InstanceFile.read(path), len(raw), str(path)))
    outcomes.append(check_outcome(lambda: read_header(path), len(raw), str(path)))
    assert outcomes[0] == outcomes[1], "parse and read agree"
    return outcomes


@pytest.fixture(scope="module")
def path(tmp_path_factory) -> Path:
    """One file, rewritten for every example."""
    return tmp_path_factory.mktemp("fuzz") / "agent.json"


def test_the_valid_files_read(path):
    assert read_everywhere(VALID, path) == ["accepted"] * 3
    assert read_everywhere(VALID_V1, path) == ["accepted"] * 3


# -- mutations of a valid file -------------------------------------------------------

TOKENS = [
    b'"encoding":"zeros"', b'"encoding":"sparse"', b'"version":1', b'"length":0',
    b'"count":1', b'"count":99999999', b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400", b"-1", b"9223372036854775808",
    b"1" * 5000, b"0.5", b"-0", b"null", b"true", b"[]", b"{}", b'""', b'"', b"\\", b"\\u00e9",
    b"\\ud800", b"\xff", b"\xc3\xa9", b"\x00", b"\n", b",", b":", b"}", b"]", b"=", b"==",
    b"[" * 3000, b"{\"a\":" * 400, b'"shape":[1099511627776]', b'"encoding":"zlib+base64"',
    b'"dtype":"float64"', b'"version":2', b'"state":null', b"\xef\xbb\xbf",
]

# Places in a valid file worth hitting: keys, numbers, section starts.
ANCHORS = [b'"seed":', b'"steps":', b'"incarnation":', b'"shape":[', b'"encoding":"',
           b'"data":"', b'"sha256":"', b'"xxh3":"', b'"length":', b'"count":', b'"state":', b'"meta":', b'"tensors":', b'"values":',
           b'"checksum":"', b'"definition":', b'"rate":', b'"version":', b"\n"]


@st.composite
def mutations(draw) -> bytes:
    raw = bytearray(draw(st.sampled_from([VALID, VALID, VALID_V1]), label="version"))
    for _ in range(draw(st.integers(1, 4), label="edits")):
        kind = draw(st.sampled_from(["flip", "set", "delete", "insert", "insert at anchor",
                                     "replace after anchor", "duplicate", "truncate"]))
        if not raw:
            raw = bytearray(draw(st.sampled_from(TOKENS)))
            continue
        at = draw(st.integers(0, len(raw) - 1), label="at")
        if kind == "flip":
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            raw[at] = draw(st.integers(0, 255))
        elif kind == "delete":
            del raw[at:at + draw(st.integers(1, 64))]
        elif kind == "insert":
            raw[at:at] = draw(st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=8))
        elif kind in ("insert at anchor", "replace after anchor"):
            anchor = draw(st.sampled_from(ANCHORS))
            starts = [i for i in range(len(raw)) if raw.startswith(anchor, i)]
            if not starts:
                continue
            start = draw(st.sampled_from(starts)) + len(anchor)
            token = draw(st.sampled_from(TOKENS))
            end = start + (draw(st.integers(0, 24)) if kind == "replace after anchor" else 0)
            raw[start:end] = token
        elif kind == "duplicate":
            piece = raw[at:at + draw(st.integers(1, 400))]
            where = draw(st.integers(0, len(raw)))
            raw[where:where] = piece
        else:
            del raw[draw(st.integers(0, len(raw))):]
    return bytes(raw)


fuzz_settings = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])


@fuzz_settings
@given(mutations())
def test_mutated_files(path, raw):
    read_everywhere(raw, path)


# -- generated documents ---------------------------------------------------------------

# Deep nesting is spliced into the text after json.dumps (which would hit
# the recursion limit writing it).
_DEEP = "\x00deep:{}\x00"


@st.composite
def deep(draw) -> str:
    return _DEEP.format(draw(st.sampled_from([50, 500, 900, 990, 1200, 5000])))


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from([-1, 2**63, 2**70])
    | st.builds(pow, st.just(10), st.just(4000)) | st.floats() | st.text(max_size=6) | deep(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                  max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def bombs() -> dict[int, str]:
    """Base64 of zlib streams of N zero bytes (about N/1000 bytes each)."""
    return {n: base64.b64encode(zlib.compress(bytes(n), 9)).decode() for n in (MiB, 16 * MiB, 64 * MiB)}


_BOMBS: dict[int, str] = {}

shapes = st.one_of(
    st.lists(st.integers(0, 5), max_size=3),
    st.lists(st.integers(0, 5), max_size=3),
    st.sampled_from([[-1], [2.5], [True], "3", None, [2**40], [2**63, 2**63], [10**30], [1] * 1000,
                     [0, 2**62]]),
)


@st.composite
def entries_v1(draw) -> dict[str, Any]:
    """A version-1 tensor entry: often self-consistent but for its shape,
    sometimes a bomb, sometimes broken text; its sha256 usually right."""
    dtype = draw(st.sampled_from(sorted(tensor_codec.ITEMSIZE) + ["complex64", 3]))
    shape = draw(shapes)
    encoding = draw(st.sampled_from(["base64", "zlib+base64", "zlib+base64", "gzip"]))
    kind = draw(st.sampled_from(["fits", "random", "bomb", "broken"]))
    itemsize = tensor_codec.ITEMSIZE.get(dtype, 1) if isinstance(dtype, str) else 1
    if kind == "fits" and isinstance(shape, list) and all(type(d) is int for d in shape) \
            and 0 <= math.prod(shape) * itemsize <= 4096:
        # Random bits: now and then a float NaN, refused when decoded.
        payload = draw(st.binary(min_size=math.prod(shape) * itemsize,
                                 max_size=math.prod(shape) * itemsize))
    else:
        payload = draw(st.binary(max_size=64))
    if kind == "bomb":
        size = draw(st.sampled_from(sorted(_BOMBS)))
        data, encoding = _BOMBS[size], "zlib+base64"
    elif kind == "broken":
        good = base64.b64encode(zlib.compress(payload) if encoding.startswith("zlib") else payload)
        data = draw(st.sampled_from([
            good.decode()[:-1], "!!" + good.decode(), good.decode() + "=",
            base64.b64encode(b"\x01\x02").decode() + good.decode(),  # padding in the middle
            base64.b64encode(zlib.compress(payload) + b"junk").decode(),
            base64.b64encode(zlib.compress(payload)[:-3]).decode(), "\u00e9", "",
        ]))
    else:
        data = base64.b64encode(zlib.compress(payload) if encoding.startswith("zlib")
                                else payload).decode()
    entry = {"dtype": dtype, "shape": shape, "encoding": encoding, "data": data, "sha256": "0"}
    if draw(st.integers(0, 9)):
        try:
            entry["sha256"] = tensor_codec.entry_checksum(dtype, shape, encoding, data)
        except (TypeError, ValueError, UnicodeError):
            pass
    if not draw(st.integers(0, 7)):
        del entry[draw(st.sampled_from(sorted(entry)))]
    return entry


@st.composite
def entries_v2(draw) -> dict[str, Any]:
    """A version-2 tensor entry: often self-consistent but for its shape,
    sometimes with a lying length or count, sometimes broken text, now and
    then zlib (which version 2 doesn't have); its checksum usually right."""
    dtype = draw(st.sampled_from(sorted(tensor_stream.ITEMSIZE) + ["complex64", 3]))
    shape = draw(shapes)
    encoding = draw(st.sampled_from(["base64", "base64", "zeros", "sparse", "zlib+base64"]))
    kind = draw(st.sampled_from(["fits", "random", "lies", "broken"]))
    itemsize = tensor_stream.ITEMSIZE.get(dtype, 1) if isinstance(dtype, str) else 1
    sized = isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
    numel = math.prod(shape) if sized else 1
    count = draw(st.integers(1, 4) | st.sampled_from([0, 2**40, numel, numel + 1]))
    if encoding == "zeros":
        payload = b""
    elif encoding == "sparse" and kind == "fits" and sized and 0 < count <= min(numel, 64) \
            and numel <= 1 << 40:
        indices = sorted(draw(st.sets(st.integers(0, numel - 1), min_size=count, max_size=count)))
        width = tensor_stream.index_size(numel)
        payload = b"".join(i.to_bytes(width, "little") + draw(st.binary(min_size=itemsize,
                                                                           max_size=itemsize))
                           for i in indices)
    elif kind == "fits" and sized and numel * itemsize <= 4096:
        payload = draw(st.binary(min_size=numel * itemsize, max_size=numel * itemsize))
    else:
        payload = draw(st.binary(max_size=64))
    data = base64.b64encode(payload).decode()
    if kind == "broken":
        data = draw(st.sampled_from([data[:-1], "!!" + data, data + "=", "\u00e9", "",
                                     base64.b64encode(b"\x01\x02").decode() + data]))
    entry: dict[str, Any] = {"dtype": dtype, "shape": shape, "encoding": encoding}
    if encoding == "sparse":
        entry["count"] = count
    entry["length"] = len(data)
    if kind == "lies":
        entry["length"] = draw(st.sampled_from([len(data) + 4, 2**40, -4, 0, "8"]))
    entry.update(data=data, xxh3="0")
    if draw(st.integers(0, 9)):
        try:
            layout = tensor_stream.Layout(dtype, shape, encoding, entry.get("count"))
            header = tensor_stream.header_text(layout).replace(
                f'"length":{layout.length}', f'"length":{entry["length"]}')
            digest = tensor_stream.new_digest()
            digest.update((header + data).encode())
            entry["xxh3"] = digest.hexdigest()
        except (TypeError, ValueError, UnicodeError, KeyError):
            pass
    if not draw(st.integers(0, 7)):
        del entry[draw(st.sampled_from(sorted(entry)))]
    return entry


SECTIONS = ["meta", "definition", "tensors", "state", "checksum", "format", "version"]
META_KEYS = ["id", "callsign", "family", "layout", "created", "hera_version", "alive", "note"]
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf, "1e999"])


def _splice_non_finite(doc: dict, draw) -> None:
    """Put NaN, an infinity or 1e999 somewhere in the document."""
    value = draw(NON_FINITE)
    value = [value] if draw(st.booleans()) else value
    place = draw(st.sampled_from(["meta", "definition", "values", "tensor", "top"]))
    if place in ("meta", "definition") and isinstance(doc.get(place), dict):
        doc[place][draw(st.sampled_from(["note", "rate", "seed", "steps"]))] = value
    elif place == "values" and isinstance(doc.get("state"), dict):
        doc["state"]["values"] = {"t": value}
    elif place == "tensor" and isinstance(doc.get("tensors"), dict) and doc["tensors"]:
        entry = doc["tensors"][draw(st.sampled_from(sorted(doc["tensors"])))]
        if isinstance(entry, dict):
            entry[draw(st.sampled_from(["shape", "extra"]))] = value
    else:
        doc["extra"] = value


@st.composite
def documents(draw) -> bytes:
    version = draw(st.sampled_from([2, 2, 1]), label="version")
    doc = copy.deepcopy(VALID_DOC if version == 2 else VALID_V1_DOC)
    entries = entries_v2 if version == 2 else entries_v1
    for _ in range(draw(st.integers(1, 3), label="edits")):
        kind = draw(st.sampled_from(["tensor", "tensor", "tensor", "state tensor", "counter",
                                     "meta", "definition", "non-finite", "section", "drop"]))
        if kind == "tensor" and isinstance(doc.get("tensors"), dict):
            name = draw(st.sampled_from(sorted(doc["tensors"]) + ["new"]))
            doc["tensors"][name] = draw(entries() if draw(st.integers(0, 4)) else values)
        elif kind == "state tensor" and isinstance(doc.get("state"), dict) \
                and isinstance(doc["state"].get("tensors"), dict):
            doc["state"]["tensors"][draw(st.sampled_from(["potential", "new"]))] = draw(entries())
        elif kind == "counter" and isinstance(doc.get("meta"), dict):
            doc["meta"][draw(st.sampled_from(["seed", "steps", "incarnation"]))] = draw(
                st.integers(-3, 3) | st.sampled_from([2**63 - 1, 2**63, 2**64, 2**70, -2**63])
                | st.integers())
        elif kind == "meta" and isinstance(doc.get("meta"), dict):
            doc["meta"][draw(st.sampled_from(META_KEYS))] = draw(values)
        elif kind == "definition" and isinstance(doc.get("definition"), dict):
            doc["definition"][draw(st.sampled_from(["rate", "layers", "new"]))] = draw(values)
        elif kind == "non-finite":
            _splice_non_finite(doc, draw)
        elif kind == "section":
            doc[draw(st.sampled_from(SECTIONS))] = draw(values)
        elif kind == "drop" and doc:
            del doc[draw(st.sampled_from(sorted(doc)))]
    if draw(st.integers(0, 4)):  # mostly: reach the checks behind the checksum
        try:
            doc["checksum"] = document_checksum(doc, "xxh3" if version == 2 else "sha256")
        except (KeyError, TypeError, AttributeError, ValueError, RecursionError):
            pass
    text = json.dumps(doc, indent=draw(st.sampled_from([None, None, 1])))
    for depth in (50, 500, 900, 990, 1200, 5000):
        text = text.replace(json.dumps(_DEEP.format(depth)), "[" * depth + "]" * depth)
    return text.replace('"1e999"', "1e999").encode()


def document_checksum(doc: dict, key: str) -> str:
    """The document checksum as docs/instance-file.md computes it, over
    each tensor's ``key`` (like Python's json, it lets NaN through: the
    reader must not)."""
    state = doc["state"]
    summary = {
        "meta": doc["meta"], "definition": doc["definition"],
        "tensors": {k: e[key] for k, e in doc["tensors"].items()},
        "state": None if state is None else {
            "values": state["values"],
            "tensors": {k: e[key] for k, e in state["tensors"].items()}},
    }
    text = json.dumps(summary, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


@fuzz_settings
@given(documents())
def test_generated_documents(path, raw):
    read_everywhere(raw, path)


@pytest.fixture(scope="module", autouse=True)
def _bombs_for_the_strategies(bombs):
    """The strategies draw bombs from a module dict (made once)."""
    _BOMBS.update(bombs)
    yield
    _BOMBS.clear()


# -- bombs, measured -----------------------------------------------------------------


@pytest.mark.parametrize("size", [16 * MiB, 64 * MiB])
@pytest.mark.parametrize("declared", ["small", "exact"])
def test_a_bomb_costs_no_more_than_its_size(path, bombs, size, declared):
    """A version-1 file of ~N/1000 bytes whose tensor inflates to N: refused
    with a small shape as soon as the output passes it, accepted with the
    exact shape; either way its Python allocations stay bounded by its size."""
    shape = [4] if declared == "small" else [size // 4]
    entry = {"dtype": "float32", "shape": shape, "encoding": "zlib+base64", "data": bombs[size]}
    entry["sha256"] = tensor_codec.entry_checksum("float32", shape, "zlib+base64", entry["data"])
    doc = copy.deepcopy(VALID_V1_DOC)
    doc["tensors"]["weights"] = entry
    doc["checksum"] = document_checksum(doc, "sha256")
    raw = version1.lay_out(doc)
    assert len(raw) < size // 500
    outcomes = read_everywhere(raw, path)
    assert outcomes == (["refused", "refused", "accepted"] if declared == "small"
                        else ["accepted"] * 3)


def _with_zeros(shape: list[int], good_checksum: bool) -> bytes:
    """The valid version-2 file with its all-zero tensor's shape changed."""
    entry = {"dtype": "int64", "shape": shape, "encoding": "zeros", "length": 0, "data": ""}
    digest = tensor_stream.new_digest()
    digest.update(tensor_stream.header_text(tensor_stream.Layout("int64", shape, "zeros")).encode())
    entry["xxh3"] = digest.hexdigest() if good_checksum else "0" * 32
    doc = copy.deepcopy(VALID_DOC)
    doc["tensors"]["counts"] = entry
    doc["checksum"] = document_checksum(doc, "xxh3")
    start = VALID.index(b'\n"counts":') + 1
    end = VALID.index(b"\n", start)
    line = b'"counts":' + json.dumps(entry, separators=(",", ":")).encode() \
        + VALID[end - 1:end].replace(b"}", b"")  # the comma after it
    checksum_at = VALID.rindex(b'"checksum":"') + len(b'"checksum":"')
    raw = VALID[:start] + line + VALID[end:checksum_at] + doc["checksum"].encode() \
        + VALID[checksum_at + 64:]
    return raw


@pytest.mark.parametrize("good_checksum", [True, False], ids=["accepted", "refused"])
def test_a_huge_all_zero_tensor_costs_its_size_only_once_its_checksum_is_right(path,
                                                                              good_checksum):
    """300 bytes of file declaring 64 MiB of zeros: the reader checks the
    entry's checksum before it takes the memory, so a damaged one costs
    nothing; an intact one is a tensor of that size, as declared."""
    raw = _with_zeros([8 * MiB], good_checksum)
    outcomes = read_everywhere(raw, path)
    assert outcomes == (["accepted"] * 3 if good_checksum else ["refused", "refused", "accepted"])
    if good_checksum:
        assert not InstanceFile.parse(raw).tensors()["counts"].any()

