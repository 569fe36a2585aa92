"""Shared fixtures: a private hera world (HOME, data, runtime, working dir)
and a runner for the real ``hera`` command in a subprocess."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

from hera import testing
from hera.testing import World

settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# abraxas compiles its CPU step on first use into hera's cache directory,
# which lives under HOME; every world has a HOME of its own, so all of them
# share this one (built once, see cpp_backend).
os.environ.setdefault("HERA_CACHE_DIR", str(Path.home() / ".cache" / "hera-tests"))


#: The world of hera.testing, under the name the tests have always used.
HeraWorld = World


def make_world(root: Path) -> HeraWorld:
    """A private HOME, data dir, runtime dir and working dir under ``root``,
    sharing the tests' cache of compiled steps."""
    return testing.make_world(root, os.environ["HERA_CACHE_DIR"])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[HeraWorld]:
    """A hera world of this test's own. An agent a failed test left up (a
    daemon, say) is killed afterwards, so that it cannot slow the tests
    after it."""
    made = make_world(tmp_path)
    yield made
    testing.kill_leftovers(made.runtime)


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
