"""abraxas synapse tables: rows over fixed geometric offsets.

Every neuron's outgoing synapses are one row of ``K = 3 · D² · cells``
slots, ``D = 2 · dendrite + 1``. Slot

    k = ((p · D + dy + dendrite) · D + dx + dendrite) · cells + c

reaches the neuron ``c`` of the column at offset ``(dx, dy)`` in the same
layer (``p = 0``, lateral), in the next layer (``p = 1``, forward) or in
the layer before (``p = 2``, feedback); a slot whose target falls off the
sheet, outside the layers, or on the source itself is empty (``-1``). The delay of a slot depends only on its offset,
``1 + min(axon − 1, max(|dx|, |dy|))``, so one ``[K]`` vector serves every
row, and delivering a spike reads one contiguous row. Input channels have
their own table: channel ``i`` reaches every neuron of the first layer,
with delay 1.

Potentiation needs the other direction, a neuron's incoming synapses: row
``j`` of the incoming tables lists ``inputs + K`` positions in the flat
weight buffer (input weights first, then neuron weights) and the source of
each (input channels ``0..inputs−1``, then neuron ``s`` as ``inputs + s``).

The tables are a function of the geometry alone, rebuilt at load and never
saved; growing an agent re-indexes its weights by (neuron, offset).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hera_family_abraxas import layouts

# Rows of the tables built at once: bounds the temporaries for large sheets.
_CHUNK = 1 << 14


@dataclass(frozen=True)
class Slots:
    """The ``K`` outgoing slots of a neuron row: projection, offsets, target cell."""

    projection: torch.Tensor  # 0 lateral, 1 forward, 2 feedback
    layer_step: torch.Tensor  # the target's layer minus the source's: 0, +1, -1
    dy: torch.Tensor
    dx: torch.Tensor
    cell: torch.Tensor
    delay: torch.Tensor       # int32 [K]


def slots(d: dict[str, Any], device: torch.device | str = "cpu") -> Slots:
    """The slot layout of ``d`` (see the module docstring)."""
    r, cells = d["dendrite"], d["cells"]
    span = 2 * r + 1
    k = torch.arange(layouts.slots_per_row(d), device=device)
    cell = k % cells
    dx = (k // cells) % span - r
    dy = (k // (cells * span)) % span - r
    projection = k // (cells * span * span)
    layer_step = torch.where(projection == 2, -1, projection)
    delay = 1 + torch.maximum(dx.abs(), dy.abs()).clamp(max=d["axon"] - 1)
    return Slots(projection, layer_step, dy, dx, cell, delay.to(torch.int32))


def coordinates(d: dict[str, Any], n: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(layer, y, x, cell)`` of neuron numbers ``n``."""
    cells, w, h = d["cells"], d["width"], d["height"]
    return n // (cells * w * h), (n // (cells * w)) % h, (n // cells) % w, n % cells


def neuron_index(d: dict[str, Any], layer, y, x, cell) -> torch.Tensor:
    """The neuron number of ``(layer, y, x, cell)`` in the sheet of ``d``."""
    return ((layer * d["height"] + y) * d["width"] + x) * d["cells"] + cell


def _across(d: dict[str, Any], s: Slots, n: torch.Tensor, sign: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For neurons ``n`` (a column) and every slot: the neuron at the slot's
    offset (``sign`` +1: the slot's target; −1: the source whose slot of
    this offset reaches ``n``), in the slot's cell; whether it exists; and
    the cells of ``n``."""
    layer, y, x, cell = coordinates(d, n)
    ol, oy, ox = layer + sign * s.layer_step, y + sign * s.dy, x + sign * s.dx
    valid = ((ol >= 0) & (ol < d["depth"]) & (oy >= 0) & (oy < d["height"]) & (ox >= 0)
             & (ox < d["width"]))
    valid &= ~((s.projection == 0) & (s.dy == 0) & (s.dx == 0) & (s.cell == cell))
    return neuron_index(d, ol, oy, ox, s.cell), valid, cell


def targets(d: dict[str, Any], device: torch.device | str = "cpu") -> torch.Tensor:
    """int32 ``[neurons, K]``: the target of every outgoing slot, ``-1`` if empty."""
    s = slots(d, device)
    n_all = layouts.neuron_count(d)
    out = torch.empty(n_all, s.delay.numel(), dtype=torch.int32, device=device)
    for start in range(0, n_all, _CHUNK):
        n = torch.arange(start, min(n_all, start + _CHUNK), device=device)[:, None]
        target, valid, _ = _across(d, s, n, +1)
        out[start:start + n.shape[0]] = torch.where(valid, target, -1)
    return out


def input_targets(d: dict[str, Any], device: torch.device | str = "cpu") -> torch.Tensor:
    """int32 ``[inputs, first-layer neurons]``: every channel reaches every
    neuron of the first layer."""
    first = layouts.first_layer_size(d)
    return torch.arange(first, dtype=torch.int32, device=device).expand(d["inputs"], first).contiguous()


def incoming(d: dict[str, Any], device: torch.device | str = "cpu"
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, source)``, each ``[neurons, inputs + K]``: for every neuron
    its incoming synapses as flat positions in the weight buffer (int32, or
    int64 when the buffer has 2**31 or more entries; ``-1`` for none) and
    their sources (int32: channel ``i``, or ``inputs + s`` for neuron ``s``)."""
    s = slots(d, device)
    inputs = d["inputs"]
    n_all, first, k_all = layouts.neuron_count(d), layouts.first_layer_size(d), s.delay.numel()
    input_size = inputs * first
    wide = input_size + n_all * k_all >= 2 ** 31
    dtype = torch.int64 if wide else torch.int32
    weight = torch.empty(n_all, inputs + k_all, dtype=dtype, device=device)
    source = torch.empty(n_all, inputs + k_all, dtype=torch.int32, device=device)
    channel = torch.arange(inputs, device=device)
    # Incoming slot m = ((p·D + dy)·D + dx)·cells + c_source mirrors the
    # outgoing slot of the same offset with the target's cell.
    m = torch.arange(k_all, device=device)
    for start in range(0, n_all, _CHUNK):
        j = torch.arange(start, min(n_all, start + _CHUNK), device=device)[:, None]
        rows = slice(start, start + j.shape[0])
        from_input = (j < first) & (channel >= 0)
        weight[rows, :inputs] = torch.where(from_input, channel * first + j, -1)
        source[rows, :inputs] = torch.where(from_input, channel, -1)
        neuron, valid, cell = _across(d, s, j, -1)
        slot = m - s.cell + cell
        weight[rows, inputs:] = torch.where(valid, input_size + neuron * k_all + slot, -1)
        source[rows, inputs:] = torch.where(valid, inputs + neuron, -1)
    return weight, source
