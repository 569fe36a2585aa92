"""hera.testing, as a family author uses it: check_family on real
families (and on broken ones, which it must catch), and the hera_world
fixture through a pytest run of its own."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

import hera_family_abraxas
from hera.testing import check_family
from tests import tally_family

TALLY = Path(tally_family.__file__).read_text()


def _module(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, name, "exec"), module.__dict__)
    return module


def test_abraxas_and_the_test_family_pass():
    whole = check_family(hera_family_abraxas, "abraxas", overrides={"noise": 1.0},
                         lines=["1 0.5 0 1", "spikes 2 3"], plan=(13, 1, 26))
    assert whole.tensors["weights"].any()  # it learned something on the way
    check_family(_module(TALLY, "tally_checked"), "tally")


@pytest.mark.parametrize("change, message", [
    # answers for every family
    (("def hera_step(family, agent, steps):\n    if family != NAME:\n        return None\n",
      "def hera_step(family, agent, steps):\n"), "hera_step answered for another family"),
    # adds one to its counters at every save: a run split by saves is not one run
    (('{"counts": agent.counts.clone()}', '{"counts": agent.counts.clone() + 1}'),
     "steps against 100: tensor 'counts'"),
])
def test_a_family_that_breaks_the_contract_is_caught(change, message):
    old, new = change
    assert old in TALLY, old
    broken = _module(TALLY.replace(old, new), "tally_broken")
    with pytest.raises(AssertionError, match=message):
        check_family(broken, "tally")


def test_the_hera_world_fixture_is_there_for_a_family_authors_tests(tmp_path):
    (tmp_path / "test_mine.py").write_text(
        "def test_builds_and_runs(hera_world):\n"
        "    agent_id, path = hera_world.build()\n"
        "    hera_world.run('up', path.name, '--steps', '20')\n"
        "    assert hera_world.row(agent_id)['steps'] == 20\n"
        "    assert hera_world.workdir != hera_world.root\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path / "test_mine.py")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
