"""Testing helpers for family authors (and hera's own tests).

- :func:`conformance`: a family's conformance suite, as a pytest test
  class in one line (growth, saves through instance files, exact resume
  through the real command, the memory estimate).
- :func:`check_family` drives a family's hooks as hera does and checks the
  contract: runs split by saves give the bits of one run, input lines
  included; a save loads back unchanged.
- :func:`check_ranks`: a family that can be split (``hera_load_shard``)
  gives on 2 and 3 ranks, real processes joined by gloo, the bits of one
  process, and a save from N ranks goes on exactly on M.
- :func:`assert_parity` and :func:`same_bits`: a kernel against its
  reference, bit for bit.
- :class:`World` (and :func:`make_world`): private HOME, data, runtime and
  working directories, and the real ``hera`` command run in them.
- As a pytest plugin (installed with hera), the fixture ``hera_world``: a
  :class:`World` under the test's ``tmp_path``; whatever a test leaves up in
  it is killed afterwards.

See docs/writing-a-family.md, "Testing your family". Importing this module
imports neither torch, hypothesis nor the families.
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
from typing import Any, Callable, Iterator, Sequence


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

    :raises AssertionError: naming what differs.
    """
    from hera.plugins import create_manager

    plugins = create_manager()
    plugins.register(plugin, f"checked-{family}")
    hook = plugins.family_hooks(family)
    built = hook.hera_build(layout=layout, overrides=dict(overrides or {}),
                            seed=seed)
    assert built is not None, f"hera_build gave nothing for {family}/{layout}"

    def run(pieces: Sequence[int]) -> Any:
        tensors, state, snapshot = built.tensors, None, None
        for piece, steps in enumerate(pieces):
            loaded = hook.hera_load(definition=dict(built.definition),
                                    tensors=tensors, state=state, device=device, seed=seed)
            for line in lines if piece == 0 else ():
                assert hook.hera_encode_input(agent=loaded.handle,
                                              line=line), f"input line {line!r} not taken"
            taken = hook.hera_step(agent=loaded.handle, steps=steps)
            assert taken == steps, f"hera_step took {taken} steps of {steps}"
            snapshot = hook.hera_serialize(agent=loaded.handle)
            tensors, state = snapshot.tensors, snapshot.state
        return snapshot

    whole = run([sum(plan)])
    same_snapshots(run(list(plan)), whole,
                   f"{' + '.join(map(str, plan))} steps against {sum(plan)}")
    again = hook.hera_load(definition=dict(whole.definition),
                           tensors=whole.tensors, state=whole.state, device=device, seed=seed)
    same_snapshots(hook.hera_serialize(agent=again.handle), whole, "a save loaded back")
    return whole


def check_ranks(plugin: Any, family: str, layout: str = "example", *,
                ranks: Sequence[int] = (2, 3), plan: Sequence[int] = (7, 6),
                lines: Sequence[str] = (), overrides: dict[str, Any] | None = None,
                seed: int = 42) -> None:
    """Check that ``plugin``'s family splits over ranks exactly, as
    :mod:`hera.distributed` runs it: for each number of ``ranks``, real
    processes on this machine joined by gloo load the built agent with
    ``hera_load_shard``, take ``lines`` (``hera_encode_input``), then run
    each number of ``plan`` steps with a save (``hera_serialize``) and an
    output line (``hera_decode_output``) after each; every save and line
    must equal, bit for bit, those of one process (``hera_load``). Then
    the last save of each number of ranks goes on for ``plan[0]`` steps on
    the next number (cyclically), equal to one process going on.
    ``plugin`` must be importable by name in a fresh process (a module).

    :raises AssertionError: naming what differs.
    """
    import types

    import torch.multiprocessing as mp

    if not isinstance(plugin, types.ModuleType):
        raise TypeError("check_ranks takes the family's plugin module (its ranks import it "
                        "by name)")

    def alone(start: Any, pieces: Sequence[int], fed: Sequence[str]) -> list[Any]:
        return _run_pieces(_hooks(plugin, family), None, family, layout, overrides, seed,
                           start, pieces, fed)

    single = alone(None, plan, lines)
    for i, count in enumerate(ranks):
        got = _on_ranks(mp, count, plugin, family, layout, overrides, seed, None, plan, lines)
        for piece, (a, b) in enumerate(zip(got, single)):
            what = f"{family}/{layout} on {count} ranks, after run {piece + 1} of {list(plan)}"
            same_snapshots(a[0], b[0], what)
            assert a[1] == b[1], f"{what}: output line {a[1]!r} against {b[1]!r}"
        other = ranks[(i + 1) % len(ranks)]
        went_on = _on_ranks(mp, other, plugin, family, layout, overrides, seed, got[-1][0],
                            plan[:1], ())
        same_snapshots(went_on[-1][0], alone(single[-1][0], plan[:1], ())[-1][0],
                       f"{family}/{layout} saved on {count} ranks, going on on {other}")


def _hooks(plugin: Any, family: str) -> Any:
    from hera.plugins import create_manager

    plugins = create_manager()
    plugins.register(plugin, f"checked-{family}")
    return plugins.family_hooks(family)


def _run_pieces(hook: Any, shard: Any, family: str, layout: str, overrides: Any, seed: int,
                start: Any, pieces: Sequence[int], lines: Sequence[str]) -> list[Any]:
    """``[(snapshot, output line)]`` after each of ``pieces`` steps of one
    load: of the whole agent (``shard`` None), or of this rank's part."""
    built = hook.hera_build(layout=layout, overrides=dict(overrides or {}), seed=seed)
    assert built is not None, f"hera_build gave nothing for {family}/{layout}"
    tensors, state = (built.tensors, None) if start is None else (start.tensors, start.state)
    root = shard is None or shard.rank == 0
    if shard is None:
        loaded = hook.hera_load(definition=dict(built.definition), tensors=tensors,
                                state=state, device="cpu", seed=seed)
    else:
        loaded = hook.hera_load_shard(definition=dict(built.definition),
                                      tensors=tensors if root else None,
                                      state=state if root else None, device="cpu",
                                      seed=seed, shard=shard)
    assert loaded is not None, f"{family} loaded nothing"
    for line in lines:
        assert hook.hera_encode_input(agent=loaded.handle, line=line) or not root, \
            f"input line {line!r} not taken"
    found = []
    for steps in pieces:
        taken = hook.hera_step(agent=loaded.handle, steps=steps)
        assert taken == steps or not root, f"hera_step took {taken} steps of {steps}"
        found.append((hook.hera_serialize(agent=loaded.handle),
                      hook.hera_decode_output(agent=loaded.handle)))
    return found


def _on_ranks(mp: Any, count: int, plugin: Any, family: str, layout: str, overrides: Any,
              seed: int, start: Any, pieces: Sequence[int], lines: Sequence[str]) -> list[Any]:
    import socket
    import tempfile

    import torch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rank0.pt"
        mp.spawn(_rank_main, args=(count, port, plugin.__name__, family, layout, overrides, seed,
                                   start, pieces, lines, str(out)), nprocs=count)
        return torch.load(out, weights_only=False)


def _rank_main(rank: int, count: int, port: int, module: str, family: str, layout: str,
               overrides: Any, seed: int, start: Any, pieces: Sequence[int],
               lines: Sequence[str], out: str) -> None:
    """One rank of :func:`check_ranks`, in a process of its own."""
    import importlib

    import torch
    import torch.distributed as dist

    from hera.hooks.types import Shard

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=count)
    try:
        plugin = importlib.import_module(module)
        found = _run_pieces(_hooks(plugin, family), Shard(rank, count, dist.group.WORLD),
                            family, layout, overrides, seed, start, pieces, lines)
        if rank == 0:
            torch.save(found, out)
    finally:
        dist.destroy_process_group()


def same_snapshots(a: Any, b: Any, what: str) -> None:
    """Assert that two snapshots (or built agents) hold the same definition,
    tensors (names, dtypes, shapes and bits: NaN and -0.0 included) and
    state.

    :raises AssertionError: naming the first thing that differs.
    """
    assert a.definition == b.definition, f"{what}: other definitions"
    _same_tensors(a.tensors, b.tensors, what, "tensor")
    a_state, b_state = getattr(a, "state", None), getattr(b, "state", None)
    assert (a_state is None) == (b_state is None), f"{what}: state"
    if a_state is not None:
        _same_tensors(a_state.tensors, b_state.tensors, what, "state tensor")
        assert a_state.values == b_state.values, f"{what}: state values"


def _same_tensors(a: dict, b: dict, what: str, kind: str) -> None:
    assert a.keys() == b.keys(), f"{what}: {kind}s {sorted(a)} against {sorted(b)}"
    for name in a:
        assert same_bits(a[name], b[name]), f"{what}: {kind} {name!r}"


def same_bits(a: Any, b: Any) -> bool:
    """Whether two tensors have the same dtype, shape and bits (NaN equal to
    the same NaN, -0.0 unequal to 0.0): the test of a kernel against its
    reference, at ``atol=0``."""
    import torch

    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.is_floating_point:
        size = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        return torch.equal(a.contiguous().view(size).cpu(), b.contiguous().view(size).cpu())
    return torch.equal(a.cpu(), b.cpu())


def assert_parity(reference: Callable[..., Any], kernel: Callable[..., Any],
                  *args: Any, **kwargs: Any) -> Any:
    """Run ``reference`` and ``kernel`` on their own copies of the same
    arguments and assert that they give the same bits: what they return and
    every tensor argument they change in place (``atol=0``).

    Use it for a Triton kernel against its plain-PyTorch reference; on a
    machine without a GPU, run the tests with ``TRITON_INTERPRET=1`` so that
    Triton interprets the kernel on the CPU. Give random, non-zero inputs
    and sizes that are not multiples of the kernel's block.

    :return: the kernel's result.
    :raises AssertionError: naming the argument or result that differs.
    """
    import torch

    def copies() -> tuple[list[Any], dict[str, Any]]:
        clone = lambda v: v.clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
        return [clone(a) for a in args], {k: clone(v) for k, v in kwargs.items()}

    ref_args, ref_kwargs = copies()
    ker_args, ker_kwargs = copies()
    expected = reference(*ref_args, **ref_kwargs)
    got = kernel(*ker_args, **ker_kwargs)
    for where, ref, ker in [*((f"argument {i}", r, k) for i, (r, k)
                              in enumerate(zip(ref_args, ker_args))),
                            *((f"argument {k!r}", ref_kwargs[k], ker_kwargs[k])
                              for k in ref_kwargs), ("the result", expected, got)]:
        if isinstance(ref, torch.Tensor):
            assert isinstance(ker, torch.Tensor) and same_bits(ref, ker), \
                f"the kernel and the reference differ in {where}"
    return got


def live_tensor_bytes(handle: Any) -> int:
    """The bytes of every torch tensor a live agent holds (reached through
    its attributes, lists, tuples and dicts; a storage shared by several
    tensors counted once): what its ``hera_load`` allocated in tensors."""
    import torch

    seen_objects: set[int] = set()
    storages: dict[tuple[str, int], int] = {}
    todo = [handle]
    while todo:
        value = todo.pop()
        if id(value) in seen_objects:
            continue
        seen_objects.add(id(value))
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            storages[(str(value.device), storage.data_ptr())] = storage.nbytes()
        elif isinstance(value, dict):
            todo.extend(value.values())
        elif isinstance(value, (list, tuple, set)):
            todo.extend(value)
        elif hasattr(value, "__dict__") and not isinstance(value, type) \
                and type(value).__module__.split(".")[0] not in ("torch", "builtins"):
            todo.extend(vars(value).values())
    return sum(storages.values())


def conformance(plugin: Any, family: str, layout: str = "example", *,
                grow: dict[str, int] | None = None,
                old_region: Callable[[str, Any, Any, Any, Any], Any] | None = None,
                lines: Sequence[str] = (), overrides: dict[str, Any] | None = None,
                package: str | os.PathLike | None = None, device: str = "cpu",
                examples: int = 10) -> type:
    """The conformance suite of a family, as a pytest test class: assign it
    to a name that starts with ``Test`` in a test module, and pytest runs it::

        TestLeaky = conformance(hera_family_leaky, "leaky", grow={"size": 4})

    Its tests (hypothesis draws the numbers):

    - runs split by saves give the bits of one run (:func:`check_family`);
    - growing keeps the old region: every learned and state tensor of the
      agent before is, bit for bit, its old region after (see
      ``old_region``); growing by ``a`` and then ``b`` gives the bits of
      growing by ``a + b``; shrinking is refused with ``DefinitionError``;
    - a save round-trips through a real instance file, and loads back to
      the same save;
    - through the real ``hera`` command, ``up --steps N``, down, and ``up
      --steps N`` again give the bits of ``up --steps 2N`` on a twin;
    - ``hera_simulate``'s total is within 10% of the bytes of the tensors
      the loaded agent holds (:func:`live_tensor_bytes`).

    :param plugin: the family's plugin (its module or object).
    :param family: its name.
    :param layout: a small layout to test with.
    :param grow: the parameters that grow, each with the largest step to
        try; ``None``: the family does not grow, and growth is not tested.
    :param old_region: ``(name, grown, old, before, after)`` → the part of
        tensor ``grown`` that holds tensor ``old`` (``name`` is ``state.X``
        for state tensor ``X``; ``before`` and ``after`` are the agent's
        snapshots); default: its leading part, of ``old``'s shape (for
        families that grow by appending). Return ``old`` itself for a
        tensor whose old contents the family does not keep on purpose.
    :param lines: input lines fed at the start of the split-run check.
    :param overrides: layout parameters for every build.
    :param package: where the ``hera`` command finds the family when it is
        not installed: a ``hera_family_<name>`` package directory, or the
        family's one-file module, copied into the test's working directory.
        Default: ``plugin``'s own package or file, unless an entry point
        names it (installed).
    :param device: the device to load on.
    :param examples: hypothesis examples per property.
    """
    import shutil

    import pytest
    from hypothesis import given, settings
    from hypothesis import strategies as st

    overrides = dict(overrides or {})
    region = old_region or _leading_part
    per_property = settings(max_examples=examples, deadline=None)

    def hooks() -> Any:
        from hera.plugins import create_manager

        plugins = create_manager()
        plugins.register(plugin, f"checked-{family}")
        return plugins.family_hooks(family)

    def lived(steps: int, seed: int) -> Any:
        hook = hooks()
        built = hook.hera_build(layout=layout, overrides=dict(overrides), seed=seed)
        loaded = hook.hera_load(definition=dict(built.definition), tensors=built.tensors,
                                state=None, device=device, seed=seed)
        for line in lines:
            hook.hera_encode_input(agent=loaded.handle, line=line)
        hook.hera_step(agent=loaded.handle, steps=steps)
        return hook.hera_serialize(agent=loaded.handle)

    def grown(snapshot: Any, more: dict[str, int], seed: int) -> Any:
        changes = {k: snapshot.definition[k] + v for k, v in more.items()}
        return hooks().hera_grow(definition=dict(snapshot.definition),
                                 tensors=snapshot.tensors, state=snapshot.state,
                                 changes=changes, seed=seed)

    growing = st.fixed_dictionaries({k: st.integers(0, most)
                                     for k, most in (grow or {}).items()})

    class FamilyConformance:
        def test_runs_split_by_saves_give_the_bits_of_one_run(self) -> None:
            check_family(plugin, family, layout, lines=lines, overrides=overrides,
                         device=device)

        @pytest.mark.skipif(grow is None, reason=f"{family} does not grow")
        @per_property
        @given(growing, st.integers(0, 30), st.integers(0, 2 ** 32))
        def test_growing_keeps_the_old_region(self, more: dict, steps: int, seed: int) -> None:
            before = lived(steps, seed)
            after = grown(before, more, seed)
            for prefix, old, new in (("", before.tensors, after.tensors),
                                     ("state.", before.state.tensors, after.state.tensors)):
                for name, tensor in old.items():
                    assert name in new, f"growing lost tensor {prefix}{name!r}"
                    part = region(prefix + name, new[name], tensor, before, after)
                    assert same_bits(part, tensor), \
                        f"growing by {more} changed the old region of tensor {prefix}{name!r}"

        @pytest.mark.skipif(grow is None, reason=f"{family} does not grow")
        @per_property
        @given(growing, growing, st.integers(0, 30), st.integers(0, 2 ** 32))
        def test_growing_by_a_then_b_equals_growing_by_a_plus_b(
                self, a: dict, b: dict, steps: int, seed: int) -> None:
            before = lived(steps, seed)
            both = {k: a[k] + b[k] for k in a}
            same_snapshots(grown(grown(before, a, seed), b, seed), grown(before, both, seed),
                           f"growing by {a} then {b} against {both}")

        @pytest.mark.skipif(grow is None, reason=f"{family} does not grow")
        def test_shrinking_is_refused(self) -> None:
            from hera.errors import DefinitionError

            before = lived(3, 1)
            for name in grow or {}:
                if before.definition[name] > 0:
                    with pytest.raises(DefinitionError):
                        grown(before, {name: -1}, 1)

        @per_property
        @given(st.integers(0, 40), st.integers(0, 2 ** 32))
        def test_a_save_round_trips_through_an_instance_file(self, steps: int,
                                                             seed: int) -> None:
            import tempfile

            from hera.instance import InstanceFile

            saved = lived(steps, seed)
            meta = {"id": "00000000-0000-4000-8000-000000000000", "callsign": "round-trip",
                    "family": {"name": family, "version": "0", "data_format": 1},
                    "layout": layout, "created": "2026-01-01T00:00:00+00:00", "seed": seed,
                    "steps": steps, "incarnation": 1, "hera_version": "0"}
            file = InstanceFile(meta=meta, definition=dict(saved.definition))
            file.set_tensors(saved.tensors, saved.state)
            with tempfile.TemporaryDirectory() as where:
                path = Path(where) / "agent.json"
                file.write(path)
                back = InstanceFile.read(path)
            from hera.hooks.types import Snapshot

            read = Snapshot(back.definition, back.tensors(), back.state())
            same_snapshots(read, saved, "an instance file read back")
            hook = hooks()
            again = hook.hera_load(definition=dict(read.definition), tensors=read.tensors,
                                   state=read.state, device=device, seed=seed)
            same_snapshots(hook.hera_serialize(agent=again.handle), saved,
                           "a save loaded back from its file")

        def test_resume_through_the_hera_command_is_exact(self, tmp_path: Path) -> None:
            worlds = [make_world(tmp_path / name) for name in ("split", "whole")]
            try:
                source = package if package is not None else _uninstalled_source(plugin)
                for world in worlds:
                    if source is not None and Path(source).is_dir():
                        shutil.copytree(source, world.workdir / f"hera_family_{family}")
                    elif source is not None:
                        home = world.workdir / f"hera_family_{family}"
                        home.mkdir()
                        shutil.copy(source, home / "__init__.py")
                split, whole = worlds
                sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")]
                agent_id, path = split.build(*sets, family=family, layout=layout)
                shutil.copy(path, whole.workdir / path.name)
                split.run("up", path.name, "--steps", "25")
                split.run("--uuid", agent_id, "up", "--steps", "25")
                whole.run("up", path.name, "--steps", "50")
                from hera.instance import InstanceFile
                from hera.hooks.types import Snapshot

                a, b = (InstanceFile.read(w.agents_dir / f"{agent_id}.json") for w in worlds)
                assert a.steps == b.steps == 50
                same_snapshots(Snapshot(a.definition, a.tensors(), a.state()),
                               Snapshot(b.definition, b.tensors(), b.state()),
                               "25 + 25 steps through 'hera up' against 50")
            finally:
                for world in worlds:
                    kill_leftovers(world.runtime)

        def test_simulate_is_within_10_percent_of_what_load_holds(self) -> None:
            hook = hooks()
            built = hook.hera_build(layout=layout, overrides=dict(overrides), seed=1)
            report = hook.hera_simulate(definition=dict(built.definition), device=device)
            loaded = hook.hera_load(definition=dict(built.definition), tensors=built.tensors,
                                    state=None, device=device, seed=1)
            hook.hera_step(agent=loaded.handle, steps=1)
            held = live_tensor_bytes(loaded.handle)
            assert abs(report.total - held) <= 0.1 * held, \
                f"hera_simulate says {report.total} bytes; the loaded agent holds {held}"

    FamilyConformance.__name__ = FamilyConformance.__qualname__ = f"Test{family.title()}Conformance"
    return FamilyConformance


def _uninstalled_source(plugin: Any) -> Path | None:
    """Where a family module that no entry point names lives (its package
    directory, or its file), for the ``hera`` command of a test's world to
    find it in the working directory; ``None`` for an installed family."""
    from importlib.metadata import entry_points

    name = getattr(plugin, "__name__", "")
    if not name or getattr(plugin, "__file__", None) is None:
        return None
    if any(ep.value.split(":")[0] == name for ep in entry_points(group="hera.families")):
        return None
    path = Path(plugin.__file__)
    return path.parent if path.name == "__init__.py" else path


def _leading_part(name: str, grown: Any, old: Any, before: Any, after: Any) -> Any:
    """The default old region: the leading part of ``grown``, of ``old``'s
    shape (for families that grow by appending)."""
    if grown.dim() != old.dim() or any(g < o for g, o in zip(grown.shape, old.shape)):
        return grown  # another shape: the comparison says so
    return grown[tuple(slice(0, n) for n in old.shape)]


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
