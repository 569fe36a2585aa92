"""An abraxas sheet split over ranks (hera_family_abraxas.sharded) gives the
bits of the same sheet in one process: state, spikes, outputs, activity and
probes, with input, reward and freezing between runs; and a snapshot taken
on N ranks continues on M. Real processes, joined by gloo."""

from __future__ import annotations

import os
import socket
import types

import numpy
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hera.testing import same_snapshots
from hera_family_abraxas import layouts, model
from hera_family_abraxas.sharded import ShardedSheet
from hera_family_abraxas.tiling import Tiling


def _agent(layout: str) -> tuple[dict, dict]:
    """A definition, and weights drawn at random (non-zero, so that spikes
    cross every tile edge from the first step)."""
    d = layouts.definition_for(layout, {})
    gen = torch.Generator().manual_seed(11)
    tensors = {name: torch.rand(tuple(t.shape), generator=gen) * (0.1 if name == "thresholds"
                                                                 else 0.6)
               for name, t in model.built_parameters(d).items()}
    return d, tensors


def _probed(d: dict, variable: str) -> list[int]:
    first = 0 if variable == "spikes" else d["inputs"]
    return list(range(first, d["inputs"] + layouts.neuron_count(d), 5))


def _drive(sheet, d: dict, steps: tuple[int, ...]) -> dict:
    """The same calls on any sheet: runs of ``steps`` with input between."""
    out = {"snapshots": [], "outputs": []}
    for i, n in enumerate(steps):
        if i == 1:
            sheet.set_input([0.9, 0.1, 1.0, 0.0] * (d["inputs"] // 4))
            sheet.give_input_spikes([1, d["inputs"] - 1])
        if i == 2:
            sheet.set_modulator(2.5)
            sheet.feed_arrays(numpy.linspace(0, 1, d["inputs"]), [3])
        if i == 3:
            sheet.set_frozen(True)
        spikes = None
        if i == 1:
            spikes = torch.zeros(n, d["inputs"], dtype=torch.bool)
            spikes[::3, 5] = True
        sheet.run(n, spikes)
        out["snapshots"].append(sheet.snapshot())
        out["outputs"].append(sheet.take_output_array())
    out["activity"] = sheet.activity_counts()
    out["probes"] = [sheet.probe(v, _probed(d, v)) for v in ("spikes", "membrane", "threshold")]
    return out


def _rank(rank: int, ranks: int, port: int, layout: str, steps, state, result_path):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=ranks)
    try:
        d, tensors = _agent(layout)
        if state is not None:
            tensors, state = state.tensors, state.state
        shard = types.SimpleNamespace(rank=rank, ranks=ranks, group=None)
        sheet = ShardedSheet(d, tensors if rank == 0 else None, state if rank == 0 else None,
                             "cpu", 5, shard)
        out = _drive(sheet, d, steps)
        if rank == 0:
            torch.save(out, result_path)
        else:
            assert all(s is None for s in out["snapshots"]) and out["activity"] is None
    finally:
        dist.destroy_process_group()


def _on_ranks(ranks: int, layout: str, steps, tmp_path, state=None) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / f"ranks{ranks}.pt"
    mp.spawn(_rank, args=(ranks, port, layout, steps, state, path), nprocs=ranks)
    return torch.load(path, weights_only=False)


def _in_one_process(layout: str, steps, state=None) -> dict:
    d, tensors = _agent(layout)
    if state is not None:
        tensors, state = state.tensors, state.state
    return _drive(model.Sheet(d, tensors, state, "cpu", 5, backend="torch"), d, steps)


def _same(a: dict, b: dict, what: str) -> None:
    for i, (x, y) in enumerate(zip(a["snapshots"], b["snapshots"])):
        same_snapshots(x, y, f"{what}, run {i}")
    for x, y in zip(a["outputs"], b["outputs"]):
        assert numpy.array_equal(x, y), what
    assert a["activity"] == b["activity"], what
    for x, y in zip(a["probes"], b["probes"]):
        assert x.dtype == y.dtype and numpy.array_equal(x, y), what


@pytest.mark.parametrize("layout,ranks", [("example", 2), ("example", 3), ("small", 2),
                                          ("small", 3)])
def test_ranks_give_the_bits_of_one_process(layout, ranks, tmp_path):
    steps = (7, 6, 5, 4)  # odd runs: windows cut short at the end of a run
    one = _in_one_process(layout, steps)
    assert one["snapshots"][-1].tensors["weights"].ne(_agent(layout)[1]["weights"]).any()
    assert sum(n for n, _ in one["activity"].values()) > 0
    _same(_on_ranks(ranks, layout, steps, tmp_path), one, f"{layout} on {ranks} ranks")


def test_a_snapshot_from_n_ranks_continues_on_m(tmp_path):
    first = _on_ranks(3, "small", (9,), tmp_path)["snapshots"][0]
    whole = _in_one_process("small", (9,))["snapshots"][0]
    same_snapshots(first, whole, "the snapshot of 3 ranks")
    steps = (6, 5, 4, 3)
    _same(_on_ranks(2, "small", steps, tmp_path, first), _in_one_process("small", steps, whole),
          "3 ranks, then 2")


def _refusing_rank(rank: int, ranks: int, port: int) -> None:
    from datetime import timedelta

    from hera.errors import InstanceFileError

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=ranks, timeout=timedelta(seconds=20))
    try:
        d, tensors = _agent("example")
        tensors["thresholds"] = tensors["thresholds"][:-1]  # a file that does not fit
        shard = types.SimpleNamespace(rank=rank, ranks=ranks, group=None)
        with pytest.raises(InstanceFileError, match="'thresholds' is float32"):
            ShardedSheet(d, tensors if rank == 0 else None, None, "cpu", 5, shard)
    finally:
        dist.destroy_process_group()


def test_a_part_that_does_not_fit_is_refused_on_every_rank_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_refusing_rank, args=(3, port), nprocs=3)


@pytest.mark.parametrize("layout,ranks", [("example", 9), ("small", 5), ("big", 7)])
def test_tiles_cover_the_sheet_once_and_halos_hold_every_source(layout, ranks):
    d = layouts.definition_for(layout, {})
    tiling = Tiling(d, ranks)
    owned = torch.cat([tiling.owned(r) for r in range(ranks)])
    assert torch.equal(owned.sort().values, torch.arange(layouts.neuron_count(d)))
    reach = d["dendrite"]
    for r in range(ranks):
        halo = set(tiling.halo(r).tolist())
        assert set(tiling.owned(r).tolist()) <= halo
        cols = tiling.owned(r)[:: d["cells"]] // d["cells"] % tiling.columns
        ys, xs = cols // d["width"], cols % d["width"]
        for y, x in zip(ys.tolist()[:3], xs.tolist()[:3]):
            for layer in range(d["depth"]):
                near_y = range(max(0, y - reach), min(d["height"], y + reach + 1))
                near_x = range(max(0, x - reach), min(d["width"], x + reach + 1))
                for yy in near_y:
                    for xx in near_x:
                        g = layer * tiling.columns + yy * d["width"] + xx
                        assert g * d["cells"] in halo
        # what a rank is told is exactly what others own in its halo
        told = tiling.halo_groups(r)[tiling.group_owner(tiling.halo_groups(r)) != r]
        for g in told.tolist():
            owner = int(tiling.group_owner(torch.tensor([g])))
            assert g in set(tiling.exports(owner).tolist())


def test_a_sheet_splits_over_at_most_its_columns():
    from hera.errors import HeraError

    with pytest.raises(HeraError, match="at most 9 ranks, not 10"):
        Tiling(layouts.definition_for("example", {}), 10)
