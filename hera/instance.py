"""The instance file: one versioned JSON document per agent.

Layout on disk, as hera writes it (version 2)::

    {"format":"hera-instance","version":2,
    "meta":{...},
    "definition":{...},
    "tensors":{
    "name":{"dtype":...,"length":N,"data":"<base64>","xxh3":"<hex>"},
    ...
    },
    "state":null | {"values":{...},
    "tensors":{...}},
    "checksum":"<sha256 of meta, definition, state values, tensor checksums>"
    }

Tensors stream through at disk speed (:mod:`hera.tensor_stream`), the
checksums computed on the way, and the document checksum comes last.
Version 1 files (the checksum before the tensors, sha256 per tensor, zlib)
are still read. See ``docs/instance-file.md`` for every field.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from hera import atomic, finite_json, instance_reader, tensor_codec, tensor_stream
from hera.errors import InstanceFileError
from hera.finite_json import NonFiniteNumber
from hera.instance_meta import (COMPACT, FORMAT, META_FIELDS, SEED_LIMIT, VERSION, check_format,
                                check_meta, check_sections, summary_checksum)
from hera.stored_tensor import Encoded, Given, StoredTensor

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from hera.hooks.types import DynamicState

__all__ = ["FORMAT", "VERSION", "META_FIELDS", "SEED_LIMIT", "InstanceFile", "Header",
           "read_header"]


def _dumps(value: Any, section: str) -> str:
    """Compact JSON of one section, refusing non-finite numbers."""
    try:
        return json.dumps(value, **COMPACT)
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise
        raise InstanceFileError(
            f"cannot write an instance file: {section} holds a non-finite number "
            "(NaN or infinity), which JSON does not allow") from None


def _non_finite(where: Any, exc: NonFiniteNumber) -> InstanceFileError:
    return InstanceFileError(
        f"{where}: not valid JSON (a non-finite number, {exc.token}, which JSON does not allow)")


@dataclass
class InstanceFile:
    """An agent as stored: metadata, definition, tensors, state.

    Reading a file decodes its tensors once, into numpy memory, with no
    torch; :meth:`tensors` and :meth:`state` hand out torch tensors over
    that memory. Writing encodes each tensor as it goes to disk.
    """

    meta: dict[str, Any]
    definition: dict[str, Any]
    stored: dict[str, StoredTensor] = field(default_factory=dict)
    stored_state: dict[str, StoredTensor] | None = None
    state_values: dict[str, Any] | None = None
    #: Each tensor's checksum (state tensors as ``state.NAME``) as last read
    #: or written; empty for tensors not yet written.
    digests: dict[str, str] = field(default_factory=dict)
    _checksum: str = ""
    #: Whether the tensors were let go (:meth:`release_tensors`).
    _released: bool = False

    # -- identity ------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def callsign(self) -> str:
        return self.meta["callsign"]

    @property
    def family(self) -> str:
        return self.meta["family"]["name"]

    @property
    def layout(self) -> str:
        return self.meta["layout"]

    @property
    def steps(self) -> int:
        return self.meta["steps"]

    @property
    def alive(self) -> bool:
        """Whether it has dynamic state (has run at least once)."""
        return self.stored_state is not None

    # -- tensors -------------------------------------------------------------

    def tensors(self) -> "dict[str, torch.Tensor]":
        """The learned parameters as CPU tensors (over the file's own memory
        where it was read: changing them in place changes what it writes)."""
        self._check_held()
        return {k: t.tensor() for k, t in self.stored.items()}

    def tensor_bytes(self) -> int:
        """Bytes of every tensor, learned and state, as a family gets them
        (zeros and sparse ones made whole)."""
        from hera.tensor_stream import nbytes_of

        entries = [*self.stored.values(), *(self.stored_state or {}).values()]
        return sum(nbytes_of(t.dtype, list(t.shape)) for t in entries)

    def release_tensors(self) -> None:
        """Let go of the tensors (the file's decoded memory, a snapshot
        once written): a running agent's family holds its own, and the
        next save captures them afresh. Until :meth:`set_tensors`, reading
        or writing the tensors raises :class:`InstanceFileError`."""
        self._released = True
        self.stored = {}
        if self.stored_state is not None:
            self.stored_state = {}

    def _check_held(self) -> None:
        if self._released:
            raise InstanceFileError(f"instance {self.id} no longer holds its tensors: its family "
                                    "does; capture them first")

    def state(self) -> "DynamicState | None":
        """The dynamic state, or ``None`` for a dead instance."""
        from hera.hooks.types import DynamicState

        if self.stored_state is None:
            return None
        self._check_held()
        tensors = {k: t.tensor() for k, t in self.stored_state.items()}
        return DynamicState(tensors=tensors, values=dict(self.state_values or {}))

    def set_tensors(
        self, tensors: "dict[str, torch.Tensor]", state: "DynamicState | None"
    ) -> None:
        """Replace parameters and state; they are encoded when written, so
        they must not change until then (a family's snapshot is a copy)."""
        self.meta["alive"] = state is not None
        self._released = False
        self.stored = {k: Given(k, t) for k, t in tensors.items()}
        self.digests, self._checksum = {}, ""
        if state is None:
            self.stored_state, self.state_values = None, None
        else:
            self.stored_state = {k: Given(f"state.{k}", t) for k, t in state.tensors.items()}
            self.state_values = dict(state.values)

    # -- checksums -----------------------------------------------------------

    def checksum(self) -> str:
        """The document checksum as last read or written (covers everything
        but the tensor data, which each tensor's own checksum covers)."""
        if not self._checksum:
            raise InstanceFileError("the instance has not been written or read yet")
        return self._checksum

    # -- writing -------------------------------------------------------------

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, section by section, each tensor's data in
        pieces of a few MiB.

        Raises :class:`InstanceFileError`, before the first byte, if a
        section holds NaN or an infinity.
        """
        self._check_held()
        meta = _dumps(self.meta, "section 'meta'")
        definition = _dumps(self.definition, "section 'definition'")
        if self.stored_state is not None:
            values = _dumps(self.state_values or {}, "section 'state' (its values)")
        digests: dict[str, str] = {}
        yield f'{{"format":"{FORMAT}","version":{VERSION},\n'.encode()
        yield f'"meta":{meta},\n'.encode()
        yield f'"definition":{definition},\n'.encode()
        yield from _entries_chunks(self.stored, "", digests)
        state = None
        if self.stored_state is None:
            yield b',\n"state":null'
        else:
            yield f',\n"state":{{"values":{values},\n'.encode()
            yield from _entries_chunks(self.stored_state, "state.", digests)
            yield b"}"
            state = {"values": self.state_values or {},
                     "tensors": {k: digests[f"state.{k}"] for k in self.stored_state}}
        checksum = summary_checksum(self.meta, self.definition,
                                    {k: digests[k] for k in self.stored}, state)
        yield f',\n"checksum":"{checksum}"\n}}\n'.encode()
        self.digests, self._checksum = digests, checksum

    def write(self, path: Path, exclusive: bool = False) -> None:
        """Write atomically (temp file, fsync, rename, fsync directory);
        ``exclusive``: fail with :class:`FileExistsError` rather than
        replace an existing file."""
        atomic.write_atomically(Path(path), self.chunks(), exclusive=exclusive)

    # -- reading -------------------------------------------------------------

    @classmethod
    def read(cls, path: Path) -> "InstanceFile":
        """Read and fully check a file; raise :class:`InstanceFileError`
        with one clear line if anything is wrong."""
        path = Path(path)
        with _open_regular(path) as stream:
            try:
                first = os.pread(stream.fileno(), len(instance_reader.FIRST_LINE), 0)
            except OSError as exc:
                raise _os_error(path, exc) from None
            if first == instance_reader.FIRST_LINE:
                try:
                    return cls._streamed(instance_reader.pread_from(stream.fileno()), str(path))
                except instance_reader.NotLaidOut:
                    pass
                except OSError as exc:
                    raise _os_error(path, exc) from None
            data = _read_whole(stream, path)
        return cls._parsed(data, str(path))

    @classmethod
    def parse(cls, data: bytes, where: str = "<instance>") -> "InstanceFile":
        """Parse and check the bytes of a file (see :meth:`read`)."""
        if data.startswith(instance_reader.FIRST_LINE):
            try:
                return cls._streamed(instance_reader.slice_from(data), where)
            except instance_reader.NotLaidOut:
                pass
        return cls._parsed(data, where)

    @classmethod
    def _streamed(cls, read_at: instance_reader.ReadAt, where: str) -> "InstanceFile":
        try:
            return cls._of(instance_reader.stream(read_at))
        except InstanceFileError as exc:
            raise InstanceFileError(f"{where}: {exc.message}") from None
        except RecursionError:  # nesting json.loads took but the checksum's json.dumps can't
            raise InstanceFileError(f"{where}: not valid JSON (a number or nesting too large)") from None

    @classmethod
    def _of(cls, contents: instance_reader.Contents) -> "InstanceFile":
        return cls(contents.meta, contents.definition, dict(contents.tensors),
                   None if contents.state is None else dict(contents.state), contents.values,
                   contents.digests, contents.checksum)

    @classmethod
    def _parsed(cls, data: bytes, where: str) -> "InstanceFile":
        """The file parsed whole as JSON, whatever its layout."""
        try:
            doc = finite_json.loads(data)
        except NonFiniteNumber as exc:
            raise _non_finite(where, exc) from None
        except UnicodeDecodeError:
            raise InstanceFileError(f"{where}: not a hera instance file (not UTF-8 text)") from None
        except json.JSONDecodeError as exc:
            # hera's writer starts every file with its format and ends it with
            # "}\n": a file that begins right but stops short was cut off.
            ours = data.startswith(b'{"format":') or b'{"format":'.startswith(data)
            ended = data.rstrip().endswith(b"}") and exc.pos < len(data.rstrip()) \
                and not exc.msg.startswith("Unterminated string")
            cut = ours and not ended
            hint = "truncated" if cut else "not valid JSON"
            raise InstanceFileError(f"{where}: {hint} (at byte {exc.pos})") from None
        except (ValueError, RecursionError):
            # Valid syntax Python will not load: an integer of over 4300
            # digits, or nesting deeper than the recursion limit.
            raise InstanceFileError(f"{where}: not valid JSON (a number or nesting too large)") from None
        try:
            if check_format(doc) == 1:
                return cls._from_version_1(doc)
            return cls._of(instance_reader.from_document(doc))
        except InstanceFileError as exc:
            raise InstanceFileError(f"{where}: {exc.message}") from None
        except RecursionError:
            # Nesting that json.loads took but the checksum's json.dumps,
            # called a few frames deeper, can't.
            raise InstanceFileError(f"{where}: not valid JSON (a number or nesting too large)") from None

    @classmethod
    def _from_version_1(cls, doc: dict[str, Any]) -> "InstanceFile":
        check_sections(doc)
        meta, tensors = doc["meta"], doc["tensors"]
        for name, entry in tensors.items():
            tensor_codec.check_entry(name, entry)
        state = doc["state"]
        state_entries = state_values = state_summary = None
        if state is not None:
            if not (isinstance(state, dict) and isinstance(state.get("tensors"), dict)
                    and isinstance(state.get("values"), dict)):
                raise InstanceFileError("section 'state' is malformed")
            for name, entry in state["tensors"].items():
                tensor_codec.check_entry(f"state.{name}", entry)
            state_entries, state_values = state["tensors"], state["values"]
            state_summary = {"values": state_values,
                             "tensors": {k: e["sha256"] for k, e in state_entries.items()}}
        digests = {k: e["sha256"] for k, e in tensors.items()}
        checksum = summary_checksum(meta, doc["definition"], dict(digests), state_summary)
        if checksum != doc["checksum"]:
            raise InstanceFileError("checksum mismatch: the file is damaged or was edited")
        if state_summary is not None:
            digests.update({f"state.{k}": d for k, d in state_summary["tensors"].items()})
        return cls(meta, doc["definition"], {k: Encoded(k, e) for k, e in tensors.items()},
                   None if state_entries is None
                   else {k: Encoded(f"state.{k}", e) for k, e in state_entries.items()},
                   state_values, digests, checksum)


@dataclass(frozen=True)
class Header:
    """The metadata of an instance file, read without its tensors."""

    path: Path
    meta: dict[str, Any]

    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def callsign(self) -> str:
        return self.meta["callsign"]


def read_header(path: Path, limit: int = 1 << 20) -> Header:
    """Read only the ``meta`` line of an instance file (cheap for big files).

    Checks format and version; does not check checksums (use
    :meth:`InstanceFile.read` for that).
    """
    path = Path(path)
    with _open_regular(path) as stream:
        try:
            first = stream.readline(limit)
            second = stream.readline(limit)
        except OSError as exc:
            raise _os_error(path, exc) from None
        try:
            head = finite_json.loads(first.rstrip().rstrip(b",") + b"}")
            if not second.startswith(b'"meta":'):
                raise ValueError
            meta = finite_json.loads(second[len(b'"meta":'):].rstrip().rstrip(b","))
        except NonFiniteNumber as exc:
            raise _non_finite(path, exc) from None
        except (ValueError, UnicodeDecodeError, RecursionError):
            # Not written by hera's writer (e.g. re-indented by hand): read it
            # whole, from the file already open.
            try:
                stream.seek(0)
            except OSError as exc:
                raise _os_error(path, exc) from None
            data = _read_whole(stream, path)
            return Header(path, InstanceFile.parse(data, str(path)).meta)
    try:
        check_format(head)
        check_meta(meta)
    except InstanceFileError as exc:
        raise InstanceFileError(f"{path}: {exc.message}") from None
    return Header(path, meta)


def _entries_chunks(entries: dict[str, StoredTensor], prefix: str,
                    digests: dict[str, str]) -> Iterator[bytes]:
    """A ``"tensors":{...}`` section, one entry per line, each tensor's
    checksum put in ``digests`` once its data has gone by."""
    yield b'"tensors":{'
    for i, (name, stored) in enumerate(entries.items()):
        layout = stored.layout()
        raw = stored.raw() if layout.encoding != "zeros" else None
        header = tensor_stream.header_text(layout)
        digest = tensor_stream.entry_digest(layout)
        separator = ",\n" if i else "\n"
        yield f"{separator}{json.dumps(name, ensure_ascii=True)}:{header}".encode()
        yield from tensor_stream.encode(layout, raw, digest)
        digests[prefix + name] = digest.hexdigest()
        yield f'","xxh3":"{digests[prefix + name]}"}}'.encode()
    yield b"\n}"


def _open_regular(path: Path) -> IO[bytes]:
    """Open ``path`` for reading if it is a regular file; raise
    :class:`InstanceFileError` with one line otherwise.

    Opening doesn't block (a FIFO without a writer would wait forever) and
    the check is made on the open descriptor, so what is read is what was
    checked.
    """
    try:
        # Don't even open a device: opening some has effects of its own.
        if not _regular(path, os.stat(path).st_mode):
            raise InstanceFileError(f"{path}: not a regular file")
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
            | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags)
    except OSError as exc:
        raise _os_error(path, exc) from None
    try:
        if not _regular(path, os.fstat(fd).st_mode):
            raise InstanceFileError(f"{path}: not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except OSError as exc:
        os.close(fd)
        raise _os_error(path, exc) from None
    except BaseException:
        os.close(fd)
        raise


def _regular(path: Path, mode: int) -> bool:
    if stat.S_ISDIR(mode):
        raise InstanceFileError(f"{path}: is a directory, not an instance file")
    return stat.S_ISREG(mode)


def _read_whole(stream: IO[bytes], path: Path) -> bytes:
    """The rest of an open regular file, if the memory available can hold it."""
    try:
        size = os.fstat(stream.fileno()).st_size - stream.tell()
        if size > 1 << 26:  # 64 MiB: below that, not worth asking
            import psutil

            available = psutil.virtual_memory().available
            if size > available:
                raise InstanceFileError(
                    f"{path}: too large to read ({size} bytes, with {available} bytes of "
                    "memory available)")
        return stream.read()
    except OSError as exc:
        raise _os_error(path, exc) from None


def _os_error(path: Path, exc: OSError) -> InstanceFileError:
    """One line for a file that can't be opened or read."""
    if isinstance(exc, FileNotFoundError):
        return InstanceFileError(f"{path}: no such file")
    if isinstance(exc, IsADirectoryError):
        return InstanceFileError(f"{path}: is a directory, not an instance file")
    if isinstance(exc, PermissionError):
        return InstanceFileError(f"{path}: permission denied")
    reason = exc.strerror or type(exc).__name__
    return InstanceFileError(f"{path}: cannot read it ({reason})")
