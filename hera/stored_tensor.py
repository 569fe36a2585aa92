"""One tensor of an instance file, whichever way it came: decoded from a
version-2 file (numpy memory, no torch), still encoded in a version-1 file,
or handed over by a family to be written.

Each gives its dtype and shape, its raw little-endian bytes for the writer
(:meth:`raw`), and a torch tensor (:meth:`tensor`); a decoded one gives a
tensor over its own memory, with no copy.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from hera import tensor_stream
from hera.errors import InstanceFileError

if TYPE_CHECKING:  # pragma: no cover
    import torch


class StoredTensor:
    """A tensor as an instance file holds it."""

    dtype: str
    shape: list[int]

    def raw(self) -> np.ndarray:
        """The tensor's bytes: flat, contiguous uint8, little-endian."""
        raise NotImplementedError

    def layout(self) -> tensor_stream.Layout:
        """How the writer stores it (looking at its bytes if it must)."""
        return tensor_stream.choose_layout(self.dtype, list(self.shape), self.raw())

    def tensor(self) -> "torch.Tensor":
        """The tensor, on the CPU."""
        raise NotImplementedError


class Decoded(StoredTensor):
    """Decoded from a version-2 file into memory of its own; an all-zero or
    sparse tensor only once it is asked for.

    :meth:`tensor` shares that memory: a change to the tensor in place is a
    change to what this file would write.
    """

    def __init__(self, dtype: str, shape: list[int], decoded: np.ndarray | bytes,
                 encoding: str = "base64") -> None:
        self.dtype, self.shape = dtype, shape
        self._buffer = decoded if isinstance(decoded, np.ndarray) else None
        self._records = decoded if isinstance(decoded, bytes) else b""
        self._layout = tensor_stream.Layout(
            dtype, shape, encoding,
            None if encoding != "sparse" else len(decoded) // _record_size(dtype, shape))

    def layout(self) -> tensor_stream.Layout:
        if self._buffer is None and self._layout.encoding == "zeros":
            return self._layout  # written as zeros again, never made
        return super().layout()

    def raw(self) -> np.ndarray:
        if self._buffer is None:
            self._buffer = tensor_stream.materialize(self._layout, self._records)
            self._records = b""
        return self._buffer

    def tensor(self) -> "torch.Tensor":
        import torch

        dtype = getattr(torch, self.dtype)
        buffer = self.raw()
        if not buffer.size:
            return torch.empty(self.shape, dtype=dtype)
        flat = torch.from_numpy(buffer).view(dtype)
        if sys.byteorder != "little" and dtype.itemsize > 1:  # pragma: no cover
            flat = _swapped(flat)
        return flat.reshape(self.shape)


def _record_size(dtype: str, shape: list[int]) -> int:
    return tensor_stream.index_size(math.prod(shape)) + tensor_stream.ITEMSIZE[dtype]


class Encoded(StoredTensor):
    """An entry of a version-1 file, checked, decoded when asked for."""

    def __init__(self, name: str, entry: dict[str, Any]) -> None:
        self.name, self.entry = name, entry
        self.dtype, self.shape = entry["dtype"], entry["shape"]

    def raw(self) -> np.ndarray:
        return _raw_of(self.tensor())

    def tensor(self) -> "torch.Tensor":
        from hera import tensor_codec

        return tensor_codec.decode_tensor(self.name, self.entry)


class Given(StoredTensor):
    """A tensor a family handed over (any device, any layout)."""

    def __init__(self, name: str, tensor: "torch.Tensor") -> None:
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype not in tensor_stream.ITEMSIZE:
            raise InstanceFileError(f"cannot store tensor {name!r}: dtype {dtype} is not storable")
        self.dtype, self.shape, self.given = dtype, list(tensor.shape), tensor

    def layout(self) -> tensor_stream.Layout:
        if _expanded_zero(self.given):
            return tensor_stream.Layout(self.dtype, list(self.shape), "zeros")
        return super().layout()

    def raw(self) -> np.ndarray:
        return _raw_of(self.given)

    def tensor(self) -> "torch.Tensor":
        return self.given


def _expanded_zero(tensor: "torch.Tensor") -> bool:
    """Whether ``tensor`` is a few zeros expanded to its shape (a family's way
    of handing over a large all-zero tensor without its memory)."""
    if tensor.numel() == 0 or 0 not in tensor.stride() or tensor.device.type == "meta":
        return False
    import torch

    storage = tensor.untyped_storage()
    if storage.nbytes() >= tensor.numel() * tensor.element_size():
        return False
    whole = torch.empty(0, dtype=torch.uint8, device=tensor.device).set_(storage)
    return not bool(whole.any())


def _raw_of(tensor: "torch.Tensor") -> np.ndarray:
    """Flat little-endian bytes of ``tensor``, with no copy where it is
    already a contiguous CPU tensor."""
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() and flat.stride(0) != 1:  # a size-1 tensor may keep an odd stride
        flat = torch.empty(flat.numel(), dtype=flat.dtype).copy_(flat)
    if not flat.numel():
        return np.zeros(0, dtype=np.uint8)
    if sys.byteorder != "little" and flat.element_size() > 1:  # pragma: no cover
        flat = _swapped(flat)
    return flat.view(torch.uint8).numpy()


def _swapped(flat: "torch.Tensor") -> "torch.Tensor":  # pragma: no cover - big-endian hosts
    import torch

    size = flat.element_size()
    return flat.view(torch.uint8).reshape(-1, size).flip(1).reshape(-1).view(flat.dtype)
