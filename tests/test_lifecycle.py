"""The whole life of an agent through the real ``hera`` command."""

from __future__ import annotations

import json
import os
import signal
import time

from hera.instance import InstanceFile, read_header
from tests.conftest import compiler_here


def test_families_layouts_devices_describe_the_host(world):
    families = json.loads(world.run("families", "--json").stdout)
    abraxas = next(f for f in families if f["name"] == "abraxas")
    assert abraxas["found"] == "entry point"
    assert abraxas["version"]
    assert "hera_step" in abraxas["hooks"] and "hera_build" in abraxas["hooks"]

    layouts = json.loads(world.run("layouts", "--json").stdout)
    example = next(r for r in layouts if (r["family"], r["layout"]) == ("abraxas", "example"))
    assert example["neurons"] > 0 and example["synapses"] > 0 and example["bytes"] > 0
    assert "abraxas/example" in world.run("layouts").stdout

    devices = json.loads(world.run("devices", "--json").stdout)
    cpu = devices[0]
    assert cpu["id"] == "cpu" and cpu["usable"] and cpu["cores"] >= 1 and cpu["memory"] > 0


def test_layouts_device_filter_keeps_what_fits(world):
    everything = json.loads(world.run("layouts", "--json").stdout)
    fitting = json.loads(world.run("layouts", "--device", "cpu", "--json").stdout)
    assert fitting and all(row in everything for row in fitting)
    missing = world.run("layouts", "--device", "cuda:7", check=False)
    assert missing.returncode == 1 and "cuda:7" in missing.stderr


def test_build_writes_a_dead_zero_instance(world):
    agent_id, path = world.build()
    assert path.name == f"{agent_id}.json"
    instance = InstanceFile.read(path)
    assert instance.id == agent_id and not instance.alive and instance.steps == 0
    assert instance.family == "abraxas" and instance.layout == "example"
    assert all(not t.any() for t in instance.tensors().values())
    assert not world.agents_dir.exists() or not any(world.agents_dir.iterdir())


def test_build_to_a_named_file(world):
    proc = world.run("--family", "abraxas", "--layout", "example", "build", "mine.json")
    assert (world.workdir / "mine.json").is_file()
    assert "mine.json" in proc.stdout


def test_walkthrough_up_resume_uninstall_install_destroy(world):
    agent_id, path = world.build()
    original = path.read_bytes()

    world.run("up", path.name, "--steps", "300", "--silent")
    assert path.read_bytes() == original, "the working-directory file must not evolve"
    [row] = world.agents()
    assert (row["id"], row["status"], row["steps"]) == (agent_id, "down", 300)
    cached = InstanceFile.read(world.agents_dir / f"{agent_id}.json")
    assert cached.alive and cached.meta["incarnation"] == 1
    assert cached.tensors()["weights"].any(), "plasticity must have changed the zero weights"

    table = world.run("agents").stdout
    assert agent_id[:8] in table and "down" in table and "300" in table

    out = world.run("--uuid", agent_id[:6], "up", "--steps", "300").stdout
    assert "at step 300" in out and "at step 600" in out
    [row] = world.agents()
    assert row["steps"] == 600

    (world.workdir / "notes.txt").write_text("mine")
    refused = world.run("--uuid", agent_id[:6], "uninstall", "--output", "notes.txt", check=False)
    assert refused.returncode == 1 and "exists" in refused.stderr
    assert (world.workdir / "notes.txt").read_text() == "mine" and len(world.agents()) == 1
    world.run("--uuid", agent_id[:6], "uninstall")  # replaces the file it was built as
    assert world.agents() == []
    copy = InstanceFile.read(world.workdir / f"{agent_id}.json")
    assert copy.steps == 600 and copy.alive and "installed" not in copy.meta

    world.run("install", f"{agent_id}.json")
    [row] = world.agents()
    assert row["steps"] == 600
    again = world.run("install", f"{agent_id}.json", check=False)
    assert again.returncode == 1 and "already installed" in again.stderr

    proc = world.run("--uuid", agent_id[:6], "destroy", "--yes")
    assert "cannot be undone" in proc.stdout
    assert world.agents() == []


def test_callsign_identifies_an_agent(world):
    agent_id, path = world.build("--name", "nimble-probe")
    world.run("install", path.name)
    proc = world.run("--callsign", "nimble-probe", "up", "--steps", "5")
    assert agent_id in proc.stdout


def test_install_for_system_and_for_another_user(world):
    _, path = world.build()
    world.run("install", "--system", path.name)
    world.run("install", "--user", "someone-else", path.name)
    assert world.agents() == []
    assert len(world.agents("--system")) == 1
    assert len(world.agents("--user", "someone-else")) == 1
    everyone = world.agents("--all")
    assert sorted(r["scope"] for r in everyone) == ["system", "user:someone-else"]


def _wait_running(world, agent_id, process, limit=60.0):
    return world.wait_for(agent_id, "running", process, limit)


def test_down_from_another_terminal_saves_and_stops(world):
    agent_id, path = world.build()
    up = world.popen("up", path.name)
    try:
        row = _wait_running(world, agent_id, up)
        # abraxas's default on a CPU: its compiled step where it can be built
        expected = "cpp" if compiler_here() else "torch"
        assert row["pid"] == up.pid and row["device"] == "cpu" and row["backend"] == expected

        second = world.run("up", path.name, "--steps", "1", check=False)
        assert second.returncode == 1 and "running" in second.stderr

        refused = world.run("--uuid", agent_id, "destroy", "--yes", check=False)
        assert refused.returncode == 1 and "running" in refused.stderr

        down = world.run("down")  # one agent runs: no identifier needed
        assert agent_id in down.stdout
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.kill()
    [row] = world.agents()
    assert row["status"] == "down" and row["steps"] > 0
    assert not (world.runtime / f"{agent_id}.pid").exists()


def test_sigterm_to_up_saves_state(world):
    agent_id, path = world.build()
    up = world.popen("up", path.name, "--silent")
    try:
        _wait_running(world, agent_id, up)
        time.sleep(0.3)
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.kill()
    header = read_header(world.agents_dir / f"{agent_id}.json")
    assert header.meta["steps"] > 0 and header.meta["alive"]


def test_sigkill_leaves_previous_state_and_a_stale_pidfile_is_recognised(world):
    agent_id, path = world.build()
    world.run("up", path.name, "--steps", "50")
    before = (world.agents_dir / f"{agent_id}.json").read_bytes()
    up = world.popen("--uuid", agent_id, "up")
    try:
        _wait_running(world, agent_id, up)
        os.kill(up.pid, signal.SIGKILL)
        up.wait(timeout=10)
    finally:
        if up.poll() is None:
            up.kill()
    assert (world.agents_dir / f"{agent_id}.json").read_bytes() == before
    [row] = world.agents()
    # a pid-file nobody holds is stale: not up, and it tells that the run was killed
    assert row["status"] == "killed" and row["pid"] is None
    world.run("--uuid", agent_id, "up", "--steps", "10")
    assert world.agents()[0]["steps"] == 60
    assert world.agents()[0]["status"] == "down"


def test_down_with_several_running_asks_which(world):
    first_id, first = world.build()
    second_id, second = world.build()
    ups = [world.popen("up", first.name, "--silent"), world.popen("up", second.name, "--silent")]
    try:
        _wait_running(world, first_id, ups[0])
        _wait_running(world, second_id, ups[1])
        ambiguous = world.run("down", check=False)
        assert ambiguous.returncode == 1 and "2 agents are running" in ambiguous.stderr
        world.run("--uuid", first_id[:8], "down")
        world.run("down", second.name)
        assert [p.wait(timeout=30) for p in ups] == [0, 0]
    finally:
        for p in ups:
            if p.poll() is None:
                p.kill()
    assert {r["status"] for r in world.agents()} == {"down"}


def test_a_checkpoint_survives_kill_9(world):
    agent_id, path = world.build()
    up = world.popen("up", path.name, "--silent", "--checkpoint", "0.2")
    cached = world.agents_dir / f"{agent_id}.json"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if cached.exists() and read_header(cached).meta["steps"] > 0:
                break
            time.sleep(0.05)
        os.kill(up.pid, signal.SIGKILL)
        up.wait(timeout=10)
    finally:
        if up.poll() is None:
            up.kill()
    saved = InstanceFile.read(cached)
    assert saved.steps > 0 and saved.alive and saved.meta["incarnation"] == 1
    resumed = world.run("--uuid", agent_id, "up", "--steps", "3").stdout
    assert f"at step {saved.steps}," in resumed


def test_a_failed_up_installs_nothing(world):
    _, path = world.build()
    proc = world.run("up", path.name, "--device", "cuda:3", check=False)
    assert proc.returncode == 1 and "cuda:3" in proc.stderr
    assert world.agents() == []


def test_uninstall_by_file_gives_the_state_back_to_that_file(world):
    agent_id, _ = world.build("agent.json")
    world.run("up", "agent.json", "--steps", "20")
    world.run("uninstall", "agent.json")
    assert InstanceFile.read(world.workdir / "agent.json").steps == 20
    assert not (world.workdir / f"{agent_id}.json").exists()
    assert world.agents() == []


def test_agents_warns_about_a_damaged_agent_file(world):
    agent_id, path = world.build()
    world.run("install", path.name)
    (world.agents_dir / "broken.json").write_text("{")
    proc = world.run("agents")
    assert agent_id[:8] in proc.stdout
    assert "warning" in proc.stderr and "broken.json" in proc.stderr


def test_installing_for_another_user_gives_them_the_files(reachable_world):
    world = reachable_world
    import pwd

    _, path = world.build()
    world.run("install", "--user", "nobody", path.name)
    nobody = pwd.getpwnam("nobody")
    expected = nobody.pw_uid if os.geteuid() == 0 else os.geteuid()
    store = world.root / "users" / "nobody" / "agents"
    for item in (store, *store.iterdir()):
        assert item.stat().st_uid == expected, item
        assert item.stat().st_mode & 0o077 == 0, item


def test_a_runtime_dir_someone_else_can_write_is_refused(world):
    world.runtime.mkdir(mode=0o777)
    world.runtime.chmod(0o777)
    _, path = world.build()
    proc = world.run("up", path.name, "--steps", "1", check=False)
    assert proc.returncode == 1 and "writable by others" in proc.stderr
    assert world.agents() == []


def test_uninstall_never_writes_into_the_store(world):
    agent_id, path = world.build()
    world.run("up", path.name, "--steps", "5")
    cached = world.agents_dir / f"{agent_id}.json"
    for where in (str(cached), str(world.agents_dir)):
        proc = world.run("--uuid", agent_id, "uninstall", "--output", where, check=False)
        assert proc.returncode == 1 and "agent store" in proc.stderr
        assert InstanceFile.read(cached).steps == 5
    proc = world.run("uninstall", str(cached), check=False)
    assert proc.returncode == 1 and InstanceFile.read(cached).steps == 5


def test_down_while_the_agent_is_still_starting(world):
    agent_id, path = world.build()
    world.run("install", path.name)
    up = world.popen("--uuid", agent_id, "up", "--silent")
    try:
        deadline = time.monotonic() + 30
        while not (world.runtime / f"{agent_id}.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        world.run("down")  # whether it is still loading or already running
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.kill()
    assert world.row(agent_id)["status"] == "down"


def test_a_failed_final_save_rescues_the_state(world):
    agent_id, path = world.build()
    world.run("up", path.name, "--steps", "10")
    up = world.popen("--uuid", agent_id, "up", "--checkpoint", "0")
    try:
        world.wait_for(agent_id, "running", up)
        # Make the store unwritable in a way even root cannot get round.
        world.agents_dir.rename(world.root / "agents-elsewhere")
        world.agents_dir.write_text("not a directory")
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 1
    finally:
        if up.poll() is None:
            up.kill()
    [rescue] = world.workdir.glob(f"{agent_id}.step*.rescue.json")
    saved = InstanceFile.read(rescue)
    assert rescue.name == f"{agent_id}.step{saved.steps}.rescue.json"
    assert saved.id == agent_id and saved.steps > 10 and saved.alive
    assert "rescued" in up.stderr.read()


def test_up_simulate_reports_and_loads_nothing(world):
    agent_id, path = world.build()
    out = world.run("up", path.name, "--simulate").stdout
    assert "weights" in out and "total" in out and "it fits" in out
    assert world.agents() == []


def test_an_agent_too_big_for_its_device_is_refused_before_loading(world):
    agent_id, path = world.build()
    instance = InstanceFile.read(path)
    instance.definition["width"] = 100_000  # the tensors stay small; only the claim grows
    instance.definition["height"] = 1000
    instance.write(path)
    simulated = world.run("up", path.name, "--simulate", check=False)
    assert simulated.returncode == 1 and "does NOT fit" in simulated.stdout
    proc = world.run("up", path.name, "--steps", "1", check=False)
    assert proc.returncode == 1
    assert "needs" in proc.stderr and "on cpu, which has" in proc.stderr
    assert "width x height x depth x cells" in proc.stderr
    assert world.agents() == [], "an agent that cannot run is not installed either"
