"""Shared fixtures: a private hera world (HOME, data, runtime, working dir)
and a runner for the real ``hera`` command in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# abraxas compiles its CPU step on first use into hera's cache directory,
# which lives under HOME; every world has a HOME of its own, so all of them
# share this one (built once, see cpp_backend).
os.environ.setdefault("HERA_CACHE_DIR", str(Path.home() / ".cache" / "hera-tests"))


@dataclass
class HeraWorld:
    """Temporary places for one test, and a way to run ``hera`` in them."""

    root: Path
    home: Path
    workdir: Path
    data: Path
    runtime: Path
    env: dict[str, str]

    @property
    def agents_dir(self) -> Path:
        return self.data / "agents"

    def run(self, *args: str, check: bool = True, timeout: float = 120,
            input: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Run ``python -m hera ARGS`` and return the finished process."""
        proc = subprocess.run([sys.executable, "-m", "hera", *args], cwd=cwd or self.workdir,
                              env=self.env, capture_output=True, text=True, timeout=timeout,
                              input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"hera {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def run_python(self, code: str) -> subprocess.CompletedProcess:
        """Run ``python -c CODE`` in the working directory with this world's env."""
        proc = subprocess.run([sys.executable, "-c", code], cwd=self.workdir, env=self.env,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"python -c failed: {proc.stderr}")
        return proc

    def popen(self, *args: str, stdin: int | None = None, preexec_fn=None) -> subprocess.Popen:
        """Start ``python -m hera ARGS`` without waiting."""
        return subprocess.Popen([sys.executable, "-m", "hera", *args], cwd=self.workdir,
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=stdin, text=True, preexec_fn=preexec_fn)

    def row(self, agent_id: str) -> dict:
        """The agent's row of ``hera agents --json``."""
        [row] = [r for r in self.agents() if r["id"] == agent_id]
        return row

    def wait_for(self, agent_id: str, status: str, process=None, limit: float = 60.0) -> dict:
        """Poll ``hera agents`` until the agent has ``status``; return its row."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            rows = [r for r in self.agents() if r["id"] == agent_id]
            if rows and rows[0]["status"] == status:
                return rows[0]
            if process is not None and process.poll() is not None:
                raise AssertionError(f"up exited early: {process.communicate()}")
            time.sleep(0.1)
        raise AssertionError(f"agent never reported {status}: {rows}")

    def build(self, *extra: str) -> tuple[str, Path]:
        """Build an abraxas/example instance; return its id and file."""
        proc = self.run("--family", "abraxas", "--layout", "example", "build", *extra)
        words = proc.stdout.split()
        return words[1], Path(words[-1])

    def agents(self, *extra: str) -> list[dict]:
        """``hera agents --json`` parsed."""
        return json.loads(self.run("agents", "--json", *extra).stdout)


def make_world(root: Path) -> HeraWorld:
    """A private HOME, data dir, runtime dir and working dir under ``root``."""
    home, work = root / "home", root / "work"
    data, runtime = root / "data", root / "run"
    for path in (home, work):
        path.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERA_", "XDG_"))}
    env.update(HOME=str(home), HERA_DATA_DIR=str(data), HERA_RUNTIME_DIR=str(runtime),
               HERA_CACHE_DIR=os.environ["HERA_CACHE_DIR"],
               HERA_SYSTEM_DIR=str(root / "system"), HERA_USERS_DIR=str(root / "users"),
               PYTHONUNBUFFERED="1")
    return HeraWorld(root, home, work, data, runtime, env)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[HeraWorld]:
    """A hera world of this test's own. An agent a failed test left up (a
    daemon, say) is killed afterwards, so that it cannot slow the tests
    after it."""
    made = make_world(tmp_path)
    yield made
    _kill_leftovers(made.runtime)


def _kill_leftovers(runtime: Path) -> None:
    """SIGKILL every process that still holds a pid-file in ``runtime``."""
    import fcntl

    for pid_file in runtime.rglob("*.pid") if runtime.is_dir() else ():
        try:
            with open(pid_file, "rb") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    continue  # nobody holds it
                except BlockingIOError:
                    pid = json.loads(handle.read() or b"{}").get("pid")
        except (OSError, ValueError):
            continue
        if isinstance(pid, int) and pid > 1:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def reachable_world():
    """A hera world that other users can pass through to their own
    directories (pytest's temporary directories are root's alone), as a
    real users directory would be: for root acting for another user."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="hera-world-"))
    root.chmod(0o755)
    try:
        yield make_world(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Private data and runtime dirs for in-process lifecycle calls."""
    monkeypatch.setenv("HERA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HERA_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tally():
    """A plugin manager holding only the test family; unregistered after."""
    from hera.plugins import create_manager
    from tests import tally_family

    plugins = create_manager()
    plugins.register(tally_family, "tally")
    yield plugins
    plugins.manager.unregister(name="tally")


def compiler_here() -> bool:
    """Whether a C++ compiler is on PATH (abraxas can build its compiled step)."""
    import shutil

    return shutil.which("c++") is not None or shutil.which("g++") is not None


@pytest.fixture(scope="session", autouse=True)
def _build_the_compiled_cpu_step():
    """Build abraxas's compiled CPU step before any test runs, so that no
    test's timing includes the build (where there is no compiler, agents
    step with torch and the cpp tests skip)."""
    if compiler_here():
        from hera_family_abraxas.cpu_backend import available

        assert available() is not None, "the compiled CPU step failed to build"


@pytest.fixture(scope="session")
def cpp_backend():
    """The shared cache holding the compiled CPU step; skips a test that
    needs the step where no C++ compiler can build it."""
    if not compiler_here():
        pytest.skip("no C++ compiler here: the abraxas cpp backend cannot be built")
    return Path(os.environ["HERA_CACHE_DIR"])
