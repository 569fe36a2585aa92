"""The Python API end to end: real processes, real signals, real files.

An agent up through ``hera.up`` must keep every guarantee of ``hera up``
(install, lock, checkpoints, save at down, exact resume), answer ``hera
down`` and signals without ever cutting a step, and give, attached to a
daemon, the same results as in-process. The docs' examples run here too.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hera.instance import InstanceFile
from tests.conftest import HeraWorld, make_world

DOCS = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def _script(world: HeraWorld, code: str) -> subprocess.Popen:
    """Start ``python -c CODE`` in the world, its stdout a pipe."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=world.workdir,
                            env=world.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _python(world: HeraWorld, code: str) -> str:
    """Run ``python -c CODE`` in the world; its stdout."""
    return world.run_python(textwrap.dedent(code)).stdout


def _idle_program(world: HeraWorld, file: Path, steps: int) -> subprocess.Popen:
    """A program that ups ``file``, takes ``steps`` steps, says ``ready``
    and idles until the agent is downed from outside; then says ``down
    PATH`` and, a little later, ``still here``."""
    return _script(world, f"""
        import time, hera
        agent = hera.up({str(file)!r}, checkpoint=0)
        agent.step({steps})
        print("ready", flush=True)
        while agent.is_up:
            time.sleep(0.05)
        print("down", agent.path, flush=True)
        time.sleep(0.2)
        print("still here", flush=True)
    """)


def _wait_line(proc: subprocess.Popen, start: str) -> str:
    """Read ``proc``'s stdout up to a line starting with ``start``."""
    for line in proc.stdout:
        if line.startswith(start):
            return line.strip()
    raise AssertionError(f"no {start!r} line: {proc.communicate()}")


def _saved(world: HeraWorld, agent_id: str) -> InstanceFile:
    return InstanceFile.read(world.agents_dir / f"{agent_id}.json")


def _assert_same_state(a: InstanceFile, b: InstanceFile) -> None:
    assert a.steps == b.steps
    ta, tb = a.tensors(), b.tensors()
    assert ta.keys() == tb.keys()
    for name in ta:
        assert ta[name].equal(tb[name]), name
    sa, sb = a.state(), b.state()
    for name in sa.tensors:
        assert sa.tensors[name].equal(sb.tensors[name]), f"state.{name}"
    assert sa.values == sb.values


def _build(world: HeraWorld) -> tuple[str, Path]:
    """An example agent's id and its file's name in the working directory."""
    agent_id, file = world.build()
    return agent_id, Path(file.name)


def _twin(world: HeraWorld, tmp_path: Path, file: Path, name: str = "twin") -> HeraWorld:
    """A second world holding a copy of ``file`` (the same agent, not yet up)."""
    other = make_world(tmp_path / name)
    shutil.copy(world.workdir / file, other.workdir / file)
    return other


def test_the_docs_examples_run(world):
    """docs/python-api.md, its python and sh blocks in order, as one program."""
    text = DOCS.read_text()
    parts = []
    for kind, body in re.findall(r"```(python|sh)\n(.*?)```", text, flags=re.S):
        if kind == "python":
            parts.append(body)
            continue
        for line in body.strip().splitlines():
            words = shlex.split(line)
            assert words[0] == "hera", line
            parts.append(f"import subprocess as _sp, sys as _sys\n"
                         f"_sp.run([_sys.executable, '-m', 'hera', *{words[1:]!r}], check=True)\n")
    assert len(parts) >= 8
    proc = subprocess.run([sys.executable, "-c", "\n".join(parts)], cwd=world.workdir,
                          env=world.env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == "first-light 0" and out[1] == "(54,) 500"
    assert any("no such file, and no installed agent" in line for line in out)
    assert any(line.endswith("down it first") for line in out)
    assert "stepped 100" in out
    [row] = world.agents()
    assert (row["callsign"], row["status"]) == ("first-light", "down")


def test_an_agent_upped_by_the_api_resumes_exactly_as_hera_up_runs_it(world, tmp_path):
    agent_id, file = _build(world)
    twin = _twin(world, tmp_path, file)
    twin.run("up", str(file), "--steps", "300")
    twin.run("--uuid", agent_id, "up", "--steps", "200")

    out = _python(world, f"""
        import hera
        agent = hera.up({str(file)!r})
        agent.step(123)
        assert agent.save() == 123
        agent.step(54)
        agent.down()
        with hera.up({agent_id[:8]!r}) as again:   # an id prefix
            print(again.steps)
            again.step(1); again.step(322)
    """)
    assert out.split() == ["177"]
    _assert_same_state(_saved(world, agent_id), _saved(twin, agent_id))
    assert world.row(agent_id)["status"] == "down"


def test_while_a_program_has_the_agent_it_is_locked_and_listed(world):
    agent_id, file = _build(world)
    proc = _idle_program(world, file, 40)
    try:
        _wait_line(proc, "ready")
        row = world.row(agent_id)
        assert (row["status"], row["mode"]) == ("idle", "program")
        busy = world.run("--uuid", agent_id, "up", "--steps", "1", check=False)
        assert busy.returncode == 1 and "is running" in busy.stderr
        world.run("--uuid", agent_id, "down")  # the program is idle: it downs at once
        assert _wait_line(proc, "down").endswith(f"{agent_id}.json")
    finally:
        proc.kill()
    row = world.row(agent_id)
    assert (row["status"], row["steps"]) == ("down", 40)


def _interrupted_run(world: HeraWorld, file: Path, stop) -> str:
    """Up ``file`` in a program stepping for ever; ``stop(proc)`` stops it
    somehow; return the program's report."""
    proc = _script(world, f"""
        import hera
        agent = hera.up({str(file)!r}, checkpoint=0)
        agent.feed(values=[1.0, 0.5, 0.25, 1.0])
        agent.step(10)
        print("ready", flush=True)
        try:
            agent.step(10**9)
        except KeyboardInterrupt:
            print("interrupted", agent.steps, flush=True)
            agent.step(7)
            agent.down()
            print("down", agent.steps, flush=True)
        except hera.AgentDown as error:
            print("downed", agent.steps, error, flush=True)
    """)
    try:
        _wait_line(proc, "ready")
        time.sleep(0.5)
        stop(proc)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    return out


@pytest.mark.parametrize("how", ["ctrl-c", "hera down"])
def test_stopping_a_stepping_program_never_cuts_a_step(world, tmp_path, how):
    """Ctrl-C leaves the agent up at a whole step; hera down saves and downs
    it between two family calls. Either way its saved state is what a plain
    run of that many steps gives, bit for bit."""
    agent_id, file = _build(world)
    if how == "ctrl-c":
        out = _interrupted_run(world, file, lambda proc: proc.send_signal(signal.SIGINT))
        interrupted, down = re.search(r"interrupted (\d+)\ndown (\d+)", out).groups()
        assert int(down) == int(interrupted) + 7 > 17
        steps = int(down)
    else:
        out = _interrupted_run(world, file,
                               lambda proc: world.run("--uuid", agent_id, "down"))
        found = re.search(r"downed (\d+) agent \S+ \(\S+\) is down \(SIGTERM; saved at step "
                          r"(\d+)\)", out)
        assert found and found.group(1) == found.group(2), out
        steps = int(found.group(1))
    assert world.row(agent_id)["steps"] == steps
    twin = _twin(world, tmp_path, file)
    twin.run_python(textwrap.dedent(f"""
        import hera
        with hera.up({str(file)!r}) as agent:
            agent.feed(values=[1.0, 0.5, 0.25, 1.0])
            agent.step({steps})
    """))
    _assert_same_state(_saved(world, agent_id), _saved(twin, agent_id))


def test_sigusr1_checkpoints_and_sigterm_downs_an_idle_program(world):
    agent_id, file = _build(world)
    proc = _idle_program(world, file, 60)
    try:
        _wait_line(proc, "ready")
        world.run("--uuid", agent_id, "signal", "SIGUSR1")
        deadline = time.monotonic() + 20
        while _saved(world, agent_id).steps != 60:
            assert time.monotonic() < deadline, "SIGUSR1 did not checkpoint"
            time.sleep(0.05)
        assert world.row(agent_id)["status"] == "idle"
        proc.send_signal(signal.SIGTERM)
        _wait_line(proc, "down")
        _wait_line(proc, "still here")  # the program runs on
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert world.row(agent_id)["status"] == "down"


def test_a_program_that_forgets_to_down_still_saves(world):
    agent_id, file = _build(world)
    _python(world, f"""
        import hera
        agent = hera.up({str(file)!r}, checkpoint=0)
        agent.step(33)
    """)
    row = world.row(agent_id)
    assert (row["status"], row["steps"]) == ("down", 33)


def test_attached_to_a_daemon_the_calls_give_the_same_results(world, tmp_path):
    agent_id, file = _build(world)
    twin = _twin(world, tmp_path, file)
    world.run("up", str(file), "--daemon", "--break-at", "1")  # waits, paused, at step 1
    world.wait_for(agent_id, "paused")
    calls = """
        agent.feed(values=[0.9, 0.1, 0.8, 0.7, 0.0, 1.0])
        agent.step(150)
        first = agent.output().tolist()
        agent.freeze()
        agent.feed("spikes 2 3")
        agent.step(20)
        agent.unfreeze()
        agent.feed(spikes=[0, 5, 9])
        agent.step(30)
        print(json.dumps([first, agent.output().tolist(), agent.output_line(), agent.steps]))
    """
    remote = _python(world, f"""
        import json, time, hera
        deadline = time.monotonic() + 30
        while True:
            agent = hera.attach({agent_id[:8]!r})
            if agent.steps == 1:
                break
            agent.detach()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        {textwrap.indent(textwrap.dedent(calls), ' ' * 8).strip()}
        agent.down()
    """)
    local = _python(twin, f"""
        import json, hera
        with hera.up({str(file)!r}) as agent:
            agent.step(1)
            {textwrap.indent(textwrap.dedent(calls), ' ' * 12).strip()}
    """)
    assert json.loads(remote) == json.loads(local)
    first, second, line, steps = json.loads(local)
    assert steps == 201 and sum(first) > 0
    _assert_same_state(_saved(world, agent_id), _saved(twin, agent_id))


def test_bad_calls_say_what_is_wrong_and_leave_nothing_behind(world):
    agent_id, file = _build(world)
    out = _python(world, f"""
        import hera

        def refused(call):
            try:
                call()
            except hera.HeraError as error:
                print(type(error).__name__, "|", error)
            else:
                print("accepted")

        refused(lambda: hera.up("nothing-here"))
        refused(lambda: hera.attach({str(file)!r}))          # installed by nobody
        refused(lambda: hera.up({str(file)!r}, device="cuda:7"))
        refused(lambda: hera.up({str(file)!r}, checkpoint=-1))
        agent = hera.up({str(file)!r})
        refused(lambda: hera.attach({agent_id[:8]!r}, pause=False).steps)  # up: attach works
        refused(lambda: agent.step(0))
        refused(lambda: agent.feed(values=["x"]))
        refused(lambda: agent.feed(spikes=[99]))
        refused(lambda: agent.run_until(lambda a: True, max_steps=0))
        agent.down()
        refused(lambda: hera.attach({agent_id[:8]!r}))
        refused(agent.step)
        refused(agent.output)
        refused(agent.save)
    """)
    lines = out.splitlines()
    assert lines[0] == ("HeraError | nothing-here: no such file, and no installed agent has "
                        "that id or callsign")
    assert lines[1].startswith("HeraError | agent") and "is not installed" in lines[1]
    assert lines[2].startswith("HeraError | ") and "cuda:7" in lines[2]
    assert lines[3].startswith("HeraError | checkpoint must be")
    assert lines[4] == "accepted"
    assert lines[5].startswith("HeraError | step takes a whole number")
    assert lines[6] == "HeraError | input values must be an array of numbers"
    assert lines[7] == "HeraError | no input channel 99 (channels 0-15)"
    assert lines[8].startswith("HeraError | run_until takes max_steps")
    assert lines[9].startswith("HeraError | agent") and lines[9].endswith("is not up")
    assert all(line.startswith("AgentDown | ") and "is down (down; saved at step 0)" in line
               for line in lines[10:13]), lines[10:]
    # the failed ups left no lock: the agent ups again, and the lines fed
    # while it was up (refused) changed nothing
    world.run("--uuid", agent_id, "up", "--steps", "5")
    assert world.row(agent_id)["steps"] == 5


def test_import_hera_imports_neither_torch_nor_a_family(world):
    out = _python(world, """
        import sys, hera
        assert callable(hera.up) and callable(hera.attach) and callable(hera.build)
        print(sorted(m for m in ("torch", "triton", "hera_family_abraxas") if m in sys.modules))
    """)
    assert out.strip() == "[]"


def test_a_family_without_arrays_or_freezing_says_so_and_runs_on(world):
    """Another family (the tests' tally, from the working directory): the API
    drives it by lines, and the optional hooks it lacks give one line each."""
    from tests import tally_family

    package = world.workdir / "hera_family_tally"
    package.mkdir()
    (package / "__init__.py").write_text(Path(tally_family.__file__).read_text())
    out = _python(world, """
        import hera
        path = hera.build("example", family="tally", size=3)
        with hera.up(path) as agent:
            agent.step(4)
            for call in (lambda: agent.feed(values=[1.0]), agent.output, agent.freeze):
                try:
                    call()
                except hera.HeraError as error:
                    print(error)
            agent.feed("hello")
            agent.step(2)
            print("LINE", agent.steps)
            print(agent.output_line())
    """)
    assert out.splitlines()[:4] == ["family tally takes no input arrays; feed it lines",
                                "family tally gives no output array; read its lines",
                                "family tally cannot freeze its learning",
                                "LINE 6"], out
    assert out.splitlines()[4] == "6 6 6"  # its line: a count per cell of size=3


def test_a_step_that_fails_downs_the_agent_without_saving_over_its_last_save(world):
    """A family that fails mid-step may leave the agent half-stepped: the
    cache keeps the last save, the state at the failure goes to a rescue
    file, and the lock is let go."""
    from tests import tally_family

    package = world.workdir / "hera_family_tally"
    package.mkdir()
    source = Path(tally_family.__file__).read_text()
    failing = source.replace("    agent.run(steps)\n    return steps",
                             "    if agent.counts.sum() >= 30:\n"
                             "        raise RuntimeError('the family broke')\n"
                             "    agent.run(steps)\n    return steps")
    assert failing != source
    (package / "__init__.py").write_text(failing)
    out = _python(world, """
        import hera
        agent = hera.up(hera.build("example", "t.json", family="tally", size=3), checkpoint=0)
        agent.step(4)
        agent.save()
        agent.step(6)
        try:
            agent.step(1)
        except RuntimeError as error:
            print("failed:", error, agent.is_up)
        try:
            agent.step()
        except hera.AgentDown as error:
            print(error)
        print(agent.id)
    """)
    failed, down, agent_id = out.splitlines()
    assert failed == "failed: the family broke False"
    assert "is down (failed: RuntimeError: the family broke; not saved; the cache keeps step 4)" \
        in down
    row = world.row(agent_id)
    assert (row["status"], row["steps"]) == ("down", 4)  # the lock is free, the save kept
    last = row["last_run"]
    assert (last["outcome"], last["steps_lost"]) == ("failed", 6)
    assert last["error"] == "RuntimeError: the family broke"
    assert InstanceFile.read(world.workdir / f"{agent_id}.step10.rescue.json").steps == 10
    # failing again at the same step keeps the first rescue file
    again = _python(world, f"""
        import hera
        agent = hera.up({agent_id[:8]!r})
        agent.step(6)
        try:
            agent.step(1)
        except RuntimeError:
            print(agent.steps)
    """)
    assert again.split() == ["10"]
    assert sorted(p.name for p in world.workdir.glob("*.rescue*.json")) == [
        f"{agent_id}.step10.rescue-2.json", f"{agent_id}.step10.rescue.json"]


def test_a_seed_given_to_build_makes_the_same_agent_twice(places):
    import hera

    first = InstanceFile.read(hera.build("example", "a.json", seed=7, noise=1.0))
    second = InstanceFile.read(hera.build("example", "b.json", seed=7, noise=1.0))
    assert first.meta["seed"] == second.meta["seed"] == 7 and first.id != second.id
    with pytest.raises(hera.HeraError, match="a seed is a whole number"):
        hera.build("example", "c.json", seed=-1)
    assert not (places / "c.json").exists()
