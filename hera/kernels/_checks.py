"""Argument checks shared by the ops' dispatchers: one clear ValueError per
mistake, and nothing that waits for the device (no reading of values)."""

from __future__ import annotations

from typing import Any


def expect(name: str, tensor: Any, dtypes: tuple, shape: tuple | None = None,
           device: Any = None) -> None:
    """Check that ``tensor`` is a tensor of one of ``dtypes``, of ``shape``
    (``None`` entries match any size) and on ``device``.

    :raises ValueError: naming the argument and what was expected.
    """
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, not {type(tensor).__name__}")
    if tensor.dtype not in dtypes:
        wanted = " or ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise ValueError(f"{name} must be {wanted}, not {str(tensor.dtype).removeprefix('torch.')}")
    if shape is not None:
        if tensor.dim() != len(shape) or any(
                want is not None and got != want for got, want in zip(tensor.shape, shape)):
            wanted = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise ValueError(f"{name} must have shape {wanted}, not {list(tensor.shape)}")
    if device is not None and tensor.device != device:
        raise ValueError(f"{name} is on {tensor.device}, the other tensors on {device}")


def expect_contiguous(**tensors: Any) -> None:
    """The Triton launchers index flat memory: refuse strided views (state
    tensors are updated in place, so a silent copy would lose the update)."""
    for name, tensor in tensors.items():
        if not tensor.is_contiguous():
            raise ValueError(f"{name} must be contiguous for the triton backend")
