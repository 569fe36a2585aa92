"""AgentSession and breakpoints, in-process with the test family."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hera.breakpoints import Breakpoint
from hera.errors import HeraError, UsageError
from hera.hooks.types import LoadedAgent
from hera.instance import InstanceFile
from hera.plugins import create_manager
from hera.session import AgentSession
from hera.signals import MEANINGS, parse_name
from tests import tally_family


class _Store:
    """Records saves instead of writing (the session's contract with a store)."""

    def __init__(self):
        self.saved = []

    def save(self, instance):
        self.saved.append(instance.steps)
        return instance


def _session(steps_so_far: int = 0) -> AgentSession:
    plugins = create_manager()
    plugins.register(tally_family, "tally")
    built = plugins.family_hooks("tally").hera_build(layout="example", overrides={}, seed=1)
    meta = {"id": "00000000-0000-4000-8000-000000000000", "callsign": "t",
            "family": {"name": "tally", "version": "0", "data_format": 1}, "layout": "example",
            "created": "", "seed": 1, "steps": steps_so_far, "incarnation": 0, "hera_version": ""}
    instance = InstanceFile(meta, built.definition, {})
    instance.set_tensors(built.tensors, None)
    loaded = plugins.family_hooks("tally").hera_load(definition=built.definition,
                                    tensors=built.tensors, state=None, device="cpu", seed=1)
    assert isinstance(loaded, LoadedAgent)
    return AgentSession(plugins, instance, _Store(), loaded, "foreground")


@given(st.integers(1, 300), st.integers(1, 500), st.integers(0, 50))
def test_advance_stops_exactly_at_a_step_breakpoint(at, budget, start):
    session = _session(start)
    session.add_breakpoint(at=start + at)
    hit = session.advance(budget)
    if at <= budget:
        assert hit is not None and hit.step == start + at == session.step_count
    else:
        assert hit is None and session.step_count == start + budget
    assert session.handle.counts[0].item() == session.done


@given(st.integers(1, 40), st.integers(1, 200))
def test_every_n_fires_at_each_multiple(every, budget):
    session = _session()
    session.add_breakpoint(every=every)
    hits = []
    while session.done < budget:
        hit = session.advance(budget - session.done)
        if hit is not None:
            hits.append(hit.step)
    assert hits == list(range(every, budget + 1, every))


def test_conditions_are_checked_every_step():
    session = _session()
    session.add_breakpoint(when="agent.handle.counts[0].item() >= 17")
    hit = session.advance(1000)
    assert hit is not None and session.step_count == 17
    session.clear_breakpoints()
    session.add_breakpoint(when=lambda agent: agent.step_count % 5 == 3)
    assert session.advance(100).step == 18


def test_breakpoints_are_numbered_and_cleared():
    session = _session()
    a = session.add_breakpoint(at=5)
    b = session.add_breakpoint(every=3)
    assert (a.id, b.id) == (1, 2)
    assert session.clear_breakpoints(1) == 1 and [x.id for x in session.breakpoints] == [2]
    assert session.clear_breakpoints() == 1 and session.breakpoints == []


@pytest.mark.parametrize("kwargs", [{}, {"at": 1, "every": 2}, {"every": 0},
                                    {"when": "agent.(("}])
def test_bad_breakpoints_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        Breakpoint(**kwargs)


def test_save_records_steps_and_one_incarnation_per_up():
    session = _session(10)
    session.advance(5)
    session.save()
    session.advance(5)
    session.save()
    assert session.store.saved == [15, 20]
    assert session.instance.meta["incarnation"] == 1
    assert session.status()["step"] == 20 and session.status()["state"] == "running"


@pytest.mark.parametrize("text,name", [("term", "SIGTERM"), ("SIGINT", "SIGINT"), ("15", "SIGTERM"),
                                       ("ttou", "SIGTTOU"), ("Stop", "SIGSTOP")])
def test_signal_names(text, name):
    assert parse_name(text) == name


@pytest.mark.parametrize("text", ["SIGWINCH", "FOO", "99", ""])
def test_signals_outside_the_table_are_refused(text):
    with pytest.raises(ValueError):
        parse_name(text)


def test_the_table_is_the_seeds():
    assert set(MEANINGS) == {"SIGCONT", "SIGSTOP", "SIGTSTP", "SIGHUP", "SIGINT", "SIGQUIT",
                             "SIGABRT", "SIGKILL", "SIGTERM", "SIGTTIN", "SIGTTOU"}


def test_a_state_gone_nan_is_never_saved_over_the_last_good_save():
    session = _session(7)
    session.advance(3)
    session.save()
    assert session.store.saved == [10]
    session.advance(2)
    session.handle.counts[1] = float("nan")  # what a family that diverged would hand over
    with pytest.raises(HeraError, match="'counts' holds NaN .* last good save \\(step 10\\)"):
        session.save()
    assert session.store.saved == [10] and session.saved_steps == 10


def test_one_table_names_every_agent_command():
    """hera.agent_commands is the one list: both prompts' ``agent`` offer
    exactly its prompt commands, the loop answers its control requests that
    do not act on the agent itself, and hera.session.answer those that do
    (a program's agent answers them through it too)."""
    import inspect

    from hera.agent_commands import CONTROL, ON_THE_AGENT, PROMPT
    from hera.loop import Loop
    from hera.prompt import LocalAgent, RemoteAgent
    from hera.session import answer

    prompt = {c.name for c in PROMPT}
    for cls in (LocalAgent, RemoteAgent):
        public = {n for n, _ in inspect.getmembers(cls, inspect.isfunction)
                  if not n.startswith("_")}
        assert public == prompt, cls
    loop_handlers = Loop.handlers(Loop.__new__(Loop))
    assert set(loop_handlers) | set(ON_THE_AGENT) | {"io"} == set(CONTROL)
    assert not set(loop_handlers) & set(ON_THE_AGENT)
    session = _session()
    for cmd in ON_THE_AGENT:
        args = {"line": "x"} if cmd == "input" else {}
        if cmd in ("output_array", "freeze", "activity"):
            with pytest.raises(HeraError):  # the test family has no arrays and no counters
                answer(session, {"cmd": cmd, **args})
        else:
            assert answer(session, {"cmd": cmd, **args}) is not None, cmd
    assert answer(session, {"cmd": "pause"}) is None
