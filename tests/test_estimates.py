"""Honest estimates: ``up --simulate`` and ``layouts`` against the peak
resident memory of a real ``up`` (benchmarks/estimates.py covers the large
layouts), and the parts hera adds to a family's report."""

from __future__ import annotations

import json
import sys

import pytest

from hera import estimates
from hera.errors import InstanceFileError
from hera.hooks.types import ResourceReport

SMALL_LAYOUTS = ["example", "small", "digits", "pattern", "medium"]


def _simulated_total(world, name: str) -> int:
    out = world.run("up", name, "--simulate").stdout
    return next(int(line.split()[-1]) for line in out.splitlines() if line.startswith("total "))


def _peak_of_up(world, name: str, steps: int) -> int:
    """The peak resident bytes of ``hera up NAME --steps N`` (load, steps, save)."""
    code = ("import resource, subprocess, sys\n"
            f"done = subprocess.run([sys.executable, '-m', 'hera', 'up', {name!r}, '--steps', "
            f"'{steps}'], capture_output=True, text=True)\n"
            "assert done.returncode == 0, done.stderr\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n")
    return int(world.run_python(code).stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
@pytest.mark.parametrize("layout", SMALL_LAYOUTS)
def test_simulate_and_layouts_are_within_10_percent_of_the_peak_of_up(world, cpp_backend,
                                                                      layout):
    world.run("--layout", layout, "build", f"{layout}.json")
    simulated = _simulated_total(world, f"{layout}.json")
    listed = next(row["bytes"] for row in json.loads(world.run("layouts", "--json").stdout)
                  if row["layout"] == layout)
    peak = _peak_of_up(world, f"{layout}.json", 300)
    assert abs(simulated - peak) <= 0.1 * peak, (simulated, peak)
    assert abs(listed - peak) <= 0.1 * peak, (listed, peak)


def test_hera_adds_the_process_and_a_copy_on_the_cpu_only(world, monkeypatch):
    from hera.plugins import load_plugins

    monkeypatch.setattr(estimates, "baseline", lambda plugins, family, measure: 1000)
    plugins = load_plugins()
    family = ResourceReport(device="cpu", tensors={"weights": 400}, snapshot=300)
    report = estimates.up_report(plugins, "abraxas", family, "cpu", held=200)
    assert report.tensors == {"weights": 400, estimates.COPY: 300, estimates.PROCESS: 1000}
    assert estimates.up_report(plugins, "abraxas", family, "cpu", held=500).total == 1900
    gpu = ResourceReport(device="cuda:0", tensors={"weights": 400}, snapshot=300)
    assert estimates.up_report(plugins, "abraxas", gpu, "cuda:0", held=500) is gpu
    assert estimates.up_report(plugins, "abraxas", None, "cpu") is None


def test_the_process_is_measured_once_and_a_broken_cache_is_measured_again(tmp_path,
                                                                           monkeypatch):
    from hera.plugins import load_plugins

    monkeypatch.setenv("HERA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(estimates, "_MEASURED", {})  # as in a fresh process
    measured = []
    real = estimates._measure

    def counting(family):
        measured.append(family)
        return real(family)

    monkeypatch.setattr(estimates, "_measure", counting)
    plugins = load_plugins()
    first = estimates.baseline(plugins, "abraxas")
    assert first is not None and 50 << 20 < first < 4 << 30  # Python and torch: some 100 MB
    assert estimates.baseline(plugins, "abraxas") == first and len(measured) == 1
    monkeypatch.setenv("HERA_CACHE_DIR", str(tmp_path / "other"))
    monkeypatch.setattr(estimates, "_MEASURED", {})  # another process, another cache
    assert estimates.baseline(plugins, "abraxas", measure=False) is None  # up: no second process
    assert len(measured) == 1
    monkeypatch.setenv("HERA_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache" / "process-memory.json").write_text("{not json")
    monkeypatch.setattr(estimates, "_MEASURED", {})  # the next process
    assert estimates.baseline(plugins, "abraxas") > 50 << 20 and len(measured) == 2


def test_a_running_agents_file_tensors_are_let_go_and_captured_again(tmp_path):
    """The runner releases the file's decoded tensors once the family holds
    the agent; nothing reads or writes them until the next capture."""
    import torch

    from hera.instance import InstanceFile

    meta = {"id": "5f0c9a8e-0000-4000-8000-000000000002", "callsign": "amber-otter",
            "family": {"name": "abraxas", "version": "1.0", "data_format": 1},
            "layout": "example", "created": "2026-01-01T00:00:00Z", "seed": 7, "steps": 0,
            "incarnation": 0, "hera_version": "0.1.0"}
    instance = InstanceFile(meta, {"width": 1})
    instance.set_tensors({"w": torch.ones(3, 5)}, None)
    assert instance.tensor_bytes() == 60
    instance.release_tensors()
    with pytest.raises(InstanceFileError, match="no longer holds its tensors"):
        instance.tensors()
    with pytest.raises(InstanceFileError, match="no longer holds its tensors"):
        instance.write(tmp_path / "a.json")
    assert not (tmp_path / "a.json").exists()
    instance.set_tensors({"w": torch.full((2,), 2.0)}, None)
    instance.write(tmp_path / "a.json")
    assert torch.equal(InstanceFile.read(tmp_path / "a.json").tensors()["w"], torch.full((2,), 2.0))


def test_the_process_is_measured_alone_whatever_its_parent_holds(world, tmp_path):
    """The measuring child reports its own peak: a parent holding an agent
    (here 1 GiB) does not make every later estimate that much larger."""
    world.env = {**world.env, "HERA_CACHE_DIR": str(tmp_path / "cache")}
    proc = world.run_python(
        "import numpy\n"
        "held = numpy.ones(1 << 30, dtype=numpy.uint8)\n"
        "from hera import estimates\n"
        "from hera.plugins import load_plugins\n"
        "print(estimates.baseline(load_plugins(), 'abraxas'))\n")
    measured = int(proc.stdout.split()[-1])
    assert 50 << 20 < measured < 900 << 20


def test_where_the_cache_cannot_keep_it_the_process_is_measured_once(tmp_path, monkeypatch):
    from hera.plugins import load_plugins

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    monkeypatch.setenv("HERA_CACHE_DIR", str(blocked))
    monkeypatch.setattr(estimates, "_MEASURED", {})
    measured = []
    monkeypatch.setattr(estimates, "_measure", lambda family: measured.append(family) or 12345)
    plugins = load_plugins()
    assert [estimates.baseline(plugins, "abraxas") for _ in range(3)] == [12345] * 3
    assert measured == ["abraxas"]
