"""The first run: the compiled CPU step is built in about a second, once per
source, flags and CPU, and never again because PATH or the compiler
changed; Ctrl-C during the build stops the agent; hera runs without
triton; the README's main job runs again and again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hera_family_abraxas import cpu_backend
from tests.conftest import compiler_here

REPO = Path(__file__).resolve().parent.parent

needs_compiler = pytest.mark.skipif(not compiler_here(), reason="no C++ compiler here")


def _stub_tools(directory: Path, log: Path) -> None:
    """Compilers and build tools that only say they were called."""
    directory.mkdir()
    for name in ("c++", "g++", "gcc", "cc", "clang++", "clang", "ninja", "ld"):
        tool = directory / name
        tool.write_text(f"#!/bin/sh\necho {name} >> {log}\nexit 1\n")
        tool.chmod(0o755)


@needs_compiler
def test_a_build_is_used_whatever_path_and_compiler_say(world, tmp_path, cpp_backend):
    """PATH now finds other (here: broken) compilers and build tools: the
    build made before is loaded as it is, and none of them runs."""
    _, path = world.build()
    log = tmp_path / "called"
    _stub_tools(tmp_path / "bin", log)
    world.env = {**world.env, "PATH": f"{tmp_path / 'bin'}:{world.env['PATH']}",
                 "CXX": str(tmp_path / "bin" / "g++")}
    proc = world.run("up", path.name, "--steps", "20")
    assert "[cpp]" in proc.stdout, proc.stdout + proc.stderr
    assert "compiling" not in proc.stderr and not log.exists(), proc.stderr


def test_the_build_key_follows_source_flags_and_cpu_and_nothing_else(monkeypatch):
    key = cpu_backend.build_key()
    assert key == cpu_backend.build_key(), "the key must be stable"
    source = cpu_backend.SOURCE.read_bytes()
    assert cpu_backend.build_key(source=source + b"\n// changed") != key
    assert cpu_backend.build_key(flags=(*cpu_backend.FLAGS, "-DX")) != key
    assert cpu_backend.build_key(target=cpu_backend.cpu_target() + " avx9") != key
    for name, value in (("PATH", "/nowhere"), ("CXX", "clang++"), ("CC", "x"),
                        ("TORCH_EXTENSIONS_DIR", "/elsewhere")):
        monkeypatch.setenv(name, value)
    assert cpu_backend.build_key() == key
    assert cpu_backend.library_path().name == f"abraxas-cpu-step-{key}.so"


@needs_compiler
def test_a_first_up_on_a_fresh_cache_compiles_once_and_steps_compiled(world, tmp_path):
    _, path = world.build()
    world.env = {**world.env, "HERA_CACHE_DIR": str(tmp_path / "cache")}
    first = world.run("up", path.name, "--steps", "10")
    assert "[cpp]" in first.stdout and first.stderr.count("compiling the CPU step") == 1, \
        first.stdout + first.stderr
    [library] = (tmp_path / "cache" / "compiled").glob("*.so")
    assert library.stat().st_mode & 0o777 == 0o700
    assert not [p for p in library.parent.iterdir() if p.name.endswith(".partial")]
    again = world.run("--uuid", path.stem, "up", "--steps", "10")
    assert "[cpp]" in again.stdout and "compiling" not in again.stderr, again.stderr


def _agent_and_its_build(world, tmp_path) -> tuple[Path, Path]:
    """An installed agent, and the compiled step its first up built in a
    cache of this test's own."""
    _, path = world.build()
    world.env = {**world.env, "HERA_CACHE_DIR": str(tmp_path / "cache")}
    world.run("up", path.name, "--steps", "1")
    [library] = (tmp_path / "cache" / "compiled").glob("*.so")
    return path, library


@needs_compiler
def test_a_damaged_build_is_made_again(world, tmp_path):
    path, library = _agent_and_its_build(world, tmp_path)
    library.write_bytes(b"not a shared library")
    proc = world.run("--uuid", path.stem, "up", "--steps", "10")
    assert "[cpp]" in proc.stdout and "compiling" in proc.stderr, proc.stdout + proc.stderr
    assert library.read_bytes().startswith(b"\x7fELF")


@needs_compiler
def test_a_build_others_can_write_is_not_loaded(world, tmp_path):
    path, library = _agent_and_its_build(world, tmp_path)
    library.chmod(0o722)
    proc = world.run("--uuid", path.stem, "up", "--steps", "10")
    assert "[torch]" in proc.stdout, proc.stdout
    assert "not a file of this user's alone" in proc.stderr, proc.stderr
    assert "stepping with torch instead" in proc.stderr


@needs_compiler
def test_builders_at_once_make_one_library(tmp_path):
    """Three processes that find no build at the same moment: one compiles,
    the others wait for it and load the same file."""
    env = {**os.environ, "HERA_CACHE_DIR": str(tmp_path / "cache")}
    code = ("from hera_family_abraxas import cpu_backend as c; "
            "print(c.compiled().path)")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    assert sum(err.count("compiling") for _, err in results) >= 1
    assert sorted(p.suffix for p in (tmp_path / "cache" / "compiled").iterdir()) == \
        [".lock", ".so"]


def test_ctrl_c_during_the_compile_stops_the_agent_cleanly(world, tmp_path):
    """Ctrl-C reaches the agent and its compiler (one process group): the
    up stops with one line, installs nothing, and never falls back to a
    slower backend."""
    _, path = world.build()
    before = path.read_bytes()
    slow, started = tmp_path / "slow-c++", tmp_path / "compiler-started"
    slow.write_text(f"#!/bin/sh\ntouch {started}\nexec sleep 60\n")
    slow.chmod(0o755)
    world.env = {**world.env, "HERA_CACHE_DIR": str(tmp_path / "cache"), "CXX": str(slow)}
    proc = subprocess.Popen([sys.executable, "-m", "hera", "up", path.name, "--steps", "10"],
                            cwd=world.workdir, env=world.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not started.exists():  # the compiler is running
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, out + err
    lines = [line for line in err.splitlines() if not line.startswith("abraxas: compiling")]
    assert len(lines) == 1 and "interrupted while compiling" in lines[0], err
    assert "torch" not in err and "Traceback" not in err
    assert world.agents() == [] and path.read_bytes() == before
    assert not [p for p in (tmp_path / "cache" / "compiled").iterdir() if p.suffix != ".lock"]


def _without_triton(world, tmp_path) -> None:
    """Make ``import triton`` fail in the world's processes, as on a
    machine where it is not installed."""
    blocker = tmp_path / "no-triton" / "triton"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("No module named triton")\n')
    world.env = {**world.env, "PYTHONPATH": f"{blocker.parent}:{REPO}"}


def test_a_cpu_machine_runs_hera_without_triton(world, tmp_path):
    _without_triton(world, tmp_path)
    world.run_python("import importlib.util, sys\n"
                     "try:\n    import triton\nexcept ImportError:\n    sys.exit(0)\n"
                     "sys.exit('triton imported')")
    _, path = world.build()
    proc = world.run("up", path.name, "--steps", "50")
    assert "steps this run" in proc.stdout and "triton" not in proc.stderr, proc.stderr
    assert world.run("devices").returncode == 0


def test_a_gpu_without_triton_is_told_how_to_get_it(world, tmp_path):
    _without_triton(world, tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", "from hera.kernels import missing_triton as m; "
         "print(m('cuda:0')); print(m('cpu'))"],
        env=world.env, capture_output=True, text=True, check=True).stdout.splitlines()
    assert "triton is not installed" in out[0] and "hera[gpu]" in out[0]
    assert out[1] == "None"


def test_the_first_run_goes_on_where_it_stopped(world):
    """The README's main job, twice: the second run resumes the same agent
    and shows its learned tensors changing."""
    script = [sys.executable, str(REPO / "scripts" / "first_run.py"), "--steps", "300"]
    runs = [subprocess.run(script, cwd=world.workdir, env=world.env, capture_output=True,
                           text=True, timeout=120) for _ in range(2)]
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    first, again = runs
    [agent] = world.agents()
    assert agent["steps"] == 600
    assert "at step 300 (300 this run)" in first.stdout
    assert "at step 600 (300 this run)" in again.stdout
    for out in (first.stdout, again.stdout):
        row = next(line for line in out.splitlines() if line.startswith("input_weights"))
        assert float(row.split()[-1]) > 0, row  # the weights moved during the run
