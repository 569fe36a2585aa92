"""An abraxas sheet split over the ranks of a torch.distributed group.

Each rank steps the neurons of its tile (:mod:`hera_family_abraxas.tiling`)
with their state, and owns their incoming synapses, stored as the rows of
its halo's sources with every target outside the tile masked off. So a
rank's tables are the single-process tables restricted to its part, and
the same operations (``hera.kernels``' references, or its kernels on a GPU)
give the same bits: potentiation, depression and synaptic scaling of a
neuron touch only its own incoming synapses, and the fixed-point delivery
ring adds integers.

**One exchange per minimum-delay window.** A spike crossing a tile edge
travels at least one column, so it arrives ``d_min = min(2, axon)`` steps
after it was fired. A step splits into

* *advance* (input draws, noise, membranes, winner-take-all, thresholds)
  of the tile's neurons;
* *learn*: potentiation of the tile's neurons that fired, then depression
  and delivery by the sources the rank fires itself (its neurons, the
  input channels every rank draws alike);
* *complete*: depression and delivery by the halo's remote sources that
  fired, then the traces.

Learning at ``t`` needs the traces of ``t - 1``, so a window of two steps
runs advance(t), learn(t), advance(t + 1), *exchange*, complete(t),
learn(t + 1), complete(t + 1): advance(t + 1) reads only what arrives
after one step, which no remote spike can reach. The exchange is one
``all_gather`` of the winners (cell + 1, 0 for none) of every group another
rank's halo holds, for both steps. Each :meth:`ShardedSheet.run` ends on a
complete step, so a snapshot is always whole.

Every rank calls every method in the same order (hera's rank 0 tells its
workers what to call); the methods that answer (``snapshot``, outputs,
activity, probes) collect on rank 0 and return ``None`` elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy
import torch
import torch.distributed as dist

from hera.errors import InstanceFileError
from hera.hooks.types import DynamicState, Snapshot
from hera.kernels.counter_random.keys import stream_key
from hera_family_abraxas import backends, connectivity, layouts
from hera_family_abraxas.model import LEARNED, NOISE_STREAM, STATE, Sheet
from hera_family_abraxas.tiling import Tiling


@dataclass
class _Fired:
    """What one advanced step fired, kept until the step is complete."""

    spikes: torch.Tensor        # float [tile neurons]
    input_spikes: torch.Tensor  # float [inputs]
    fired: torch.Tensor         # int64: tile-local neurons that fired
    fired_inputs: torch.Tensor  # int64: input channels that spiked
    t: int                      # the step


class ShardedSheet(Sheet):
    """Rank ``shard.rank``'s part of an abraxas sheet. Rank 0 is given the
    whole agent (``tensors``, ``state``) and sends every other rank its
    part; the others are given ``None`` for both."""

    def __init__(self, definition: dict[str, Any], tensors: dict[str, torch.Tensor] | None,
                 state: DynamicState | None, device: str, seed: int, shard: Any):
        layouts.check_definition(definition)
        d = self.definition = dict(definition)
        self.device = dev = torch.device(device)
        self.rank, self.ranks, self.group = shard.rank, shard.ranks, shard.group
        self.tiling = tiling = Tiling(d, self.ranks)
        # no compiled step for a part of the sheet: the kernels' references
        # on a CPU, their Triton kernels (or references, if asked) on a GPU
        asked = backends.requested()
        self.backend = "torch" if dev.type == "cpu" or asked in ("torch", "cpp") else \
            backends.choose(dev, asked)[0]
        self._compiled = None
        self._pick_operations()
        self._rate_scratch = numpy.empty(int(d["inputs"]), dtype=numpy.float64)
        self._rate_scratch_at = self._rate_scratch.ctypes.data
        self._rate_view = None

        self.inputs, self.neurons = d["inputs"], layouts.neuron_count(d)
        self.sources = self.inputs + self.neurons
        self.axon, self.cells, self.seed = d["axon"], d["cells"], seed
        self.output_start = self.neurons - layouts.output_size(d)
        k = layouts.slots_per_row(d)
        first_column, _ = tiling.bounds[self.rank]
        self.tile = tiling.tile_columns(self.rank) * self.cells  # neurons per layer of the tile
        self.first_input_target = first_column * self.cells
        self.owned = tiling.owned(self.rank)
        self.halo = tiling.halo(self.rank)
        n_own, n_halo = self.owned.numel(), self.halo.numel()

        # where each neuron of the sheet is in this rank's tile and halo
        in_halo = torch.full((self.neurons,), -1, dtype=torch.int64)
        in_halo[self.halo] = torch.arange(n_halo)
        in_tile = torch.full((self.neurons,), -1, dtype=torch.int64)
        in_tile[self.owned] = torch.arange(n_own)
        self.halo_of_owned = in_halo[self.owned].to(dev)

        # the tables of connectivity, restricted to the tile's synapses
        self.targets = torch.empty(n_halo, k, dtype=torch.int32)
        for at, rows in _pieces(self.halo, k):
            reach = connectivity.targets(d, rows=rows)
            self.targets[at] = torch.where(reach >= 0, in_tile[reach.clamp(min=0).long()], -1)
        self.targets = self.targets.to(dev)
        self.delays = connectivity.slots(d, dev).delay
        self.input_targets = torch.arange(self.tile, dtype=torch.int32, device=dev) \
            .expand(self.inputs, self.tile).contiguous()
        self.input_delays = torch.ones(self.tile, dtype=torch.int32, device=dev)
        self.incoming_weight, self.incoming_source = self._incoming(in_halo, k)

        split = self.inputs * self.tile
        self.weight_buffer = torch.empty(split + n_halo * k, device=dev)
        self.input_weights = self.weight_buffer[:split].view(self.inputs, self.tile)
        self.weights = self.weight_buffer[split:].view(n_halo, k)
        self.thresholds = torch.empty(n_own, device=dev)
        self.current = torch.zeros(n_own, device=dev)
        self.noise = torch.empty(n_own, device=dev)
        self.draws = torch.empty(self.inputs, device=dev)
        self._noise_index = self.owned.to(dev)
        self._set_decays()
        self.membrane = torch.zeros(n_own, device=dev)
        self.refractory = torch.zeros(n_own, dtype=torch.int32, device=dev)
        self.pre_trace = torch.zeros(self.inputs + n_halo, device=dev)
        self.post_trace = torch.zeros(n_own, device=dev)
        self.ring = torch.zeros(self.axon + 1, n_own, dtype=torch.int32, device=dev)
        self.input_rates = torch.full((self.inputs,), float(d["input_rate"]), device=dev)
        self.output_counts = torch.zeros(self.tile, dtype=torch.int64, device=dev)
        self.input_spikes = torch.zeros(self.inputs, dtype=torch.uint8, device=dev)
        self.t, self.modulator, self.frozen = 0, 1.0, False
        self._scatter(tensors, state)
        self.activity = torch.zeros(self.inputs + n_own, dtype=torch.int64, device=dev)
        self._given = bool(self.input_spikes.any())
        self._prepare_exchange(in_halo)
        self._kept_here: torch.Tensor | None = None  # the weights this rank sends (_kept)

    # -- the tile's tables ---------------------------------------------------------

    def _pick_operations(self) -> None:
        if self.backend == "torch":
            from hera.kernels.counter_random import reference as random
            from hera.kernels.decay_accumulate import reference as traces
            from hera.kernels.deliver_spikes import reference as delivery
            from hera.kernels.lif_wta_step import reference as neurons
            from hera.kernels.stdp import reference as stdp
        else:
            from hera.kernels.counter_random import reference as random
            from hera.kernels.decay_accumulate import triton_kernel as traces
            from hera.kernels.deliver_spikes import triton_kernel as delivery
            from hera.kernels.lif_wta_step import triton_kernel as neurons
            from hera.kernels.stdp import triton_kernel as stdp
        self._fill_random, self._fill_at = random.fill, random.fill_at
        self._decay_accumulate = traces.decay_accumulate
        self._lif_wta_step = neurons.lif_wta_step
        self._take_slot, self._deliver = delivery.take_slot, delivery.deliver_spikes
        self._potentiate, self._depress = stdp.potentiate_incoming, stdp.depress_rows

    def _incoming(self, in_halo: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The incoming tables of the tile's neurons, pointing into this
        rank's weight buffer and pre traces instead of the sheet's."""
        d = self.definition
        first = layouts.first_layer_size(d)
        sheet_inputs = self.inputs * first
        wide = self.weight_buffer_size(k) >= 2 ** 31
        width = self.inputs + k
        local_weight = torch.empty(self.owned.numel(), width,
                                   dtype=torch.int64 if wide else torch.int32)
        local_source = torch.empty(self.owned.numel(), width, dtype=torch.int32)
        for at, rows in _pieces(self.owned, width):
            weight, source = connectivity.incoming(d, rows=rows)
            weight, source = weight.long(), source.long()
            live = weight >= 0
            from_input = live & (weight < sheet_inputs)
            channel, target = weight // first, weight % first
            row, slot = (weight - sheet_inputs) // k, (weight - sheet_inputs) % k
            halo_row = in_halo[row.clamp(min=0, max=self.neurons - 1)]
            mapped = torch.where(from_input, channel * self.tile + target - self.first_input_target,
                                 self.inputs * self.tile + halo_row * k + slot)
            local_weight[at] = torch.where(live, mapped, -1)
            neuron = (source - self.inputs).clamp(min=0)
            mapped = torch.where(source >= self.inputs, self.inputs + in_halo[neuron], source)
            local_source[at] = torch.where(source >= 0, mapped, -1)
        return local_weight.to(self.device), local_source.to(self.device)

    def weight_buffer_size(self, k: int) -> int:
        """Entries of this rank's flat weight buffer."""
        return self.inputs * self.tile + self.halo.numel() * k

    def _prepare_exchange(self, in_halo: torch.Tensor) -> None:
        """What this rank tells the others each step, and where it finds
        what they tell it."""
        tiling, dev = self.tiling, self.device
        self.exports = tiling.widest_export
        self.spike_dtype = torch.uint8 if self.cells < 255 else torch.int32
        mine = tiling.exports(self.rank)
        first_group = self.owned[::self.cells] // self.cells  # the tile's groups, in local order
        in_tile = torch.full((tiling.depth * tiling.columns,), -1, dtype=torch.int64)
        in_tile[first_group] = torch.arange(first_group.numel())
        self._export_groups = in_tile[mine].to(dev)
        groups = tiling.halo_groups(self.rank)
        owners = tiling.group_owner(groups)
        told = owners != self.rank
        remote_groups, remote_owners = groups[told], owners[told]
        position = torch.empty_like(remote_groups)
        for other in range(self.ranks):
            theirs = remote_owners == other
            position[theirs] = torch.searchsorted(tiling.exports(other), remote_groups[theirs])
        self._told_by = remote_owners.to(dev)
        self._told_at = position.to(dev)
        self._told_first = in_halo[remote_groups * self.cells].to(dev)  # cell 0, in the halo
        self.window = 1 if self.axon < 2 else 2
        #: bytes every rank puts into one exchange's collective per step
        self.bytes_per_step = self.exports * self.spike_dtype.itemsize * self.ranks \
            if self.ranks > 1 and self.exports else 0

    # -- moving the agent between rank 0 and the others -------------------------------

    def _parts(self, r: int) -> list[tuple[str, str, torch.dtype, tuple[int, ...]]]:
        """``(name, kind, dtype, shape)`` of what rank ``r`` holds of each
        tensor, in the order they are sent."""
        tiling, d = self.tiling, self.definition
        n_own = tiling.owned(r).numel()
        tile = tiling.tile_columns(r) * self.cells
        n_halo = tiling.halo(r).numel()
        k = layouts.slots_per_row(d)
        return [("input_weights", "columns", torch.float32, (self.inputs, tile)),
                ("weights", "halo", torch.float32, (n_halo, k)),
                ("thresholds", "tile", torch.float32, (n_own,)),
                ("membrane", "tile", torch.float32, (n_own,)),
                ("refractory", "tile", torch.int32, (n_own,)),
                ("pre_trace", "sources", torch.float32, (self.inputs + n_halo,)),
                ("post_trace", "tile", torch.float32, (n_own,)),
                ("ring", "ring", torch.int32, (self.axon + 1, n_own)),
                ("output_counts", "output", torch.int64, (tile,)),
                ("input_rates", "all", torch.float32, (self.inputs,)),
                ("input_spikes", "all", torch.uint8, (self.inputs,))]

    def _part_of(self, whole: torch.Tensor, kind: str, r: int) -> torch.Tensor:
        """Rank ``r``'s part of a tensor of the whole sheet."""
        tiling = self.tiling
        first, end = tiling.bounds[r]
        if kind == "columns" or kind == "output":
            part = whole[..., first * self.cells:end * self.cells]
        elif kind == "halo":
            part = whole[tiling.halo(r)]
        elif kind == "tile":
            part = whole[tiling.owned(r)]
        elif kind == "ring":
            part = whole[:, tiling.owned(r)]
        elif kind == "sources":
            part = torch.cat([whole[:self.inputs], whole[self.inputs + tiling.halo(r)]])
        else:
            part = whole
        return part.contiguous()

    def _scatter(self, tensors: dict[str, torch.Tensor] | None,
                 state: DynamicState | None) -> None:
        """Rank 0 sends every rank its part of the agent it was given."""
        values: list[Any] = [None]
        if self.rank == 0:
            try:
                self._check_learned(tensors)
                given = {name: tensors[name] for name in LEARNED}
                if state is not None:
                    self._check_state(state)
                    self._restore_values(state)
                    given.update(state.tensors)
                values = [{"fresh": state is None, "t": self.t, "modulator": self.modulator,
                           "frozen": self.frozen}]
            except InstanceFileError as exc:  # every rank refuses it, at once
                values = [{"refused": exc.message}]
        dist.broadcast_object_list(values, src=self._root, group=self.group)
        told = values[0]
        if "refused" in told:
            raise InstanceFileError(told["refused"])
        self.t, self.modulator, self.frozen = told["t"], told["modulator"], told["frozen"]
        for r in range(self.ranks):
            for name, kind, dtype, shape in self._parts(r):
                if told["fresh"] and name not in LEARNED:
                    continue
                if self.rank == 0:
                    part = self._part_of(given[name], kind, r)
                    if r == 0:
                        self._take(name, part)
                    else:
                        dist.send(part.to(self._wire), self._global(r), group=self.group)
                elif r == self.rank:
                    part = torch.empty(shape, dtype=dtype, device=self._wire)
                    dist.recv(part, self._root, group=self.group)
                    self._take(name, part)

    def _take(self, name: str, part: torch.Tensor) -> None:
        getattr(self, name).copy_(part)

    def snapshot(self) -> Snapshot | None:
        """The whole agent, collected on rank 0 (``None`` on the others):
        rank 0 takes every rank's part in turn and places it."""
        learned, cpu = {}, {}
        if self.rank == 0:
            for name in LEARNED:
                learned[name] = torch.empty(self._whole_shape(name), dtype=torch.float32)
            for name in STATE:
                cpu[name] = torch.empty(self._whole_shape(name),
                                        dtype=getattr(self, name).dtype)
        for r in range(self.ranks):
            if self.rank not in (0, r):
                continue
            # the weights rank r owns, worked out once for this save
            if r != self.rank:
                kept = self._kept(r)
            else:
                if self._kept_here is None:
                    self._kept_here = self._kept(r).to(self.device)
                kept = self._kept_here
            for name, kind, dtype, shape in self._parts(r):
                if kind == "all" and r > 0:
                    continue
                sent = self._sent_part(name, kind, r, kept)
                if self.rank == 0:
                    part = sent if r == 0 else self._receive(r, sent)
                    self._place(learned if name in LEARNED else cpu, name, kind, r,
                                part.to("cpu"), kept)
                elif r == self.rank:
                    dist.send(sent.to(self._wire).contiguous(), self._root, group=self.group)
        if self.rank != 0:
            return None
        values = {"t": self.t, "modulator": self.modulator, "frozen": self.frozen}
        return Snapshot(dict(self.definition), learned, DynamicState(cpu, values))

    def _sent_part(self, name: str, kind: str, r: int, kept: torch.Tensor) -> torch.Tensor:
        """What rank ``r`` sends of ``name`` for a snapshot: its own
        neurons' values; of the weights, the synapses it owns (described,
        on rank 0, by an empty tensor of their number)."""
        if r != self.rank:  # rank 0 describing what it will receive
            if kind == "halo":
                return torch.empty(int(kept.sum()), dtype=torch.float32)
            if kind == "sources":
                return torch.empty(self.tiling.owned(r).numel(), dtype=torch.float32)
            _, _, dtype, shape = next(p for p in self._parts(r) if p[0] == name)
            return torch.empty(shape, dtype=dtype)
        mine = getattr(self, name)
        if kind == "halo":
            return mine[kept.to(self.device)]
        if kind == "sources":
            return mine[self.inputs + self.halo_of_owned]
        return mine

    def _receive(self, r: int, like: torch.Tensor) -> torch.Tensor:
        part = torch.empty(like.shape, dtype=like.dtype, device=self._wire)
        dist.recv(part, self._global(r), group=self.group)
        return part

    def _place(self, into: dict[str, torch.Tensor], name: str, kind: str, r: int,
               part: torch.Tensor, kept: torch.Tensor) -> None:
        whole = into[name]
        tiling = self.tiling
        first, end = tiling.bounds[r]
        if kind in ("columns", "output"):
            whole[..., first * self.cells:end * self.cells] = part
        elif kind == "tile":
            whole[tiling.owned(r)] = part
        elif kind == "ring":
            whole[:, tiling.owned(r)] = part
        elif kind == "sources":
            if r == 0:
                whole[:self.inputs] = self.pre_trace[:self.inputs].cpu()
            whole[self.inputs + tiling.owned(r)] = part
        elif kind == "halo":
            rows = whole[tiling.halo(r)]
            rows[kept.cpu()] = part
            whole[tiling.halo(r)] = rows
        else:
            whole.copy_(part)

    def _kept(self, r: int) -> torch.Tensor:
        """bool ``[halo rows, K]``: the slots of rank ``r``'s halo rows whose
        weights it owns: those that reach its tile, and the empty slots of
        its own neurons' rows (they keep what they were loaded with)."""
        tiling = self.tiling
        halo = tiling.halo(r)
        k = layouts.slots_per_row(self.definition)
        kept = torch.empty(halo.numel(), k, dtype=torch.bool)
        for at, rows in _pieces(halo, k):
            reach = connectivity.targets(self.definition, rows=rows).long()
            mine = tiling.neuron_owner(reach.clamp(min=0)) == r
            own_row = (tiling.neuron_owner(rows) == r)[:, None]
            kept[at] = torch.where(reach >= 0, mine, own_row)
        return kept

    def _whole_shape(self, name: str) -> tuple[int, ...]:
        d = self.definition
        first = layouts.first_layer_size(d)
        return {"input_weights": (self.inputs, first),
                "weights": (self.neurons, layouts.slots_per_row(d)),
                "thresholds": (self.neurons,), "membrane": (self.neurons,),
                "refractory": (self.neurons,), "pre_trace": (self.sources,),
                "post_trace": (self.neurons,), "ring": (self.axon + 1, self.neurons),
                "input_rates": (self.inputs,),
                "output_counts": (self.neurons - self.output_start,),
                "input_spikes": (self.inputs,)}[name]

    @property
    def _wire(self) -> torch.device:
        """Where tensors travel from: the CPU for gloo, the GPU for NCCL."""
        return self.device if dist.get_backend(self.group) == "nccl" else torch.device("cpu")

    @property
    def _root(self) -> int:
        return self._global(0)

    def _global(self, r: int) -> int:
        return dist.get_global_rank(self.group, r) if self.group is not None else r

    # -- stepping ----------------------------------------------------------------

    def run(self, steps: int, spikes: torch.Tensor | None = None) -> None:
        """Advance ``steps`` iterations, exchanging spikes once a window;
        every rank with the same arguments (``spikes`` as :meth:`Sheet.run`)."""
        raster = None if spikes is None else self._raster(spikes, steps)
        with torch.no_grad():
            done = 0
            while done < steps:
                t0, n = self.t, min(self.window, steps - done)
                fired = [self._advance(t0, None if raster is None else raster[done])]
                self._learn(t0, fired[0])
                if n == 2:
                    fired.append(self._advance(t0 + 1, None if raster is None
                                               else raster[done + 1]))
                told = self._exchange(fired)
                for i in range(n):
                    if i:
                        self._learn(t0 + i, fired[i])
                    self._complete(fired[i], told[i])
                self.t = t0 + n
                done += n

    def _advance(self, t: int, forced: torch.Tensor | None) -> _Fired:
        spikes, input_spikes = self._advance_neurons(t, forced)
        return _Fired(spikes, input_spikes, spikes.nonzero().view(-1),
                      input_spikes.nonzero().view(-1), t)

    def _noise(self, t: int) -> torch.Tensor:
        """The noise of the tile's neurons: the sheet's numbers for them."""
        return self._fill_at(self.noise, stream_key(self.seed, t, NOISE_STREAM), True,
                             self._noise_index)

    def _learn(self, t: int, step: _Fired) -> None:
        """Potentiation of the tile's neurons that fired, then depression and
        delivery by the sources this rank fires itself."""
        neurons = self._batches(step.fired)
        self._events(t, neurons, [self.halo_of_owned[batch] for batch in neurons],
                     self._batches(step.fired_inputs))

    def _complete(self, step: _Fired, remote: torch.Tensor) -> None:
        """Depression and delivery by the remote sources that fired at the
        step, then every trace of the step."""
        self._events(step.t, [], self._batches(remote), [])
        halo_spikes = torch.zeros(self.halo.numel(), device=self.device)
        halo_spikes[self.halo_of_owned] = step.spikes
        halo_spikes[remote] = 1.0
        self._decay_accumulate(self.pre_trace[:self.inputs], self.decay_trace, step.input_spikes)
        self._decay_accumulate(self.pre_trace[self.inputs:], self.decay_trace, halo_spikes)
        self._decay_accumulate(self.post_trace, self.decay_post, step.spikes)
        self.output_counts += step.spikes[-self.tile:].long()
        self.activity[:self.inputs] += step.input_spikes.long()
        self.activity[self.inputs:] += step.spikes.long()

    def _exchange(self, fired: list[_Fired]) -> list[torch.Tensor]:
        """One collective for the window: every rank's winners of the groups
        others need; back, for each step, the halo rows that fired remotely."""
        if not self.bytes_per_step:
            return [torch.empty(0, dtype=torch.int64, device=self.device) for _ in fired]
        sent = torch.zeros(len(fired), self.exports, dtype=self.spike_dtype, device=self.device)
        for i, step in enumerate(fired):
            groups = step.spikes.view(-1, self.cells)[self._export_groups]
            winner = torch.where(groups.amax(dim=1) > 0, groups.argmax(dim=1) + 1, 0)
            sent[i, :winner.numel()] = winner.to(self.spike_dtype)
        wire = sent.to(self._wire)
        got = [torch.empty_like(wire) for _ in range(self.ranks)]
        dist.all_gather(got, wire, group=self.group)
        every = torch.stack(got).to(self.device).long()  # [ranks, steps, exports]
        told = []
        for i in range(len(fired)):
            winner = every[self._told_by, i, self._told_at]
            hit = winner > 0
            told.append(self._told_first[hit] + winner[hit] - 1)
        return told

    # -- what rank 0 answers with ----------------------------------------------------

    def _collect(self, mine: torch.Tensor, sizes: list[int]) -> list[torch.Tensor] | None:
        """Every rank's ``mine`` (rank ``r``'s has ``sizes[r]`` entries), on
        rank 0, in rank order; ``None`` on the others."""
        if self.rank != 0:
            dist.send(mine.to(self._wire).contiguous(), self._root, group=self.group)
            return None
        parts = [mine.to("cpu", copy=True)]
        for r in range(1, self.ranks):
            parts.append(self._receive(r, torch.empty(sizes[r], dtype=mine.dtype)).cpu())
        return parts

    def take_output_array(self) -> Any:
        """:meth:`Sheet.take_output_array` of the whole sheet, on rank 0."""
        sizes = [self.tiling.tile_columns(r) * self.cells for r in range(self.ranks)]
        parts = self._collect(self.output_counts, sizes)
        self.output_counts.zero_()
        return None if parts is None else torch.cat(parts).numpy()

    def take_output(self) -> list[int] | None:
        counts = self.take_output_array()
        return None if counts is None else counts.tolist()

    def activity_counts(self) -> dict[str, tuple[int, int]] | None:
        """Spikes of each population since load, summed over the ranks."""
        per_layer = self.activity[self.inputs:].view(self.definition["depth"], -1).sum(1)
        parts = self._collect(per_layer.cpu(), [per_layer.numel()] * self.ranks)
        if parts is None:
            return None
        layers = torch.stack(parts).sum(0)
        size = layouts.first_layer_size(self.definition)
        counts = {"inputs": (int(self.activity[:self.inputs].sum()), self.inputs)}
        counts.update({f"layer {i + 1}": (int(n), size) for i, n in enumerate(layers.tolist())})
        return counts

    def probe(self, variable: str, neurons: Any) -> Any:
        """:meth:`Sheet.probe` of the whole sheet, on rank 0: every rank
        reads the neurons it owns."""
        chosen = numpy.asarray(neurons, dtype=numpy.int64).reshape(-1)
        self._check_probe(variable, chosen)
        index = torch.from_numpy(chosen)
        neuron = (index - self.inputs).clamp(min=0)
        owner = torch.where(index >= self.inputs, self.tiling.neuron_owner(neuron), 0)
        local = torch.full((self.neurons,), -1, dtype=torch.int64)
        local[self.owned] = torch.arange(self.owned.numel())
        mine = owner == self.rank
        at = local[neuron[mine]]
        if variable == "spikes":
            source = torch.where(index[mine] < self.inputs, index[mine], self.inputs + at)
            values = self.activity.cpu()[source]
        elif variable == "membrane":
            values = self.membrane.cpu()[at]
        else:
            values = float(self.definition["threshold"]) + self.thresholds.cpu()[at]
        sizes = [int((owner == r).sum()) for r in range(self.ranks)]
        parts = self._collect(values, sizes)
        if parts is None:
            return None
        out = torch.empty(index.numel(), dtype=values.dtype)
        for r, part in enumerate(parts):
            out[owner == r] = part
        return out.numpy()


def _pieces(rows: torch.Tensor, width: int):
    """``(at, part)``: ``rows`` a few at a time (about a million table
    entries of ``width`` per row), so that building a table for them holds
    only small temporaries."""
    step = max(1, (1 << 20) // max(1, width))
    for start in range(0, rows.numel(), step):
        yield slice(start, start + step), rows[start:start + step]
