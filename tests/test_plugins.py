"""Plugin discovery and the hook contract, with a family the tests define
themselves: hera's core must not depend on abraxas."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from hera import manager, runner
from hera.errors import HeraError
from hera.hooks import hookimpl, specs
from hera.places import Scope
from hera.plugins import load_plugins
from hera.store import AgentStore
from tests import tally_family

TALLY_SOURCE = Path(tally_family.__file__).read_text()
HOOKS = sorted(n for n in dir(specs) if n.startswith("hera_"))


class StepRecorder:
    """A non-family plugin wrapping hera_step, as a recorder would."""

    def __init__(self):
        self.calls: list[tuple[str, int, int]] = []

    @hookimpl(wrapper=True)
    def hera_step(self, family, agent, steps):
        done = yield
        self.calls.append((family, steps, done))
        return done


def test_core_runs_a_family_defined_by_the_test(places, tally):
    path, built = manager.build(tally, "tally", "example", {"size": 3}, None)
    assert built.definition == {"size": 3} and not built.alive
    store = AgentStore(Scope("user"))
    target = manager.select_target(store, str(path), None, None, allow_uninstalled=True)
    result = runner.up(tally, target, runner.UpOptions(steps=25, chunk=7), say=lambda _: None)
    assert result.total_steps == 25
    saved = store.load(built.id)
    assert saved.tensors()["counts"].tolist() == [25.0, 25.0, 25.0]
    assert saved.state().tensors["acc"].sum() > 0


def _family_module(source: str, name: str):
    import types

    module = types.ModuleType(f"family_{name}")
    exec(compile(source.replace('NAME = "tally"', f"NAME = {name!r}"), name, "exec"),
         module.__dict__)
    return module


def test_every_hook_reaches_its_own_family_and_no_other(places, tally):
    """Two families whose hooks never ask which family they serve: hera
    calls each one's own, whichever was registered last."""
    twin = _family_module(_edited('"four counters"', '"twin counters"'), "twin")
    tally.register(twin, "twin")
    for family, size in (("tally", 4), ("twin", 4)):
        hook = tally.family_hooks(family)
        assert hook.hera_layouts()[0].summary == ("four counters" if family == "tally"
                                                  else "twin counters")
        built = hook.hera_build(layout="example", overrides={}, seed=1)
        assert built.tensors["counts"].shape == (size,)
        assert hook.hera_simulate(definition=built.definition, device="cpu").total == 64
        grown = hook.hera_grow(definition=built.definition, tensors=built.tensors,
                               state=None, changes={"size": 6}, seed=1)
        assert grown.tensors["counts"].shape == (6,)
        loaded = hook.hera_load(definition=built.definition, tensors=built.tensors,
                                state=None, device="cpu", seed=3)
        assert type(loaded.handle).__module__ == f"family_{family}" or family == "tally"
        assert hook.hera_step(agent=loaded.handle, steps=5) == 5
        assert hook.hera_encode_input(agent=loaded.handle, line="hello") is True
        assert hook.hera_decode_output(agent=loaded.handle) == "5 5 5 5"
        snap = hook.hera_serialize(agent=loaded.handle)
        assert snap.state.values["inputs"] == ["hello"]
        upgraded = hook.hera_upgrade(data_format=1, definition=snap.definition,
                                     tensors=snap.tensors, state=snap.state)
        assert upgraded.tensors["counts"].dtype == torch.int64
        assert upgraded.tensors["counts"].tolist() == [5, 5, 5, 5]
        assert hook.hera_probe(agent=loaded.handle, variable="spikes", neurons=None) is None
    assert [i.name for i in tally.hook.hera_family()] == ["twin", "tally"]
    for name in HOOKS:
        if name != "hera_family":
            assert getattr(tally.hook, name).spec.opts.get("firstresult"), name
    with pytest.raises(HeraError, match="unknown family 'other'"):
        tally.family_hooks("other")
    with pytest.raises(AttributeError, match="no hook 'hera_stpe'"):
        tally.family_hooks("tally").hera_stpe  # noqa: B018


def test_a_hookwrapper_sees_every_chunk(places, tally):
    recorder = StepRecorder()
    tally.register(recorder, "recorder")
    tally.register(_family_module(TALLY_SOURCE, "twin"), "twin")  # left out of tally's calls
    path, built = manager.build(tally, "tally", "example", {}, None)
    store = AgentStore(Scope("user"))
    target = manager.select_target(store, str(path), None, None, allow_uninstalled=True)
    runner.up(tally, target, runner.UpOptions(steps=10, chunk=4), say=lambda _: None)
    assert recorder.calls == [("tally", 4, 4), ("tally", 4, 4), ("tally", 2, 2)]


def test_grow_through_the_core_keeps_what_was_learned(places, tally):
    path, built = manager.build(tally, "tally", "example", {}, None)
    store = AgentStore(Scope("user"))
    target = manager.select_target(store, str(path), None, None, allow_uninstalled=True)
    runner.up(tally, target, runner.UpOptions(steps=3), say=lambda _: None)
    target = manager.select_target(store, None, built.id[:8], None)
    grown = manager.grow(tally, target, {"size": 6})
    assert grown.tensors()["counts"].tolist() == [3, 3, 3, 3, 0, 0]
    with pytest.raises(HeraError, match="cannot shrink"):
        manager.grow(tally, target, {"size": 2})
    assert store.load(built.id).definition["size"] == 6


def _edited(old: str, new: str) -> str:
    """The test family's source with ``old`` replaced (which must be there)."""
    assert old in TALLY_SOURCE, old
    return TALLY_SOURCE.replace(old, new)


def _write_family(where: Path, source: str = TALLY_SOURCE, name: str = "tally") -> Path:
    package = where / f"hera_family_{name}"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(source)
    return package


def test_a_family_cloned_into_the_working_directory_is_found(world):
    _write_family(world.workdir)
    families = {f["name"]: f for f in json.loads(world.run("families", "--json").stdout)}
    assert families["tally"]["found"] == "working directory"
    assert "abraxas" in families
    layouts = json.loads(world.run("layouts", "--json", "--family", "tally").stdout)
    assert [r["layout"] for r in layouts] == ["example"]
    proc = world.run("--family", "tally", "--layout", "example", "build")
    agent_id = proc.stdout.split()[1]
    world.run("up", f"{agent_id}.json", "--steps", "12")
    world.run("--uuid", agent_id, "grow", "size=5")
    [row] = world.agents()
    assert (row["family"], row["steps"]) == ("tally", 12)


def test_a_cloned_repository_holding_the_package_is_found(world):
    _write_family(world.workdir / "hera_family_tally")  # repo/hera_family_tally/__init__.py
    names = [f["name"] for f in json.loads(world.run("families", "--json").stdout)]
    assert "tally" in names


def test_a_family_installed_by_entry_point_is_found(world, tmp_path):
    site = tmp_path / "site"
    _write_family(site)
    dist = site / "hera_family_tally-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hera-family-tally\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[hera.families]\ntally = hera_family_tally\n")
    world.env["PYTHONPATH"] = str(site)
    families = {f["name"]: f for f in json.loads(world.run("families", "--json").stdout)}
    assert families["tally"]["found"] == "entry point"
    assert families["tally"]["distribution"] == "hera-family-tally 1.0"


def test_blocked_plugins_are_not_loaded(world):
    world.env["HERA_DISABLE_PLUGINS"] = "abraxas"
    assert json.loads(world.run("families", "--json").stdout) == []
    proc = world.run("build", check=False)
    assert proc.returncode == 1 and "no family is installed" in proc.stderr
    proc = world.run("--family", "abraxas", "build", check=False)
    assert proc.returncode == 1 and "unknown family 'abraxas'" in proc.stderr


def test_a_misspelt_hook_fails_loudly(world):
    _write_family(world.workdir, _edited("def hera_step(", "def hera_stepp("))
    proc = world.run("families", check=False)
    assert proc.returncode == 1
    assert "tally" in proc.stderr and "hera_stepp" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_hook_with_wrong_arguments_fails_loudly(world):
    _write_family(world.workdir, _edited("def hera_step(agent, steps)",
                                                      "def hera_step(agent, steps, extra)"))
    proc = world.run("families", check=False)
    assert proc.returncode == 1 and "tally" in proc.stderr and "extra" in proc.stderr


def test_a_family_that_fails_to_import_is_reported_not_fatal(world):
    _write_family(world.workdir, "raise RuntimeError('half-cloned')\n")
    proc = world.run("families", "--json")
    assert "half-cloned" in proc.stderr and "warning" in proc.stderr
    assert [f["name"] for f in json.loads(proc.stdout)] == ["abraxas"]


def test_listing_commands_do_not_load_torch_even_with_a_workdir_family(world):
    _write_family(world.workdir)
    code = ("import sys; from hera.cli import main; main(['families']); main(['layouts']);"
            "print('torch' in sys.modules, 'triton' in sys.modules)")
    proc = world.run_python(code)
    assert proc.stdout.strip().splitlines()[-1] == "False False"


def test_installed_plugins_load_in_a_fresh_manager():
    plugins = load_plugins(workdir=Path(sys.prefix))
    assert "abraxas" in [info.name for info, _, _ in plugins.families()]


class Watcher:
    """A non-family plugin that implements hera_step plainly (not as a wrapper)."""

    def __init__(self):
        self.seen = 0

    @hookimpl
    def hera_step(self, family, agent, steps):
        self.seen += steps


class Partial:
    """A second family whose hera_step declares only some of the hook's arguments."""

    @hookimpl
    def hera_family(self):
        from hera.hooks import FamilyInfo

        return FamilyInfo(name="partial", version="1")

    @hookimpl
    def hera_step(self, steps):
        return steps * 10


def test_routing_goes_straight_to_the_family_only_when_nobody_else_listens(tally):
    """The hooks called every step: with only families implementing the
    hook, a family's hook is its own function (the other families are not
    asked); a plain or wrapping implementation of any other plugin puts
    pluggy back in the way, so that it sees every call, and the other
    families are still left out."""
    assert tally.family_hooks("tally").hera_step is tally_family.hera_step
    tally.register(Partial(), "partial")  # registered last: pluggy would ask it first
    assert tally.family_hooks("tally").hera_step is tally_family.hera_step
    partial = tally.family_hooks("partial").hera_step
    assert partial(agent=None, steps=3) == 30  # only what it declares
    watcher = Watcher()
    tally.register(watcher, "watcher")
    through_pluggy = tally.family_hooks("partial").hera_step
    assert through_pluggy is not Partial.hera_step
    assert through_pluggy(agent=None, steps=2) == 20 and watcher.seen == 2
    counter = tally_family.Counter({"size": 2}, {"counts": torch.zeros(2)}, None, 1)
    assert tally.family_hooks("tally").hera_step(agent=counter, steps=4) == 4  # not partial's 40
    assert counter.counts.tolist() == [4, 4] and watcher.seen == 6
    tally.manager.unregister(name="watcher")
    recorder = StepRecorder()
    tally.register(recorder, "recorder")
    assert tally.family_hooks("tally").hera_step(agent=counter, steps=1) == 1
    assert recorder.calls == [("tally", 1, 1)]
    tally.manager.unregister(name="partial")


def _old_style(source: str) -> str:
    """The test family as hera 0.1's hooks had it: every hook but
    hera_family takes ``family`` and answers ``None`` for other families."""
    import re

    return re.sub(r"def (hera_(?!family\b)\w+)\((\w*)",
                  lambda m: (f"def {m.group(1)}(family{', ' if m.group(2) else ''}{m.group(2)}"),
                  source).replace('):\n    """', '):\n    """', 1).replace(
        "@hookimpl\ndef hera_", "@hookimpl\ndef hera_")


def _with_family_checks(source: str) -> str:
    import re

    return re.sub(r"(def hera_(?!family\b)\w+\(family[^)]*\):\n)",
                  r"\1    if family != NAME:\n        return None\n", source)


def test_a_family_written_for_the_0_1_hooks_still_works_and_is_told_the_new_way(places, capsys):
    """Compatibility: a 0.1 family (hooks that take ``family`` and check
    it) builds, runs, resumes and grows as before, beside a new-style
    family, with one warning naming the new way."""
    from hera.plugins import create_manager

    old_source = _with_family_checks(_old_style(TALLY_SOURCE))
    assert old_source.count("if family != NAME") == 10, old_source
    plugins = create_manager()
    plugins.register(_family_module(old_source, "tally"), "tally")
    plugins.register(_family_module(TALLY_SOURCE, "twin"), "twin")
    path, built = manager.build(plugins, "tally", "example", {"size": 3}, None)
    store = AgentStore(Scope("user"))
    target = manager.select_target(store, str(path), None, None, allow_uninstalled=True)
    runner.up(plugins, target, runner.UpOptions(steps=7, chunk=3), say=lambda _: None)
    target = manager.select_target(store, None, built.id[:8], None)
    runner.up(plugins, target, runner.UpOptions(steps=5), say=lambda _: None)
    assert store.load(built.id).tensors()["counts"].tolist() == [12.0] * 3
    assert manager.grow(plugins, target, {"size": 4}).tensors()["counts"].tolist() == \
        [12.0, 12.0, 12.0, 0.0]
    warned = [line for line in capsys.readouterr().err.splitlines() if "0.1" in line]
    assert len(warned) == 1, warned
    assert "family 'tally' (plugin 'tally') is written for hera 0.1's hooks" in warned[0]
    assert "drop the 'family' argument" in warned[0] and "hera_step" in warned[0]
    plugins.family_hooks("twin")
    assert "twin" not in capsys.readouterr().err


class SeedWatcher:
    """A second family that records the seed its hera_grow is given."""

    seeds: list[int] = []

    @hookimpl
    def hera_family(self):
        from hera.hooks import FamilyInfo

        return FamilyInfo(name="seedy", version="1")

    @hookimpl
    def hera_grow(self, definition, tensors, state, changes, seed):
        SeedWatcher.seeds.append(seed)
        return None


def test_grow_gives_the_family_the_agents_seed(places, tally):
    tally.register(SeedWatcher(), "seedy")
    path, built = manager.build(tally, "tally", "example", {}, None)
    store = AgentStore(Scope("user"))
    manager.install(tally, store, path)
    built.meta["family"]["name"] = "seedy"  # the same file, as the other family's
    built.write(store.path(built.id))
    target = manager.select_target(store, None, built.id[:8], None)
    with pytest.raises(HeraError, match="cannot grow"):
        manager.grow(tally, target, {"size": 6})
    assert SeedWatcher.seeds == [built.meta["seed"]]
    tally.manager.unregister(name="seedy")


def test_a_plugin_whose_hera_family_raises_is_named_and_the_others_work(world):
    _write_family(world.workdir, _edited(
        "def hera_family():\n", "def hera_family():\n    raise RuntimeError('no luck')\n"))
    for args in (("families",), ("layouts",), ("--family", "abraxas", "build", "a.json")):
        proc = world.run(*args)
        assert proc.stderr.count("hera: warning: plugin 'tally' is broken and left out: its "
                                 "hera_family raised RuntimeError: no luck") == 1, proc.stderr
    assert "abraxas" in world.run("families").stdout
    assert "abraxas/example" in world.run("layouts").stdout
    assert (world.workdir / "a.json").is_file()


def test_a_plugin_whose_hera_layouts_raises_hides_only_its_own(world):
    _write_family(world.workdir, _edited(
        "def hera_layouts():\n", "def hera_layouts():\n    1 / 0\n"))
    proc = world.run("layouts")
    assert "abraxas/example" in proc.stdout and "tally/" not in proc.stdout
    assert "the layouts of family 'tally' cannot be listed: hera_layouts raised " \
           "ZeroDivisionError" in proc.stderr


def test_two_plugins_with_one_family_name_are_refused_with_both_named(world):
    _write_family(world.workdir)
    _write_family(world.workdir, name="twin")  # the same source: family 'tally' again
    families = world.run("families")
    assert "family 'tally' is provided by 2 plugins (tally, twin)" in families.stderr
    build = world.run("--family", "tally", "build", check=False)
    assert build.returncode == 1
    assert build.stderr.strip().endswith("family 'tally' is provided by 2 plugins (tally, twin):"
                                         " uninstall one, or block it with "
                                         "HERA_DISABLE_PLUGINS=NAME")
    env = {**world.env, "HERA_DISABLE_PLUGINS": "twin"}
    import subprocess

    ok = subprocess.run([sys.executable, "-m", "hera", "--family", "tally", "build"],
                        cwd=world.workdir, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr


def test_build_has_no_silent_family_when_several_are_installed(world):
    """One family installed: build uses it. Two: build asks which, unless
    the command line or a configuration file says."""
    only = world.run("build", "only.json", "--json")
    assert json.loads(only.stdout)["family"] == "abraxas"
    _write_family(world.workdir)
    asked = world.run("build", "two.json", check=False)
    assert asked.returncode == 2 and not (world.workdir / "two.json").exists()
    assert asked.stderr.strip().splitlines() == [
        "hera: error: which family? 2 are installed (abraxas, tally): give --family NAME, or "
        "set family in the [options] of ~/.herarc or ./hera.json"]
    assert json.loads(world.run("--family", "tally", "build", "t.json", "--json").stdout
                      )["family"] == "tally"
    (world.workdir / "hera.json").write_text(json.dumps({"options": {"family": "tally"}}))
    assert json.loads(world.run("build", "c.json", "--json").stdout)["family"] == "tally"


class Gauge:
    """A live agent answering the running hooks itself (hera.family.LiveAgent)."""

    def __init__(self, definition, tensors, state):
        self.definition = definition
        self.level = tensors["level"].clone()
        self.lines = list(state.values["lines"]) if state is not None else []

    def step(self, steps):
        self.level += steps
        return steps

    def snapshot(self):
        from hera.hooks.types import DynamicState, Snapshot

        return Snapshot(dict(self.definition), {"level": self.level.clone()},
                        DynamicState({}, {"lines": list(self.lines)}))

    def feed(self, line):
        self.lines.append(line)
        return True

    def read(self):
        return f"{float(self.level[0]):.0f} after {len(self.lines)} lines"


class GaugeFamily:
    """A family that implements no running hook: its agents do."""

    @hookimpl
    def hera_family(self):
        from hera.hooks import FamilyInfo

        return FamilyInfo(name="gauge", version="1")

    @hookimpl
    def hera_layouts(self):
        from hera.hooks import LayoutInfo

        return [LayoutInfo("example", "one level", {}, 1, 0, 8)]

    @hookimpl
    def hera_build(self, layout, overrides, seed):
        from hera.hooks import Built

        return Built({"layout": layout}, {"level": torch.zeros(1)})

    @hookimpl
    def hera_simulate(self, definition, device):
        from hera.hooks import ResourceReport

        return ResourceReport(device, {"level": 4})

    @hookimpl
    def hera_load(self, definition, tensors, state, device, seed):
        from hera.hooks import LoadedAgent

        return LoadedAgent(Gauge(definition, tensors, state), "cpu", "python")


def test_an_agent_with_the_live_agent_methods_answers_the_running_hooks(places, tally):
    """A family without hera_step, hera_serialize, hera_encode_input and
    hera_decode_output: its agent's step, snapshot, feed and read answer
    them, through the whole lifecycle, and a wrapper still sees the steps;
    tally, which implements them, answers with its own."""
    from hera.family import LiveAgent

    tally.register(GaugeFamily(), "gauge")
    hook = tally.family_hooks("gauge")
    alone = Gauge({}, {"level": torch.zeros(1)}, None)
    assert isinstance(alone, LiveAgent)
    assert hook.hera_step(agent=alone, steps=2) == 2 and alone.level.tolist() == [2.0]
    recorder = StepRecorder()
    tally.register(recorder, "recorder")
    path, built = manager.build(tally, "gauge", "example", {}, None)
    store = AgentStore(Scope("user"))
    target = manager.select_target(store, str(path), None, None, allow_uninstalled=True)
    runner.up(tally, target, runner.UpOptions(steps=10, chunk=4), say=lambda _: None)
    assert recorder.calls == [("gauge", 4, 4), ("gauge", 4, 4), ("gauge", 2, 2)]
    saved = store.load(built.id)
    assert saved.tensors()["level"].tolist() == [10.0]
    loaded = hook.hera_load(definition=saved.definition, tensors=saved.tensors(),
                            state=saved.state(), device="cpu", seed=1)
    assert hook.hera_encode_input(agent=loaded.handle, line="hi") is True
    assert hook.hera_decode_output(agent=loaded.handle) == "10 after 1 lines"
    counter = tally_family.Counter({"size": 2}, {"counts": torch.zeros(2)}, None, 1)
    assert tally.family_hooks("tally").hera_step(agent=counter, steps=3) == 3
    tally.manager.unregister(name="recorder")
    tally.manager.unregister(name="gauge")
    assert tally.family_hooks("tally").hera_step is tally_family.hera_step
