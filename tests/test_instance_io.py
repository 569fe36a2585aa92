"""Instance files of big agents: saved and loaded a piece at a time, with
memory beyond the tensors bounded, zeros never made, and the io benchmark
printing its figure."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from hera import atomic, tensor_stream
from hera.hooks.types import DynamicState
from hera.instance import InstanceFile

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def _instance() -> InstanceFile:
    meta = {"id": "5f0c9a8e-0000-4000-8000-0000000010aa", "callsign": "big-otter",
            "family": {"name": "abraxas", "version": "1.0", "data_format": 1},
            "layout": "example", "created": "2026-01-01T00:00:00Z", "seed": 5, "steps": 9,
            "incarnation": 1, "hera_version": "0.1.0"}
    return InstanceFile(meta, {"neurons": 3})


@pytest.fixture
def dense(tmp_path) -> tuple[Path, torch.Tensor]:
    """A file holding 192 MiB of random float32 (many pieces, an odd end)."""
    weights = torch.rand(48 * MiB + 7)
    instance = _instance()
    instance.set_tensors({"weights": weights}, DynamicState({"v": torch.rand(1001)}, {"t": 9}))
    path = tmp_path / "agent.json"
    instance.write(path)
    return path, weights


def _peak(action) -> tuple[object, int]:
    """What ``action()`` returns, and the peak of what it allocated
    (Python's and numpy's allocations; torch's own are not traced)."""
    gc.collect()
    tracemalloc.start()
    try:
        result = action()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_save_holds_a_few_pieces_beside_the_tensors(tmp_path, dense):
    path, weights = dense
    instance = _instance()
    instance.set_tensors({"weights": weights}, None)
    _, peak = _peak(lambda: instance.write(tmp_path / "again.json"))
    assert peak < 0.10 * weights.numel() * 4, peak


def test_a_load_holds_the_tensors_and_a_few_pieces(dense):
    path, weights = dense
    read, peak = _peak(lambda: InstanceFile.read(path))
    tensors = weights.numel() * 4 + 1001 * 4
    assert tensors <= peak < 1.10 * tensors, (peak, tensors)
    assert torch.equal(read.tensors()["weights"], weights)
    # The tensor is the decoded memory itself, not a copy of it.
    assert read.tensors()["weights"].data_ptr() == read.stored["weights"].raw().ctypes.data


def test_a_file_is_read_in_pieces_never_whole(dense, monkeypatch):
    """The reader asks for the file a piece at a time: no read, and no
    piece, anywhere near the file's size."""
    path, _ = dense
    sizes = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, at: sizes.append(n) or real(fd, n, at))
    InstanceFile.read(path)
    assert len(sizes) > 40 and max(sizes) <= tensor_stream.TEXT_PIECE


def test_writing_starts_write_back_as_it_goes(dense, monkeypatch, tmp_path):
    """Every 64 MiB the kernel is asked to write out and drop what was
    written, so the final fsync has little to wait for."""
    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise here")
    path, _ = dense
    calls = []
    real = os.posix_fadvise
    monkeypatch.setattr(os, "posix_fadvise", lambda *a: calls.append(a) or real(*a))
    InstanceFile.read(path).write(tmp_path / "copy.json")
    size = (tmp_path / "copy.json").stat().st_size
    assert len(calls) == size // atomic._WRITEBACK
    assert all(advice == os.POSIX_FADV_DONTNEED for *_, advice in calls)
    assert [offset for _, offset, _, _ in calls] == sorted({offset for _, offset, _, _ in calls})


def test_zeros_are_never_made_when_built_read_or_written_again(tmp_path):
    """A 32 GiB all-zero tensor, expanded from one element as a family
    hands it over, is written, read and written again with no memory of
    its size; it is made only when used."""
    huge = torch.zeros((), dtype=torch.float32).expand(1 << 20, 1 << 13)
    instance = _instance()
    instance.set_tensors({"weights": huge, "bias": torch.ones(3)}, None)
    path = tmp_path / "built.json"
    _, peak = _peak(lambda: instance.write(path))
    assert path.stat().st_size < 4096 and peak < 4 * MiB
    import psutil

    if psutil.virtual_memory().available < 32 << 30:
        monkey = pytest.MonkeyPatch()  # reading checks the memory it would take: let it pass
        monkey.setattr(tensor_stream, "check_memory", lambda name, needed: None)
    else:
        monkey = None
    try:
        read, peak = _peak(lambda: InstanceFile.read(path))
        assert peak < 4 * MiB
        _, peak = _peak(lambda: read.write(tmp_path / "again.json"))
        assert peak < 4 * MiB
        assert (tmp_path / "again.json").read_bytes() == path.read_bytes()
    finally:
        if monkey:
            monkey.undo()
    small = _instance()
    small.set_tensors({"weights": torch.zeros(()).expand(3, 4)}, None)
    small.write(path)
    made = InstanceFile.read(path).tensors()["weights"]
    assert made.shape == (3, 4) and not made.any() and made.is_contiguous()
    made[1, 2] = 5.0  # real memory of its own, not an expanded view


def test_a_tensor_the_memory_cannot_hold_is_refused_before_it_is_made(tmp_path, monkeypatch):
    import psutil

    huge = torch.zeros(()).expand(1 << 20, 1 << 10)  # 4 GiB of zeros
    instance = _instance()
    instance.set_tensors({"weights": huge}, None)
    path = tmp_path / "built.json"
    instance.write(path)

    class Memory:
        available = 1 << 30

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Memory())
    with pytest.raises(Exception) as caught:
        InstanceFile.read(path)
    assert "needs 4294967296 bytes of memory, but only 1073741824 are available" in str(caught.value)


def test_sparse_tensors_round_trip_and_shrink(tmp_path):
    weights = torch.zeros(1000, 300)
    weights[torch.arange(0, 1000, 7), torch.arange(0, 1000, 7) % 300] = torch.rand(143) + 0.1
    weights[999, 299] = -0.0  # not zero, bit for bit
    instance = _instance()
    instance.set_tensors({"weights": weights}, None)
    path = tmp_path / "agent.json"
    instance.write(path)
    assert path.stat().st_size < 4000
    back = InstanceFile.read(path).tensors()["weights"]
    assert torch.equal(back.view(torch.int32), weights.view(torch.int32))


def test_the_io_benchmark_prints_its_figure(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "HERA_DATA_DIR": str(tmp_path / "data"),
           "HERA_RUNTIME_DIR": str(tmp_path / "run")}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "io.py"), "--layouts",
                           "example,digits", "--repeat", "1", "--dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == ["example", "digits"]
    last = lines[-1]
    import re

    match = re.fullmatch(r"io: save (\d+) MB/s, load (\d+) MB/s, cp (\d+) MB/s, "
                         r"peak/tensors (\d+\.\d\d)", last)
    assert match, last
    assert all(float(x) > 0 for x in match.groups())
    assert np.isfinite(float(match.group(4)))


def test_large_builds_here_without_its_memory_and_says_where_it_runs(world):
    """``large`` needs ~56 GiB on a GPU and over 20 GiB on a CPU: it builds
    on a small machine in a moment (its zeros never made), a note says so
    where it won't run, and ``up --simulate`` says what it needs, and on a
    GPU where the CPU can't hold it."""
    proc = world.run("--layout", "large", "build", "--json", timeout=120)
    path = Path(json.loads(proc.stdout)["path"])
    assert path.stat().st_size < 8192
    simulated = world.run("up", path.name, "--simulate", check=False, timeout=120)
    total = next(int(line.split()[-1]) for line in simulated.stdout.splitlines()
                 if line.startswith("total "))
    assert total > 20 << 30
    if "does NOT fit" in simulated.stdout:
        assert simulated.returncode == 1
        assert proc.stderr.startswith("note: it needs ") and "--simulate" in proc.stderr
        assert "On a GPU it needs 55.8 GiB: up it with --device cuda" in simulated.stdout
        assert "the agent needs" in simulated.stderr and "on cpu" in simulated.stderr
    else:
        assert simulated.returncode == 0 and "it fits." in simulated.stdout
        assert "note:" not in proc.stderr
    refused = world.run("build", "--set", "width=100000000", check=False, timeout=120)
    assert refused.returncode == 1
    assert "not enough memory to build abraxas/example" in refused.stderr
    assert "its learned tensors take" in refused.stderr


def test_ordered_map_keeps_order_bounds_what_is_ahead_and_raises_in_place():
    import threading

    from hera.ordered_map import ordered_map

    running, most = [0], [0]
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            if i == 37:
                raise ValueError("thirty-seven")
            return i * i
        finally:
            with lock:
                running[0] -= 1

    got = []
    with pytest.raises(ValueError, match="thirty-seven"):
        for value in ordered_map(work, range(100), ahead=2):
            got.append(value)
    assert got == [i * i for i in range(37)]
    assert list(ordered_map(work, range(30))) == [i * i for i in range(30)]
    assert most[0] <= 4
