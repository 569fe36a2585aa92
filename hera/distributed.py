"""One agent on several processes, over torch.distributed.

Rank 0 is the agent's face: it is ``hera up`` itself, with the lock, the
pid-file, the control channel, the signals, the console and the saves.
Every other rank is a *worker*: it holds its part of the agent
(``hera_load_shard``) and does what rank 0 tells it. Rank 0 tells every
hook call it makes on the agent to the workers first (one broadcast on the
*command* group), then makes it itself, so each hook runs on every rank with
the same arguments and in the same order and the family's own collectives
line up; those run on the *agent* group, whose operations time out after
``--rank-timeout`` seconds, which is how a hung rank is found.

``hera up --ranks N`` spawns the N - 1 workers on this machine
(:meth:`World.spawn`); under ``torchrun`` every process runs ``hera up ID
--distributed`` and reads its rank from the environment
(:meth:`World.join`), and those of rank > 0 serve as workers
(:func:`serve_worker`).

A worker that fails writes why into the rendezvous store before it exits,
and rank 0, whose collective then fails, names that rank
(:meth:`World.failure`). Workers ignore SIGINT and SIGTERM (a terminal's
Ctrl-C reaches the whole foreground group): rank 0 alone decides when the
agent stops, and tells them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any, Callable

from hera.errors import HeraError, RankLost

#: Seconds an operation between ranks may wait before the agent stops (a
#: hung rank); ``--rank-timeout`` or this environment variable.
TIMEOUT_ENV = "HERA_RANK_TIMEOUT"
DEFAULT_TIMEOUT = 120.0
#: How long a worker waits for rank 0's next command: as long as the
#: agent is up, paused or not. (Rank 0 never waits that long: a command
#: it sends must be taken within the rank timeout.)
_FOREVER = timedelta(days=3650)
#: How a worker's report begins when it only lost touch with another rank.
_LOST = "lost touch: "
#: Environment of a worker that ``hera up --ranks`` spawned: where the
#: ranks meet (a file store in a directory of rank 0's user alone).
_SPAWNED = "HERA_RANKS_STORE"
#: The network interface spawned ranks talk on: this machine's loopback.
_LOOPBACK = "lo"


def rank_timeout(given: float | None = None) -> float:
    """The rank timeout in seconds: ``given``, else ``HERA_RANK_TIMEOUT``,
    else 120."""
    if given is not None:
        if not given > 0:
            raise HeraError("--rank-timeout must be more than 0 seconds")
        return given
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise HeraError(f"{TIMEOUT_ENV} must be a number of seconds > 0, not {text!r}")
    return value


def launched_rank() -> int | None:
    """This process's rank under torchrun (``RANK``), or ``None`` when it
    was not launched as one of several ranks."""
    text = os.environ.get("RANK")
    if text is None or os.environ.get("WORLD_SIZE") is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise HeraError(f"RANK must be a whole number, not {text!r}") from None


class World:
    """The ranks of one agent, seen from one of them.

    :ivar rank: this process's rank.
    :ivar ranks: how many there are.
    :ivar group: the agent group (``Shard.group``): the family's collectives.
    """

    def __init__(self, rank: int, ranks: int, store: Any, timeout: float,
                 children: list[subprocess.Popen] | None = None):
        self.rank, self.ranks, self.store, self.timeout = rank, ranks, store, timeout
        self.children = children if children is not None else []
        self.private: str | None = None  # the spawned ranks' meeting place
        self.group: Any = None
        self.commands: Any = None  # the group rank 0's commands go by
        self.broken = False
        #: why the ranks cannot go on (raised again by every later tell)
        self.lost: RankLost | None = None
        self.device_type = "cpu"

    # -- forming -------------------------------------------------------------------

    @classmethod
    def spawn(cls, ranks: int, timeout: float, device: str) -> "World":
        """Rank 0 of ``ranks`` on this machine, the agent on ``device``:
        start the store, spawn the workers, wait until each has joined (one
        that exits first fails the up, naming it), form the groups."""
        import tempfile

        import torch.distributed as dist

        # The ranks meet through a file only this user can reach (a TCP
        # store would let anyone on the machine, or the network, write the
        # addresses the ranks connect to), and gloo listens on loopback.
        private = tempfile.mkdtemp(prefix="hera-ranks-")
        meeting = os.path.join(private, "store")
        try:
            store = dist.FileStore(meeting, ranks)
            store.set_timeout(timedelta(seconds=timeout))
        except (RuntimeError, OSError) as exc:
            shutil.rmtree(private, ignore_errors=True)
            raise HeraError(f"cannot start the ranks in {private}: {_first_line(exc)}") from None
        os.environ.setdefault("GLOO_SOCKET_IFNAME", _LOOPBACK)
        env = dict(os.environ, WORLD_SIZE=str(ranks),
                   **{TIMEOUT_ENV: repr(timeout), _SPAWNED: meeting})
        # the machine's cores shared out: ranks that each take them all slow
        # one another down (as torchrun's OMP_NUM_THREADS=1 does)
        given = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(given) if given.isdigit() and int(given) > 0 else \
            max(1, (os.cpu_count() or 1) // ranks)
        env["OMP_NUM_THREADS"] = str(threads)
        _use_threads(threads)
        children: list[subprocess.Popen] = []
        world = cls(0, ranks, store, timeout, children)
        world.private = private
        try:
            for r in range(1, ranks):
                # a file, not a pipe: a worker's warnings must never block it
                errors = tempfile.TemporaryFile()
                child = subprocess.Popen(
                    [sys.executable, "-m", "hera.distributed"],
                    env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
                child.errors = errors  # type: ignore[attr-defined]
                children.append(child)
            world._start(device)
        except BaseException:
            world.abort()
            raise
        return world

    @classmethod
    def join(cls, timeout: float, device: str | None = None) -> "World":
        """This process's place among ranks launched by torchrun (or
        spawned by rank 0): ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
        ``MASTER_PORT`` from the environment."""
        import torch.distributed as dist

        rank, ranks = launched_rank(), int(os.environ["WORLD_SIZE"])
        meeting = os.environ.get(_SPAWNED)
        if meeting:  # spawned by a rank 0 on this machine (World.spawn)
            store = dist.FileStore(meeting, ranks)
            store.set_timeout(timedelta(seconds=timeout))
            world = cls(rank, ranks, store, timeout)
            store.set(f"hera/ready/{rank}", "1")
            world.connect(store.get("hera/device").decode())
            return world
        address, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
        if rank is None or address is None or port is None:
            raise HeraError("--distributed runs under torchrun: RANK, WORLD_SIZE, MASTER_ADDR "
                            "and MASTER_PORT must be set")
        # under torchrun's agent the store already runs; otherwise rank 0 hosts it
        hosted = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        try:
            store = dist.TCPStore(address, int(port), ranks,
                                  is_master=rank == 0 and not hosted,
                                  timeout=timedelta(seconds=timeout),
                                  wait_for_workers=False)
        except (RuntimeError, ValueError) as exc:
            raise HeraError(f"rank {rank} cannot reach rank 0 at {address}:{port}: "
                            f"{_first_line(exc)}") from None
        # a torchrun that restarts its ranks reuses the store: this attempt's keys only
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"hera-attempt-{attempt}", store)
        world = cls(rank, ranks, store, timeout)
        if rank > 0:
            store.set(f"hera/ready/{rank}", "1")
            world.connect(store.get("hera/device").decode())
        else:
            world._start(device or "cpu")
        return world

    def _start(self, device: str) -> None:
        """Rank 0: say where the agent runs, wait for every worker, form
        the groups."""
        self.store.set("hera/device", device)
        self._wait_for_workers()
        self.connect(device)

    def _wait_for_workers(self) -> None:
        deadline = time.monotonic() + self.timeout
        waiting = set(range(1, self.ranks))
        while waiting:
            for r in sorted(waiting):
                if self.store.check([f"hera/ready/{r}"]):
                    waiting.discard(r)
            problem = self._problem()
            if problem is not None:
                raise HeraError(f"rank {problem[0]} could not start: {problem[1]}")
            if waiting and time.monotonic() > deadline:
                raise HeraError(f"rank {min(waiting)} did not start within {self.timeout:g} s")
            if waiting:
                time.sleep(0.02)

    def connect(self, device: str) -> None:
        """Form the process groups for an agent on ``device`` (rank 0's):
        commands on gloo, the agent's on gloo (CPU) or NCCL (CUDA)."""
        import torch.distributed as dist

        self.device_type = device.split(":")[0]
        if self.device_type == "cuda":  # before NCCL: each rank on its own GPU
            import torch

            torch.cuda.set_device(self.device)
        dist.init_process_group("gloo", store=self.store, rank=self.rank,
                                world_size=self.ranks, timeout=timedelta(seconds=self.timeout))
        self.commands = dist.new_group(backend="gloo", timeout=_FOREVER)
        backend = "nccl" if self.device_type == "cuda" else "gloo"
        self.group = dist.new_group(backend=backend, timeout=timedelta(seconds=self.timeout))

    @property
    def device(self) -> str:
        """This rank's device: the CPU, or the GPU of its local number."""
        if self.device_type != "cuda":
            return "cpu"
        return f"cuda:{int(os.environ.get('LOCAL_RANK', self.rank))}"

    # -- rank 0: telling -----------------------------------------------------------------

    def tell(self, name: str, **arguments: Any) -> None:
        """Rank 0: have every worker do ``name`` with ``arguments``. Each
        must take it within the rank timeout (a gloo send waits for its
        receiver), so a worker that hangs while the agent is idle is found
        at the next command.

        :raises RankLost: a rank was lost, now or before.
        """
        import pickle

        import torch
        import torch.distributed as dist

        if self.lost is not None:
            raise self.lost
        payload = torch.frombuffer(bytearray(pickle.dumps((name, arguments))), dtype=torch.uint8)
        size = torch.tensor([payload.numel()], dtype=torch.int64)
        try:
            sent = [dist.isend(part, r, group=self.commands)
                    for r in range(1, self.ranks) for part in (size, payload)]
            for work in sent:
                work.wait(timedelta(seconds=self.timeout))
        except RuntimeError as exc:
            raise self.failure(exc) from None

    def failure(self, exc: BaseException) -> RankLost:
        """Rank 0: what went wrong among the ranks, as one line naming the
        rank where it can, after an operation between them failed with
        ``exc``; the agent cannot go on, so the workers are stopped, and
        every later :meth:`tell` raises the same."""
        if self.lost is not None:
            return self.lost
        self.broken = True
        problem = self._problem(wait=min(3.0, self.timeout))
        self.abort()
        tail = "; every rank is stopped, and the agent's last save is kept"
        text = _first_line(exc)
        if problem is not None:
            self.lost = RankLost(f"rank {problem[0]} {problem[1]}{tail}")
        elif "timed out" in text.lower() or "timeout" in text.lower():
            self.lost = RankLost(f"a rank did not answer within {self.timeout:g} s (hung?){tail}")
        else:
            self.lost = RankLost(f"lost a rank: {text}{tail}")
        return self.lost

    def abandon(self, exc: BaseException) -> None:
        """Rank 0 failed on its own (``exc``, not a rank lost): the others
        cannot go on without it, so they are stopped."""
        if self.lost is None:
            self.broken = True
            self.abort()
            self.lost = RankLost(f"rank 0 failed ({type(exc).__name__}: {_first_line(exc)}); "
                                 "every rank is stopped, and the agent's last save is kept")

    def _problem(self, wait: float = 0.0) -> tuple[int, str] | None:
        """``(rank, what happened)`` for the worker at the root of a
        failure: one that reported a failure of its own, or (spawned here)
        was killed, exited or is stopped; failing that, once the others
        have said they lost touch (within ``wait`` seconds), one that said
        nothing. ``None`` if none is found."""
        deadline = time.monotonic() + wait
        while True:
            reports = self._reports()
            own = [(r, text) for r, text in reports.items() if not text.startswith(_LOST)]
            if own:
                return own[0]
            for r, child in enumerate(self.children, start=1):
                code = child.poll()
                if code is not None and (code < 0 or r not in reports):
                    last = _last_line(child)
                    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else \
                        f"exited with status {code}"
                    return r, f"(pid {child.pid}) {how}" + (f": {last}" if last else "")
                if code is None and _stopped(child.pid):
                    return r, f"(pid {child.pid}) is stopped and does not answer"
            silent = [r for r in range(1, self.ranks) if r not in reports]
            if not silent or time.monotonic() >= deadline:
                return (silent[0], "stopped answering (killed, hung, or its machine is "
                                   "gone)") if silent and wait else None
            time.sleep(0.05)

    def _reports(self) -> dict[int, str]:
        """What the workers have reported, by rank."""
        found = {}
        for r in range(1, self.ranks):
            key = f"hera/error/{r}"
            try:
                if self.store.check([key]):
                    found[r] = self.store.get(key).decode(errors="replace")
            except RuntimeError:  # the store is gone with rank 0's side of it
                break
        return found

    def close(self) -> None:
        """Rank 0: tell the workers the agent is down and wait for them."""
        if not self.broken and self.group is not None:
            try:
                self.tell("end")
            except HeraError:
                pass
        deadline = time.monotonic() + 10
        for child in self.children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.abort()

    def abort(self) -> None:
        """Stop every spawned worker at once."""
        for child in self.children:
            if child.poll() is None:
                child.kill()
        for child in self.children:
            child.wait()
            child.errors.close()  # type: ignore[attr-defined]
        self.children = []
        _leave()
        if self.private is not None:
            shutil.rmtree(self.private, ignore_errors=True)
            self.private = None

    # -- a worker ------------------------------------------------------------------------

    def report(self, message: str) -> None:
        """A worker: tell rank 0 why this rank is failing."""
        try:
            self.store.set(f"hera/error/{self.rank}", message)
        except RuntimeError:
            pass

    def receive(self) -> tuple[str, dict[str, Any]]:
        """A worker: rank 0's next command (:meth:`tell`)."""
        import pickle

        import torch
        import torch.distributed as dist

        size = torch.empty(1, dtype=torch.int64)
        dist.recv(size, 0, group=self.commands)
        payload = torch.empty(int(size), dtype=torch.uint8)
        dist.recv(payload, 0, group=self.commands)
        return pickle.loads(payload.numpy().tobytes())


class ShardedHooks:
    """Rank 0's hooks of a sharded agent: each call is told to the workers,
    then made here. A failure between ranks becomes one line naming the
    rank (:meth:`World.failure`)."""

    def __init__(self, hooks: Any, world: World):
        self._hooks, self._world = hooks, world

    def __getattr__(self, name: str) -> Callable[..., Any]:
        local = getattr(self._hooks, name)
        world = self._world

        def call(**arguments: Any) -> Any:
            world.tell(name, **{k: v for k, v in arguments.items() if k != "agent"})
            return _on_rank_0(world, local, arguments)

        setattr(self, name, call)
        return call


def _on_rank_0(world: World, hook: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    """Rank 0's half of a hook call the workers were told: a refusal
    (HeraError, met on every rank alike) passes; a failure between ranks is
    a lost rank; any other failure here stops the workers."""
    try:
        return hook(**arguments)
    except HeraError:
        raise
    except Exception as exc:
        if _lost_touch(exc):
            raise world.failure(exc) from None
        world.abandon(exc)
        raise


def check_family(plugins: Any, family: str) -> None:
    """Refuse a family whose agents cannot be split (no ``hera_load_shard``)."""
    if "hera_load_shard" not in plugins.hooks_of(plugins.family_hooks(family).plugin):
        raise HeraError(f"family {family} cannot run on several ranks: it has no "
                        "hera_load_shard (see docs/distributed.md)")


def load(world: World, plugins: Any, family: str, definition: dict[str, Any],
         tensors: Any, state: Any, seed: int) -> Any:
    """Rank 0: load the agent on every rank (``hera_load_shard``); what
    rank 0's part is."""
    from hera.hooks.types import Shard

    hooks = plugins.family_hooks(family)
    world.tell("load", family=family, definition=definition, seed=seed)
    loaded = _on_rank_0(world, hooks.hera_load_shard, dict(
        definition=definition, tensors=tensors, state=state, device=world.device, seed=seed,
        shard=Shard(0, world.ranks, world.group)))
    world.tell("loaded")  # a worker that failed to load is found here
    if loaded is None:
        raise HeraError(f"family {family} did not load its part on rank 0")
    return loaded


def serve_worker(timeout: float | None = None) -> int:
    """A worker's life: join the ranks, load this rank's part when told,
    then do each hook call rank 0 tells, until it tells the end. Returns
    the exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get(_SPAWNED):
        _die_with_parent()
    world = None
    try:
        world = World.join(rank_timeout(timeout))
        _serve(world)
    except HeraError as exc:
        return _worker_failed(world, exc.message)
    except Exception as exc:  # noqa: BLE001 - reported to rank 0, then this rank ends
        what = f"{type(exc).__name__}: {_first_line(exc)}"
        return _worker_failed(world, _LOST + what if _lost_touch(exc) else what)
    finally:
        _leave()
    return 0


def _serve(world: World) -> None:
    from hera.hooks.types import Shard
    from hera.plugins import load_plugins

    plugins = load_plugins()
    hooks, handle = None, None
    while True:
        name, arguments = world.receive()
        if name == "end":
            return
        if name == "loaded":
            continue
        if name == "load":
            hooks = plugins.family_hooks(arguments["family"])
            loaded = hooks.hera_load_shard(
                definition=arguments["definition"], tensors=None, state=None,
                device=world.device, seed=arguments["seed"],
                shard=Shard(world.rank, world.ranks, world.group))
            if loaded is None:
                raise HeraError(f"family {arguments['family']} did not load its part")
            handle = loaded.handle
            continue
        try:
            getattr(hooks, name)(agent=handle, **arguments)
        except HeraError:
            pass  # rank 0 made the same call, met the same refusal and says it


def _lost_touch(exc: BaseException) -> bool:
    """Whether ``exc`` says another rank went away (or did not answer),
    rather than that something failed here."""
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        word in text for word in ("gloo", "nccl", "connection", "timed out", "timeout"))


def _worker_failed(world: World | None, message: str) -> int:
    rank = os.environ.get("RANK", "?")
    if world is not None:
        world.report(message)
    print(f"hera rank {rank}: {message}", file=sys.stderr, flush=True)
    return 1


def _leave() -> None:
    """Leave the process groups, if this process is in them."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except (RuntimeError, ValueError):
            pass


def _die_with_parent() -> None:
    """A spawned worker ends with the rank 0 that spawned it (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os._exit(1)


def _use_threads(count: int) -> None:
    """Have this process's torch use ``count`` threads."""
    import torch

    torch.set_num_threads(max(1, count))


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (SIGSTOP): it will not answer."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"T", b"t")
    except (OSError, IndexError):
        return False


def _last_line(child: subprocess.Popen) -> str:
    """The last line a worker that ended wrote to its stderr."""
    errors = getattr(child, "errors", None)
    if errors is None:
        return ""
    try:
        errors.seek(0)
        text = errors.read().decode(errors="replace")
    except (OSError, ValueError):
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(exc).__name__


if __name__ == "__main__":
    sys.exit(serve_worker())
