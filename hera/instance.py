"""The instance file: one versioned JSON document per agent.

Layout on disk (one line per section, so :func:`read_header` can read the
metadata of a large file without parsing its tensors)::

    {"format":"hera-instance","version":1,
    "meta":{...},
    "definition":{...},
    "checksum":"<sha256 of meta, definition, state values, tensor checksums>",
    "tensors":{"name":{...encoded tensor...},...},
    "state":null | {"values":{...},"tensors":{...}}
    }

See ``docs/instance-file.md`` for every field.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from hera import atomic, finite_json, identity, tensor_codec
from hera.errors import InstanceFileError
from hera.finite_json import NonFiniteNumber

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from hera.hooks.types import DynamicState

FORMAT = "hera-instance"
VERSION = 1

#: Metadata keys every file has, with their JSON types.
META_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "callsign": str,
    "family": dict,
    "layout": str,
    "created": str,
    "seed": int,
    "steps": int,
    "incarnation": int,
    "hera_version": str,
}

#: The seed is an unsigned 63-bit number (families hand it to generators
#: that take a signed 64-bit one).
SEED_LIMIT = 1 << 63

# Never NaN or Infinity: they aren't JSON, and hera's reader refuses them.
_COMPACT = {"separators": (",", ":"), "ensure_ascii": True, "allow_nan": False}


def _dumps(value: Any, section: str) -> str:
    """Compact JSON of one section, refusing non-finite numbers."""
    try:
        return json.dumps(value, **_COMPACT)
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
    """An agent as stored: metadata, definition, encoded tensors, state.

    Tensors stay encoded until asked for, so reading and checking a file
    never imports torch.
    """

    meta: dict[str, Any]
    definition: dict[str, Any]
    tensor_entries: dict[str, dict[str, Any]]
    state_entries: dict[str, dict[str, Any]] | None = None
    state_values: dict[str, Any] | None = None

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
        return self.state_entries is not None

    # -- tensors -------------------------------------------------------------

    def tensors(self) -> "dict[str, torch.Tensor]":
        """The learned parameters as CPU tensors."""
        return {k: tensor_codec.decode_tensor(k, e) for k, e in self.tensor_entries.items()}

    def state(self) -> "DynamicState | None":
        """The dynamic state, or ``None`` for a dead instance."""
        from hera.hooks.types import DynamicState

        if self.state_entries is None:
            return None
        tensors = {k: tensor_codec.decode_tensor(k, e) for k, e in self.state_entries.items()}
        return DynamicState(tensors=tensors, values=dict(self.state_values or {}))

    def set_tensors(
        self, tensors: "dict[str, torch.Tensor]", state: "DynamicState | None"
    ) -> None:
        """Replace parameters and state with newly encoded ones."""
        self.meta["alive"] = state is not None
        self.tensor_entries = {k: tensor_codec.encode_tensor(t) for k, t in tensors.items()}
        if state is None:
            self.state_entries, self.state_values = None, None
        else:
            self.state_entries = {k: tensor_codec.encode_tensor(t) for k, t in state.tensors.items()}
            self.state_values = dict(state.values)

    # -- checksums -----------------------------------------------------------

    def checksum(self) -> str:
        """The document checksum: covers everything but the tensor data,
        which each tensor's own checksum covers."""
        summary = {
            "meta": self.meta,
            "definition": self.definition,
            "tensors": {k: e.get("sha256") for k, e in self.tensor_entries.items()},
            "state": None
            if self.state_entries is None
            else {
                # chunks() writes missing values as {}; checksum them the same way.
                "values": self.state_values or {},
                "tensors": {k: e.get("sha256") for k, e in self.state_entries.items()},
            },
        }
        try:
            text = json.dumps(summary, sort_keys=True, **_COMPACT)
        except ValueError:
            self._check_finite()
            raise
        return hashlib.sha256(text.encode()).hexdigest()

    def _check_finite(self) -> None:
        """Raise :class:`InstanceFileError` naming the first section that
        holds a non-finite number."""
        _dumps(self.meta, "section 'meta'")
        _dumps(self.definition, "section 'definition'")
        _dumps(self.state_values or {}, "section 'state' (its values)")

    # -- writing -------------------------------------------------------------

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, section by section.

        Raises :class:`InstanceFileError`, before the first byte, if a
        section holds NaN or an infinity.
        """
        meta = _dumps(self.meta, "section 'meta'")
        definition = _dumps(self.definition, "section 'definition'")
        if self.state_entries is not None:
            values = _dumps(self.state_values or {}, "section 'state' (its values)")
        checksum = self.checksum()
        yield f'{{"format":"{FORMAT}","version":{VERSION},\n'.encode()
        yield f'"meta":{meta},\n'.encode()
        yield f'"definition":{definition},\n'.encode()
        yield f'"checksum":"{checksum}",\n'.encode()
        yield from _entries_chunks(self.tensor_entries, "")
        if self.state_entries is None:
            yield b',\n"state":null\n}\n'
        else:
            yield f',\n"state":{{"values":{values},\n'.encode()
            yield from _entries_chunks(self.state_entries, "state.")
            yield b"}\n}\n"

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
            data = _read_whole(stream, path)
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: bytes, where: str = "<instance>") -> "InstanceFile":
        """Parse and check the bytes of a file (see :meth:`read`)."""
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
            return cls._from_document(doc)
        except InstanceFileError as exc:
            raise InstanceFileError(f"{where}: {exc.message}") from None
        except RecursionError:
            # Nesting that json.loads took but the checksum's json.dumps,
            # called a few frames deeper, can't.
            raise InstanceFileError(f"{where}: not valid JSON (a number or nesting too large)") from None

    @classmethod
    def _from_document(cls, doc: Any) -> "InstanceFile":
        _check_format(doc)
        for key in ("meta", "definition", "checksum", "tensors", "state"):
            if key not in doc:
                raise InstanceFileError(f"missing section {key!r}")
        meta = doc["meta"]
        _check_meta(meta)
        if not isinstance(doc["definition"], dict):
            raise InstanceFileError("section 'definition' is not an object")
        tensors = doc["tensors"]
        if not isinstance(tensors, dict):
            raise InstanceFileError("section 'tensors' is not an object")
        for name, entry in tensors.items():
            tensor_codec.check_entry(name, entry)
        state = doc["state"]
        state_entries = state_values = None
        if state is not None:
            if not (isinstance(state, dict) and isinstance(state.get("tensors"), dict)
                    and isinstance(state.get("values"), dict)):
                raise InstanceFileError("section 'state' is malformed")
            for name, entry in state["tensors"].items():
                tensor_codec.check_entry(f"state.{name}", entry)
            state_entries, state_values = state["tensors"], state["values"]
        instance = cls(meta, doc["definition"], tensors, state_entries, state_values)
        if instance.checksum() != doc["checksum"]:
            raise InstanceFileError("checksum mismatch: the file is damaged or was edited")
        return instance


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
        _check_format(head)
        _check_meta(meta)
    except InstanceFileError as exc:
        raise InstanceFileError(f"{path}: {exc.message}") from None
    return Header(path, meta)


def _entries_chunks(entries: dict[str, dict[str, Any]], prefix: str) -> Iterator[bytes]:
    yield b'"tensors":{'
    for i, (name, entry) in enumerate(entries.items()):
        yield f'{"," if i else ""}\n{json.dumps(name, ensure_ascii=True)}:'.encode()
        yield _dumps(entry, f"tensor {prefix + name!r}").encode()
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


def _check_format(doc: Any) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InstanceFileError("not a hera instance file")
    version = doc.get("version")
    if type(version) is not int:
        raise InstanceFileError("instance file has no format version")
    if version != VERSION:
        newer = "a newer" if version > VERSION else "an older"
        raise InstanceFileError(
            f"instance file format version {version} is {newer} version than this hera reads ({VERSION})"
        )


def _check_meta(meta: Any) -> None:
    if not isinstance(meta, dict):
        raise InstanceFileError("section 'meta' is not an object")
    for key, kind in META_FIELDS.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InstanceFileError(f"meta field {key!r} is missing or malformed")
    if not identity.is_canonical_id(meta["id"]):
        raise InstanceFileError(f"meta field 'id' is not a UUID: {meta['id']!r}")
    if not identity.is_valid_callsign(meta["callsign"]):
        raise InstanceFileError(f"meta field 'callsign' is malformed: {meta['callsign']!r}")
    if not 0 <= meta["seed"] < SEED_LIMIT:
        raise InstanceFileError("meta field 'seed' is out of range (0 <= seed < 2**63)")
    for key in ("steps", "incarnation"):
        if meta[key] < 0:
            raise InstanceFileError(f"meta field {key!r} is negative")
    family = meta["family"]
    if not (isinstance(family.get("name"), str) and isinstance(family.get("version"), str)
            and type(family.get("data_format")) is int):
        raise InstanceFileError("meta field 'family' is malformed")
