"""A hypothesis state machine drives build/install/up/grow/uninstall/destroy
against a plain model of what should exist, checking after every step that
each installed agent has exactly one durable copy, at the right step."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hera import manager, runner
from hera.errors import HeraError
from hera.instance import InstanceFile
from hera.places import Scope
from hera.plugins import create_manager
from hera.store import AgentStore
from tests import tally_family


class Lifecycle(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="hera-stateful-"))
        self.saved_env = {k: os.environ.get(k) for k in ("HERA_DATA_DIR", "HERA_RUNTIME_DIR")}
        os.environ["HERA_DATA_DIR"] = str(self.root / "data")
        os.environ["HERA_RUNTIME_DIR"] = str(self.root / "run")
        self.work = self.root / "work"
        self.work.mkdir()
        self.plugins = create_manager()
        self.plugins.register(tally_family, "tally")
        self.store = AgentStore(Scope("user"))
        # id -> {"installed": bool, "steps": int, "size": int}
        self.model: dict[str, dict] = {}

    def teardown(self):
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self.root, ignore_errors=True)

    def _pick(self, data, installed: bool | None = None) -> str:
        # By position in build order: ids are random, so drawing from them
        # directly would not replay.
        ids = [i for i, m in self.model.items() if installed is None or m["installed"] == installed]
        return ids[data.draw(st.integers(0, len(ids) - 1))]

    def _file(self, agent_id: str) -> Path:
        return self.work / f"{agent_id}.json"

    def _target(self, agent_id: str) -> manager.Target:
        return manager.select_target(self.store, None, agent_id[:12], None)

    @rule(size=st.integers(1, 4))
    def build(self, size):
        path, built = manager.build(self.plugins, "tally", "example", {"size": size},
                                    self.work / "new.json")
        path.rename(self._file(built.id))
        self.model[built.id] = {"installed": False, "steps": 0, "size": size, "left": False,
                                "ran": False}
        note(f"build {built.id[:8]} size={size}")

    @precondition(lambda self: any(not m["installed"] for m in self.model.values()))
    @rule(data=st.data())
    def install(self, data):
        agent_id = self._pick(data, installed=False)
        manager.install(self.plugins, self.store, self._file(agent_id))
        self.model[agent_id].update(installed=True, left=False)
        note(f"install {agent_id[:8]}")

    @precondition(lambda self: self.model)
    @rule(data=st.data(), steps=st.integers(1, 9), by_file=st.booleans())
    def up(self, data, steps, by_file):
        agent_id = self._pick(data)
        if by_file or not self.model[agent_id]["installed"]:
            target = manager.select_target(self.store, str(self._file(agent_id)), None, None,
                                           allow_uninstalled=True)
        else:
            target = self._target(agent_id)
        runner.up(self.plugins, target, runner.UpOptions(steps=steps), say=lambda _: None)
        self.model[agent_id].update(installed=True, left=False, ran=True)
        self.model[agent_id]["steps"] += steps
        note(f"up {agent_id[:8]} --steps {steps}")

    @precondition(lambda self: any(m["installed"] for m in self.model.values()))
    @rule(data=st.data(), extra=st.integers(-1, 2))
    def grow(self, data, extra):
        agent_id = self._pick(data, installed=True)
        size = self.model[agent_id]["size"] + extra
        try:
            manager.grow(self.plugins, self._target(agent_id), {"size": size})
        except HeraError as exc:
            assert extra < 0 and "cannot shrink" in exc.message
            note(f"grow {agent_id[:8]} size={size}: refused")
            return
        assert extra >= 0
        self.model[agent_id]["size"] = size
        note(f"grow {agent_id[:8]} size={size}")

    @precondition(lambda self: any(m["installed"] for m in self.model.values()))
    @rule(data=st.data())
    def uninstall(self, data):
        agent_id = self._pick(data, installed=True)
        manager.uninstall(self._target(agent_id), self.work)
        self.model[agent_id].update(installed=False, left=True, ran=False)  # its note goes too
        copy = InstanceFile.read(self._file(agent_id))
        assert copy.steps == self.model[agent_id]["steps"]
        note(f"uninstall {agent_id[:8]}")

    @precondition(lambda self: any(m["installed"] for m in self.model.values()))
    @rule(data=st.data())
    def destroy(self, data):
        agent_id = self._pick(data, installed=True)
        manager.destroy(self._target(agent_id))
        self._file(agent_id).unlink(missing_ok=True)
        del self.model[agent_id]
        note(f"destroy {agent_id[:8]}")

    @invariant()
    def one_durable_copy_per_installed_agent(self):
        on_disk = sorted(p.name for p in self.store.dir.iterdir()) if self.store.dir.exists() else []
        expected = sorted([f"{i}.json" for i, m in self.model.items() if m["installed"]]
                          # the note an uninstall leaves, until the agent is back
                          + [f"{i}.uninstalled" for i, m in self.model.items() if m["left"]]
                          # how its last run ended, once it has run here
                          + [f"{i}.ended" for i, m in self.model.items()
                             if m["installed"] and m["ran"]])
        assert on_disk == expected  # no temp files, nothing extra, nothing missing
        for agent_id in (i for i, m in self.model.items() if m["installed"]):
            saved = self.store.load(agent_id)
            assert saved.steps == self.model[agent_id]["steps"]
            assert saved.definition["size"] == self.model[agent_id]["size"]
            counts = saved.tensors()["counts"]
            assert counts.shape == (self.model[agent_id]["size"],)

    @invariant()
    def no_agent_is_left_locked(self):
        run = Path(os.environ["HERA_RUNTIME_DIR"])
        assert not run.exists() or not list(run.glob("*.pid"))


TestLifecycle = Lifecycle.TestCase
TestLifecycle.settings = settings(max_examples=30, stateful_step_count=15, deadline=None)
