"""Running 2N steps at once gives bit-identical state to N steps, down, up,
N steps: through the real command, random streams included."""

from __future__ import annotations

import shutil

import torch

from hera.instance import InstanceFile
from tests.conftest import make_world


def test_2n_steps_equal_n_down_up_n(world, tmp_path):
    agent_id, path = world.build()
    other = make_world(tmp_path / "other")
    shutil.copy(world.workdir / path.name, other.workdir / path.name)

    world.run("up", path.name, "--steps", "400", "--silent")
    other.run("up", path.name, "--steps", "200", "--silent")
    other.run("--uuid", agent_id, "up", "--steps", "200", "--silent")

    once = InstanceFile.read(world.agents_dir / f"{agent_id}.json")
    twice = InstanceFile.read(other.agents_dir / f"{agent_id}.json")
    assert once.steps == twice.steps == 400
    assert (once.meta["incarnation"], twice.meta["incarnation"]) == (1, 2)
    a, b = once.tensors(), twice.tensors()
    assert a.keys() == b.keys() and a["weights"].any()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    sa, sb = once.state(), twice.state()
    assert sa.values == sb.values
    # the random streams are a function of the seed and the step counter
    assert sa.values["t"] == 400 and sa.tensors.keys() == sb.tensors.keys()
    for name in sa.tensors:
        assert torch.equal(sa.tensors[name], sb.tensors[name]), name
    # Identical state, stored the same way: the tensor entries are byte-identical.
    assert once.digests == twice.digests


def test_checkpoints_do_not_change_the_run(world, tmp_path):
    agent_id, path = world.build()
    other = make_world(tmp_path / "other")
    shutil.copy(world.workdir / path.name, other.workdir / path.name)
    world.run("up", path.name, "--steps", "300", "--checkpoint", "0")
    other.run("up", path.name, "--steps", "300", "--checkpoint", "0.001", "--chunk", "7")
    plain = InstanceFile.read(world.agents_dir / f"{agent_id}.json")
    saved_often = InstanceFile.read(other.agents_dir / f"{agent_id}.json")
    assert plain.digests == saved_often.digests
    assert plain.state_values == saved_often.state_values


def test_the_cpp_backend_continues_a_torch_run_bit_for_bit(world, tmp_path, cpp_backend):
    """Half a run on the compiled CPU step, half on the torch backend
    (HERA_ABRAXAS_BACKEND), equals the whole run on the torch backend."""
    agent_id, path = world.build()
    other = make_world(tmp_path / "other")
    shutil.copy(world.workdir / path.name, other.workdir / path.name)
    base = dict(other.env)
    world.env = {**world.env, "HERA_ABRAXAS_BACKEND": "torch"}
    proc = world.run("up", path.name, "--steps", "600")
    assert "[torch]" in proc.stdout, proc.stdout
    other.env = {**base, "HERA_ABRAXAS_BACKEND": "cpp"}
    proc = other.run("up", path.name, "--steps", "300")
    assert "[cpp]" in proc.stdout, proc.stdout
    other.env = {**base, "HERA_ABRAXAS_BACKEND": "fortran"}
    refused = other.run("--uuid", agent_id, "up", "--steps", "1", check=False)
    assert refused.returncode == 1 and "no backend 'fortran'" in refused.stderr
    assert "Traceback" not in refused.stderr
    other.env = {**base, "HERA_ABRAXAS_BACKEND": "torch"}
    other.run("--uuid", agent_id, "up", "--steps", "300", "--silent")
    once = InstanceFile.read(world.agents_dir / f"{agent_id}.json")
    twice = InstanceFile.read(other.agents_dir / f"{agent_id}.json")
    assert once.digests == twice.digests and once.tensors()["weights"].any()
    


def test_a_cpu_agent_steps_on_the_compiled_step_by_default(world, cpp_backend):
    _, path = world.build()
    proc = world.run("up", path.name, "--steps", "10")
    assert "[cpp]" in proc.stdout and "compiling" not in proc.stderr, proc.stdout + proc.stderr


def test_without_a_working_compiler_a_cpu_agent_steps_on_torch(world, tmp_path):
    """A build that fails (here: a compiler that always fails, a fresh
    cache) costs one line on stderr; the agent runs on torch."""
    _, path = world.build()
    world.env = {**world.env, "CXX": "false", "HERA_CACHE_DIR": str(tmp_path / "cache")}
    proc = world.run("up", path.name, "--steps", "10")
    assert "[torch]" in proc.stdout, proc.stdout
    assert "stepping with torch instead" in proc.stderr and "Traceback" not in proc.stderr
