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

from hera import huge_pages
from hera_family_abraxas import layouts

# Table entries built at once: a few MiB of temporaries, which stay in the
# cache and in the allocator's hands (larger ones cost a page fault per page,
# every chunk: most of a minute for big's 900 million entries).
_ENTRIES_AT_ONCE = 1 << 20


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


def _chunks(d: dict[str, Any], k_all: int, device: torch.device | str,
            rows: torch.Tensor | None = None):
    """``(at, n)``: consecutive pieces ``n`` (int64 neuron numbers) of
    ``rows`` (default: every neuron), a few at a time, and the slice of the
    table they fill."""
    count = layouts.neuron_count(d) if rows is None else rows.numel()
    step = max(1, _ENTRIES_AT_ONCE // max(1, k_all))
    for start in range(0, count, step):
        stop = min(count, start + step)
        n = torch.arange(start, stop, device=device) if rows is None else rows[start:stop]
        yield slice(start, stop), n


def _offsets(d: dict[str, Any], s: Slots, sign: int) -> torch.Tensor:
    """int64 ``[K]``: the neuron at slot ``k``'s offset (``sign`` +1: its
    target; −1: the source whose slot of that offset reaches us), less the
    first neuron of our column. A neuron's number is its column's first
    neuron plus its cell, so the whole row is one broadcast add."""
    h, w, cells = d["height"], d["width"], d["cells"]
    return sign * ((s.layer_step * h + s.dy) * w + s.dx) * cells + s.cell


def _validity(d: dict[str, Any], s: Slots, sign: int):
    """Which slots of a row exist, as lookups by the row's coordinates:
    bool ``[depth, K]``, ``[height, K]``, ``[width, K]`` (the slot's offset
    stays on the sheet from that layer, row, column)."""
    device = s.dy.device
    out = []
    for size, step in ((d["depth"], s.layer_step), (d["height"], s.dy), (d["width"], s.dx)):
        at = torch.arange(size, device=device)[:, None] + sign * step
        out.append((at >= 0) & (at < size))
    return out


def _valid_rows(d: dict[str, Any], s: Slots, lookups, n: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """bool ``[rows, K]``: the slots of neurons ``n`` that exist (on the
    sheet, and not the neuron itself); and the cells of ``n``."""
    layer, y, x, cell = coordinates(d, n)
    by_layer, by_y, by_x = lookups
    valid = by_layer[layer] & by_y[y] & by_x[x]
    # the one slot of offset (0, 0) in the same layer and cell: itself
    span = 2 * d["dendrite"] + 1
    own = (d["dendrite"] * span + d["dendrite"]) * d["cells"] + cell
    valid[torch.arange(n.numel(), device=n.device), own] = False
    return valid, cell


def targets(d: dict[str, Any], device: torch.device | str = "cpu",
            rows: torch.Tensor | None = None) -> torch.Tensor:
    """int32 ``[neurons, K]``: the target of every outgoing slot, ``-1`` if
    empty; only the rows of neurons ``rows`` (int64), in that order, when
    given (a rank's part of the sheet)."""
    s = slots(d, device)
    k_all = s.delay.numel()
    count = layouts.neuron_count(d) if rows is None else rows.numel()
    out = huge_pages.advise_tensor(torch.empty(count, k_all, dtype=torch.int32, device=device))
    offsets = _offsets(d, s, +1).to(torch.int32)
    lookups = _validity(d, s, +1)
    for at, n in _chunks(d, k_all, device, rows):
        valid, cell = _valid_rows(d, s, lookups, n)
        column = (n - cell).to(torch.int32)[:, None]
        out[at] = torch.where(valid, column + offsets, -1)
    return out


def input_targets(d: dict[str, Any], device: torch.device | str = "cpu") -> torch.Tensor:
    """int32 ``[inputs, first-layer neurons]``: every channel reaches every
    neuron of the first layer."""
    first = layouts.first_layer_size(d)
    return torch.arange(first, dtype=torch.int32, device=device).expand(d["inputs"], first).contiguous()


def incoming(d: dict[str, Any], device: torch.device | str = "cpu",
             rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight, source)``, each ``[neurons, inputs + K]``: for every neuron
    its incoming synapses as flat positions in the weight buffer (int32, or
    int64 when the buffer has 2**31 or more entries; ``-1`` for none) and
    their sources (int32: channel ``i``, or ``inputs + s`` for neuron ``s``);
    only the rows of neurons ``rows`` (int64), in that order, when given."""
    s = slots(d, device)
    inputs = d["inputs"]
    n_all, first, k_all = layouts.neuron_count(d), layouts.first_layer_size(d), s.delay.numel()
    input_size = inputs * first
    wide = input_size + n_all * k_all >= 2 ** 31
    dtype = torch.int64 if wide else torch.int32
    count = n_all if rows is None else rows.numel()
    weight = huge_pages.advise_tensor(
        torch.empty(count, inputs + k_all, dtype=dtype, device=device))
    source = huge_pages.advise_tensor(
        torch.empty(count, inputs + k_all, dtype=torch.int32, device=device))
    channel = torch.arange(inputs, device=device)
    # Incoming slot m = ((p·D + dy)·D + dx)·cells + c_source mirrors the
    # outgoing slot of the same offset with the target's cell: the source's
    # weight sits at input_size + source·K + m − c_source + c_target, which
    # is a part of the row (its column, its cell) plus a part of the slot.
    m = torch.arange(k_all, device=device)
    offsets = _offsets(d, s, -1)
    lookups = _validity(d, s, -1)
    # int32 where every sum, even of an empty slot's parts, stays below 2**31
    exact = torch.int32 if input_size + 2 * n_all * k_all + k_all < 2 ** 31 else torch.int64
    weight_part = (offsets * k_all + m - s.cell).to(exact)
    source_part = offsets.to(exact)
    for at, j in _chunks(d, k_all, device, rows):
        from_input = (j[:, None] < first) & (channel >= 0)
        weight[at, :inputs] = torch.where(from_input, channel * first + j[:, None], -1)
        source[at, :inputs] = torch.where(from_input, channel, -1)
        valid, cell = _valid_rows(d, s, lookups, j)
        column = j - cell
        weight[at, inputs:] = torch.where(
            valid, (input_size + column * k_all + cell).to(exact)[:, None] + weight_part, -1)
        source[at, inputs:] = torch.where(valid, (inputs + column).to(exact)[:, None]
                                            + source_part, -1)
    return weight, source
