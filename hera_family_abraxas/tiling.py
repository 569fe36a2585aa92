"""How an abraxas sheet is split over ranks: tiles of whole columns.

The sheet's ``height x width`` columns, numbered ``q = y * width + x``, are
cut into ``ranks`` contiguous runs of ``q``; rank ``r`` owns every neuron
(all layers, all cells) of its run. A rank owns the *incoming* synapses of
its neurons, kept in the outgoing layout (rows of ``K`` slots) for every
source whose row can reach it: its *halo*, the columns within dendrite
reach of its own (its own included). Spikes of halo neurons that other
ranks own are the only ones it must be told of; since at most one neuron
of a layer's column fires a step (winner-take-all), a spike is told as the
winner's cell of a *group* (a column's layer, ``g = layer * columns + q``,
whose neurons are ``g * cells + c``).

Every rank works the whole tiling out from the definition alone: no table
is sent.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch

from hera.errors import HeraError


class Tiling:
    """The split of sheet ``d`` over ``ranks`` ranks."""

    def __init__(self, d: dict[str, Any], ranks: int):
        self.d = d
        self.ranks = ranks
        self.height, self.width = d["height"], d["width"]
        self.columns = self.height * self.width
        self.cells, self.depth = d["cells"], d["depth"]
        if not 1 <= ranks <= self.columns:
            raise HeraError(f"abraxas splits a sheet by columns: its {self.width}x{self.height} "
                            f"columns go over at most {self.columns} ranks, not {ranks}")
        #: ``(first, end)`` column of each rank's tile
        self.bounds = [(r * self.columns // ranks, (r + 1) * self.columns // ranks)
                       for r in range(ranks)]
        owner = torch.empty(self.columns, dtype=torch.int64)
        for r, (first, end) in enumerate(self.bounds):
            owner[first:end] = r
        #: the rank that owns each column
        self.owner_of_column = owner

    def tile_columns(self, r: int) -> int:
        """How many columns rank ``r`` owns."""
        first, end = self.bounds[r]
        return end - first

    def owned(self, r: int) -> torch.Tensor:
        """int64: the neurons rank ``r`` owns, in its local order (layer by
        layer, each layer's part contiguous in the sheet's numbering)."""
        first, end = self.bounds[r]
        groups = torch.cat([layer * self.columns + torch.arange(first, end)
                            for layer in range(self.depth)])
        return self._neurons(groups)

    def halo_groups(self, r: int) -> torch.Tensor:
        """int64, increasing: the groups whose neurons can reach a neuron of
        rank ``r`` (its own included)."""
        return self._halo_groups[r]

    def halo(self, r: int) -> torch.Tensor:
        """int64, increasing: the neurons of :meth:`halo_groups`."""
        return self._neurons(self.halo_groups(r))

    def exports(self, r: int) -> torch.Tensor:
        """int64, increasing: rank ``r``'s groups that lie in another rank's
        halo: the groups whose winners it tells the others every step."""
        return self._exports[r]

    @cached_property
    def widest_export(self) -> int:
        """The most groups any rank tells a step (every rank sends that many
        entries: a collective takes one size)."""
        return max(int(e.numel()) for e in self._exports)

    def group_owner(self, groups: torch.Tensor) -> torch.Tensor:
        """The rank that owns each of ``groups``."""
        return self.owner_of_column[groups % self.columns]

    def neuron_owner(self, neurons: torch.Tensor) -> torch.Tensor:
        """The rank that owns each of ``neurons``."""
        return self.group_owner(neurons // self.cells)

    def _neurons(self, groups: torch.Tensor) -> torch.Tensor:
        return (groups[:, None] * self.cells + torch.arange(self.cells)).reshape(-1)

    @cached_property
    def _halo_groups(self) -> list[torch.Tensor]:
        reach = self.d["dendrite"]
        found = []
        for first, end in self.bounds:
            mine = torch.zeros(self.columns)
            mine[first:end] = 1
            near = torch.nn.functional.max_pool2d(
                mine.view(1, 1, self.height, self.width), 2 * reach + 1, stride=1,
                padding=reach).view(-1) > 0
            columns = near.nonzero().view(-1)
            found.append(torch.cat([layer * self.columns + columns
                                    for layer in range(self.depth)]))
        return found

    @cached_property
    def _exports(self) -> list[torch.Tensor]:
        wanted = [torch.zeros(self.depth * self.columns, dtype=torch.bool)
                  for _ in range(self.ranks)]
        for r in range(self.ranks):
            groups = self.halo_groups(r)
            owners = self.group_owner(groups)
            for other, others in enumerate(wanted):
                if other != r:
                    others[groups[owners == other]] = True
        return [mask.nonzero().view(-1) for mask in wanted]
