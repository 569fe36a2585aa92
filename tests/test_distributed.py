"""One agent on several processes, through the real ``hera`` command:
``up --ranks N`` and torchrun's ``--distributed`` save the bits one process
saves; saved on N ranks it goes on exactly on M; rank 0 is the agent's face
(control channel, input and output, saves, down); a killed, hung or
failing rank stops every rank with one line naming it, and the last save
stays as it was."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from hera.instance import InstanceFile
from tests.conftest import make_world


def _twin(world, tmp_path, layout="example"):
    """An agent built in ``world`` and the same file in a second world."""
    agent_id, path = world.build(layout=layout)
    other = make_world(tmp_path / "other")
    shutil.copy(world.workdir / path.name, other.workdir / path.name)
    return agent_id, path, other


def _same_files(world, other, agent_id, steps):
    a = InstanceFile.read(world.agents_dir / f"{agent_id}.json")
    b = InstanceFile.read(other.agents_dir / f"{agent_id}.json")
    assert a.steps == b.steps == steps
    assert a.tensors()["weights"].any()
    # the same state, stored the same way: the tensor entries are byte-identical
    assert a.digests == b.digests
    assert a.state_values == b.state_values


@pytest.mark.parametrize("layout,ranks", [("example", 2), ("small", 3)])
def test_up_on_ranks_saves_the_bits_of_one_process(world, tmp_path, layout, ranks):
    agent_id, path, other = _twin(world, tmp_path, layout)
    shown = world.run("up", path.name, "--steps", "90", "--ranks", str(ranks))
    assert f"{ranks} ranks" in shown.stdout
    other.run("up", path.name, "--steps", "90", "--silent")
    _same_files(world, other, agent_id, 90)


def test_saved_on_n_ranks_it_goes_on_exactly_on_m(world, tmp_path):
    agent_id, path, other = _twin(world, tmp_path, "small")
    world.run("up", path.name, "--steps", "45", "--ranks", "2", "--silent")
    world.run("--uuid", agent_id, "up", "--steps", "40", "--ranks", "3", "--silent")
    world.run("--uuid", agent_id, "up", "--steps", "5", "--silent")  # and on one
    other.run("up", path.name, "--steps", "90", "--silent")
    _same_files(world, other, agent_id, 90)


def test_torchrun_ranks_save_the_bits_of_one_process(world, tmp_path):
    agent_id, path, other = _twin(world, tmp_path)
    world.env = {**world.env, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess_run(world, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  "--nproc-per-node", "2", "-m", "hera", "up", path.name,
                                  "--distributed", "--steps", "70", "--silent"])
    assert proc.returncode == 0, proc.stderr
    other.run("up", path.name, "--steps", "70", "--silent")
    _same_files(world, other, agent_id, 70)


_SESSION = """
import json, sys
from hera import api
with api.attach({agent!r}) as agent:
    agent.step(23)
    agent.feed("0.9 0.1 1 0 1 1")
    agent.step(17)
    agent.feed("spikes 1 4 9")
    agent.feed("reward 2")
    agent.step(11)
    line = agent.output_line()
    activity = agent.activity()
    agent.save()
    status = agent.status()
    agent.down()
print(json.dumps({{"line": line, "activity": activity, "ranks": status["ranks"]}}))
"""


def test_a_daemon_on_ranks_is_driven_through_rank_0_as_one_process(world, tmp_path):
    agent_id, path, other = _twin(world, tmp_path, "small")
    answers = []
    for place, extra in ((world, ("--ranks", "2")), (other, ())):
        # held at step 1 until driven: both take the same steps
        place.run("up", path.name, "--daemon", "--checkpoint", "0", "--break-at", "1", *extra)
        row = place.wait_for(agent_id, "paused")
        workers = _children(row["pid"])
        assert len(workers) == len(extra) // 2
        assert row["ranks"] == 1 + len(workers)
        answers.append(json.loads(place.run_python(_SESSION.format(agent=agent_id)).stdout))
        _gone(workers)
    on_ranks, alone = answers
    assert (on_ranks["ranks"], alone["ranks"]) == (2, 1)
    assert on_ranks["line"] == alone["line"] and on_ranks["activity"] == alone["activity"]
    assert sum(n for n, _ in alone["activity"].values()) > 0
    _same_files(world, other, agent_id, 52)


def test_signals_to_rank_0_reach_every_rank(world):
    """SIGUSR1 saves the whole agent from every rank; SIGTERM downs it and
    its ranks end with it."""
    agent_id, path = world.build(layout="small")
    proc = world.popen("up", path.name, "--ranks", "2", "--checkpoint", "0")
    row = world.wait_for(agent_id, "running", proc)
    workers = _children(row["pid"])
    # the ranks listen on loopback alone, and meet through a private file
    listening = [address for pid in [proc.pid, *workers] for address in _listening(pid)]
    assert listening and all(a.startswith("0100007F:") for a in listening), listening
    [meeting] = [e for e in Path(f"/proc/{workers[0]}/environ").read_bytes().split(b"\0")
                 if e.startswith(b"HERA_RANKS_STORE=")]
    folder = Path(meeting.split(b"=", 1)[1].decode()).parent
    assert folder.stat().st_mode & 0o077 == 0
    saved = world.agents_dir / f"{agent_id}.json"
    os.kill(proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 60
    while InstanceFile.read(saved).steps == 0:
        assert time.monotonic() < deadline, "SIGUSR1 saved nothing"
        time.sleep(0.1)
    checkpointed = InstanceFile.read(saved)
    assert checkpointed.state() is not None and checkpointed.tensors()["thresholds"].any()
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip().endswith("sigterm)")
    _gone(workers)
    assert InstanceFile.read(saved).steps > checkpointed.steps
    assert not folder.exists()


def test_when_rank_0_is_killed_its_ranks_end_too(world):
    agent_id, path = world.build(layout="small")
    proc = world.popen("up", path.name, "--ranks", "3", "--checkpoint", "0")
    row = world.wait_for(agent_id, "running", proc)
    workers = _children(row["pid"])
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    _gone(workers)
    assert InstanceFile.read(world.agents_dir / f"{agent_id}.json").steps == 0


def test_a_killed_rank_stops_every_rank_and_keeps_the_last_save(world):
    agent_id, path = world.build(layout="small")
    world.run("up", path.name, "--steps", "20", "--silent")
    proc = world.popen("--uuid", agent_id, "up", "--ranks", "3", "--checkpoint", "0")
    row = world.wait_for(agent_id, "running", proc)
    ranks = _ranks_of(_children(row["pid"]))
    time.sleep(0.5)
    os.kill(ranks[2], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    [line] = err.strip().splitlines()
    assert f"rank 2 (pid {ranks[2]}) was killed by SIGKILL" in line
    assert "every rank is stopped" in line
    _gone([ranks[1]])
    kept = InstanceFile.read(world.agents_dir / f"{agent_id}.json")
    assert kept.steps == 20  # the last save, whole
    world.run("--uuid", agent_id, "up", "--steps", "3", "--silent")  # nothing left locked


def test_a_hung_rank_is_found_within_the_timeout(world):
    agent_id, path = world.build(layout="small")
    proc = world.popen("up", path.name, "--ranks", "2", "--rank-timeout", "3",
                       "--checkpoint", "0")
    row = world.wait_for(agent_id, "running", proc)
    [worker] = _children(row["pid"])
    os.kill(worker, signal.SIGSTOP)
    stopped = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - stopped < 30
    assert proc.returncode == 1
    [line] = err.strip().splitlines()
    assert f"rank 1 (pid {worker}) is stopped" in line or "rank 1 stopped answering" in line
    _gone([worker])
    assert InstanceFile.read(world.agents_dir / f"{agent_id}.json").steps == 0


_BRITTLE = '''
"""abraxas, but its part on rank 1 cannot load."""
import hera_family_abraxas as abraxas
from hera.family import FamilyInfo, HeraError, hookimpl


@hookimpl
def hera_family():
    return FamilyInfo(name="brittle", version="1.0", data_format=abraxas.DATA_FORMAT)


hera_layouts, hera_build, hera_load = abraxas.hera_layouts, abraxas.hera_build, abraxas.hera_load
hera_step, hera_serialize = abraxas.hera_step, abraxas.hera_serialize


@hookimpl
def hera_load_shard(definition, tensors, state, device, seed, shard):
    if shard.rank == 1:
        raise HeraError("no room for its part on this machine")
    return abraxas.hera_load_shard(definition, tensors, state, device, seed, shard)
'''


def test_a_rank_that_hangs_while_the_agent_is_paused_is_found_at_the_next_command(world):
    agent_id, path = world.build(layout="small")
    proc = world.popen("up", path.name, "--ranks", "2", "--rank-timeout", "3",
                       "--break-at", "1", "--checkpoint", "0")
    row = world.wait_for(agent_id, "paused", proc)
    [worker] = _children(row["pid"])
    os.kill(worker, signal.SIGSTOP)
    os.kill(proc.pid, signal.SIGTERM)  # down: the save needs every rank
    began = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - began < 30
    assert proc.returncode == 1
    [line] = err.strip().splitlines()
    assert f"rank 1 (pid {worker}) is stopped" in line, line
    _gone([worker])
    assert InstanceFile.read(world.agents_dir / f"{agent_id}.json").steps == 0


def test_a_checkpoint_after_a_rank_is_lost_ends_the_run_and_saves_nothing(world):
    agent_id, path = world.build(layout="small")
    proc = world.popen("up", path.name, "--ranks", "2", "--break-at", "1", "--checkpoint", "0")
    row = world.wait_for(agent_id, "paused", proc)
    [worker] = _children(row["pid"])
    os.kill(worker, signal.SIGKILL)
    os.kill(proc.pid, signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    [line] = err.strip().splitlines()
    assert f"rank 1 (pid {worker}) was killed by SIGKILL" in line, line
    assert InstanceFile.read(world.agents_dir / f"{agent_id}.json").steps == 0


def test_a_rank_that_cannot_start_fails_the_up_with_one_line(world):
    package = world.workdir / "hera_family_brittle"
    package.mkdir()
    (package / "__init__.py").write_text(_BRITTLE)
    agent_id, path = world.build(family="brittle", layout="small")
    proc = world.run("up", path.name, "--ranks", "3", "--steps", "5", check=False)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("hera: error: rank 1 no room for its part on this machine"), line
    assert not (world.agents_dir / f"{agent_id}.json").exists()  # not installed
    assert not list(world.runtime.rglob("*.sock")) and world.agents() == []


def test_a_family_that_cannot_be_split_is_refused_before_any_rank_starts(world):
    from tests import tally_family

    package = world.workdir / "hera_family_tally"  # tally: no hera_load_shard
    package.mkdir()
    (package / "__init__.py").write_text(Path(tally_family.__file__).read_text())
    agent_id, path = world.build(family="tally", layout="example")
    proc = world.run("up", path.name, "--ranks", "2", "--steps", "5", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("hera: error: family tally cannot run on several ranks: it "
                                   "has no hera_load_shard (see docs/distributed.md)")
    assert not (world.agents_dir / f"{agent_id}.json").exists()


def test_a_rank_0_whose_ranks_never_come_says_so(world):
    agent_id, path = world.build()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    world.env = {**world.env, "RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(port)}
    proc = world.run("up", path.name, "--distributed", "--rank-timeout", "2", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "hera: error: rank 1 did not start within 2 s"
    assert not (world.agents_dir / f"{agent_id}.json").exists()


def test_distributed_outside_torchrun_is_a_usage_error(world):
    _, path = world.build()
    proc = world.run("up", path.name, "--distributed", check=False)
    assert proc.returncode == 2 and "torchrun" in proc.stderr
    proc = world.run("up", path.name, "--rank-timeout", "5", check=False)
    assert proc.returncode == 2 and "--rank-timeout goes with" in proc.stderr


def test_more_ranks_than_columns_are_refused_before_anything_starts(world):
    agent_id, path = world.build("--set", "width=2", "--set", "height=1")
    proc = world.run("up", path.name, "--ranks", "3", "--steps", "5", check=False)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.endswith("its 2x1 columns go over at most 2 ranks, not 3"), line
    assert not (world.agents_dir / f"{agent_id}.json").exists()


# -- helpers -----------------------------------------------------------------------------


def subprocess_run(world, argv):
    import subprocess

    return subprocess.run(argv, cwd=world.workdir, env=world.env, capture_output=True,
                          text=True, timeout=180)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(b")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def _ranks_of(pids: list[int]) -> dict[int, int]:
    """``{rank: pid}`` of spawned workers, from their environment."""
    ranks = {}
    for pid in pids:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        rank = next(v for v in env if v.startswith(b"RANK="))
        ranks[int(rank.split(b"=")[1])] = pid
    return ranks


def _listening(pid: int) -> list[str]:
    """``ADDRESS:PORT`` (hex, as /proc/net/tcp writes them) of the TCP
    sockets process ``pid`` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                found.append(fields[1])
    return found


def _gone(pids: list[int], limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    for pid in pids:
        while Path(f"/proc/{pid}").exists():
            state = (Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
                     if Path(f"/proc/{pid}/stat").exists() else b"")
            if state == b"Z":  # ended, its parent not yet told
                break
            assert time.monotonic() < deadline, f"rank pid {pid} outlived the agent"
            time.sleep(0.05)
