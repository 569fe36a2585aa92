"""Testing helpers for family authors (and hera's own tests).

- :func:`check_family` drives a family's hooks as hera does and checks the
  contract: runs split by saves give the bits of one run, input lines
  included; a save loads back unchanged; the hooks leave other families'
  agents alone.
- :class:`World` (and :func:`make_world`): private HOME, data, runtime and
  working directories, and the real ``hera`` command run in them.
- As a pytest plugin (installed with hera), the fixture ``hera_world``: a
  :class:`World` under the test's ``tmp_path``; whatever a test leaves up in
  it is killed afterwards.

See docs/writing-a-family.md, "Testing your family". Importing this module
imports neither torch nor the families.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence


@dataclass
class World:
    """Temporary places (HOME, data, runtime and working directories) and a
    way to run the real ``hera`` command in them, in subprocesses."""

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

    def build(self, *extra: str, family: str = "abraxas", layout: str = "example"
              ) -> tuple[str, Path]:
        """Build an instance (``family``/``layout``) in the working directory;
        return its id and file."""
        proc = self.run("--family", family, "--layout", layout, "build", *extra)
        words = proc.stdout.split()
        return words[1], Path(words[-1])

    def agents(self, *extra: str) -> list[dict]:
        """``hera agents --json`` parsed."""
        return json.loads(self.run("agents", "--json", *extra).stdout)


def make_world(root: Path, cache_dir: str | os.PathLike | None = None) -> World:
    """A private HOME, data dir, runtime dir and working dir under ``root``.

    :param cache_dir: hera's cache (compiled steps): shared by the worlds
        that name the same one (default: ``$HERA_CACHE_DIR``, else each
        world's own HOME).
    """
    home, work = root / "home", root / "work"
    data, runtime = root / "data", root / "run"
    for path in (home, work):
        path.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERA_", "XDG_"))}
    cache = cache_dir or os.environ.get("HERA_CACHE_DIR") or home / ".cache" / "hera"
    env.update(HOME=str(home), HERA_DATA_DIR=str(data), HERA_RUNTIME_DIR=str(runtime),
               HERA_CACHE_DIR=str(cache),
               HERA_SYSTEM_DIR=str(root / "system"), HERA_USERS_DIR=str(root / "users"),
               PYTHONUNBUFFERED="1")
    return World(root, home, work, data, runtime, env)


def kill_leftovers(runtime: Path) -> None:
    """SIGKILL every process that still holds a pid-file in ``runtime`` (an
    agent a failed test left up, say)."""
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


def check_family(plugin: Any, family: str, layout: str = "example", *,
                 plan: Sequence[int] = (30, 70), lines: Sequence[str] = (),
                 overrides: dict[str, Any] | None = None, seed: int = 42,
                 device: str = "cpu") -> Any:
    """Check ``plugin`` (a module or object with hera's hooks) the way hera
    uses it, and return the snapshot of the whole run.

    - Feed ``lines`` (``hera_encode_input``) to a freshly loaded agent,
      then run ``sum(plan)`` steps in one load, and in one load per number
      of ``plan`` with a save (``hera_serialize``) and a load in between:
      the learned tensors, the dynamic state and its values must be equal,
      bit for bit (what the lines set must survive the saves).
    - A save loads back and saves again unchanged.
    - Every hook answers ``None`` for another family's name.

    :raises AssertionError: naming what differs.
    """
    import torch

    from hera.plugins import create_manager

    plugins = create_manager()
    plugins.register(plugin, f"checked-{family}")
    hook = plugins.hook
    built = hook.hera_build(family=family, layout=layout, overrides=dict(overrides or {}),
                            seed=seed)
    assert built is not None, f"hera_build gave nothing for {family}/{layout}"

    def run(pieces: Sequence[int]) -> Any:
        tensors, state, snapshot = built.tensors, None, None
        for piece, steps in enumerate(pieces):
            loaded = hook.hera_load(family=family, definition=dict(built.definition),
                                    tensors=tensors, state=state, device=device, seed=seed)
            for line in lines if piece == 0 else ():
                assert hook.hera_encode_input(family=family, agent=loaded.handle,
                                              line=line), f"input line {line!r} not taken"
            taken = hook.hera_step(family=family, agent=loaded.handle, steps=steps)
            assert taken == steps, f"hera_step took {taken} steps of {steps}"
            snapshot = hook.hera_serialize(family=family, agent=loaded.handle)
            tensors, state = snapshot.tensors, snapshot.state
        return snapshot

    def same(a: Any, b: Any, what: str) -> None:
        assert a.tensors.keys() == b.tensors.keys(), f"{what}: other tensors"
        for name in a.tensors:
            assert torch.equal(a.tensors[name], b.tensors[name]), f"{what}: tensor {name!r}"
        assert (a.state is None) == (b.state is None), f"{what}: state"
        if a.state is not None:
            for name in a.state.tensors:
                assert torch.equal(a.state.tensors[name], b.state.tensors[name]), \
                    f"{what}: state tensor {name!r}"
            assert a.state.values == b.state.values, f"{what}: state values"

    whole = run([sum(plan)])
    same(run(list(plan)), whole, f"{' + '.join(map(str, plan))} steps against {sum(plan)}")
    again = hook.hera_load(family=family, definition=dict(whole.definition),
                           tensors=whole.tensors, state=whole.state, device=device, seed=seed)
    same(hook.hera_serialize(family=family, agent=again.handle), whole, "a save loaded back")
    other = "not-" + family
    assert hook.hera_build(family=other, layout=layout, overrides={}, seed=seed) is None, \
        "hera_build answered for another family"
    for name, kwargs in (("hera_step", {"steps": 1}), ("hera_serialize", {}),
                         ("hera_decode_output", {}), ("hera_encode_input", {"line": "0"})):
        answer = getattr(hook, name)(family=other, agent=again.handle, **kwargs)
        assert answer is None, f"{name} answered for another family"
    return whole


try:
    import pytest
except ImportError:  # pragma: no cover - outside a test run
    pytest = None

if pytest is not None:
    @pytest.fixture
    def hera_world(tmp_path: Path) -> Iterator[World]:
        """A :class:`World` of this test's own under ``tmp_path``; agents it
        leaves up are killed afterwards."""
        made = make_world(tmp_path / "hera-world")
        yield made
        kill_leftovers(made.runtime)
