"""Every bad input: one clear line on stderr, exit 1 (2 for usage), no
traceback, and the installed agents untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hera.instance import InstanceFile
from tests.conftest import make_world


def _rewrite(src: Path, dest: Path, **meta) -> None:
    """Save a copy of ``src`` with metadata changed (checksums recomputed)."""
    instance = InstanceFile.read(src)
    for key, value in meta.items():
        instance.meta[key] = value
    instance.write(dest)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A world with one installed agent and a gallery of bad files (shared:
    every test checks that it changes nothing)."""
    world = make_world(tmp_path_factory.mktemp("errors"))
    agent_id, path = world.build()
    world.run("install", path.name)
    w = world.workdir
    (w / "garbage.json").write_text("this is not json")
    (w / "cut.json").write_bytes(path.read_bytes()[:300])
    (w / "cut-late.json").write_bytes(path.read_bytes()[:-5])
    tampered = path.read_text().replace('"steps":0', '"steps":9')
    assert tampered != path.read_text()
    (w / "tampered.json").write_text(tampered)
    data = path.read_text()
    # A built agent's tensors are all zero (no data): change a checksum digit.
    start = data.index('"xxh3":"') + len('"xxh3":"')
    (w / "bad-tensor.json").write_text(
        data[:start] + ("0" if data[start] != "0" else "1") + data[start + 1:])
    (w / "newer.json").write_text(data.replace('"version":2,', '"version":99,', 1))
    _rewrite(path, w / "ghost.json", family={"name": "ghost", "version": "1", "data_format": 1})
    _rewrite(path, w / "oldformat.json", family={"name": "abraxas", "version": "0", "data_format": 0})
    _rewrite(path, w / "badid.json", id="../../evil")
    ids = ["abcd0000-0000-4000-8000-000000000001", "abcd0000-0000-4000-8000-000000000002"]
    for i, new in enumerate(ids):
        _rewrite(path, w / f"twin{i}.json", id=new, callsign="twin")
        world.run("install", f"twin{i}.json")
    (w / "afile").write_text("")
    return world, agent_id, path


CASES = [
    # (id, args, exit code, words the message must contain)
    ("unknown family", ["--family", "nope", "build"], 1, ["unknown family", "abraxas"]),
    ("unknown layout", ["--layout", "nope", "build"], 1, ["no layout", "example"]),
    ("unknown parameter", ["build", "--set", "wdth=4"], 1, ["no layout parameter", "wdth"]),
    ("bad parameter value", ["build", "--set", "width=-2"], 1, ["width"]),
    ("malformed --set", ["build", "--set", "width"], 2, ["PARAM=VALUE"]),
    ("missing file", ["up", "missing.json"], 1, ["no such file"]),
    ("bad json", ["up", "garbage.json"], 1, ["not valid JSON"]),
    ("truncated file", ["install", "cut.json"], 1, ["truncated"]),
    ("truncated near its end", ["install", "cut-late.json"], 1, ["truncated"]),
    ("id not a uuid", ["install", "badid.json"], 1, ["not a UUID"]),
    ("bad callsign", ["build", "--name", "../x"], 2, ["not a valid callsign"]),
    ("tampered metadata", ["install", "tampered.json"], 1, ["checksum mismatch"]),
    ("tampered tensor", ["install", "bad-tensor.json"], 1, ["checksum mismatch", "tensor"]),
    ("newer format", ["install", "newer.json"], 1, ["version 99"]),
    ("unknown family in file", ["install", "ghost.json"], 1, ["unknown family", "ghost"]),
    ("family data format", ["install", "oldformat.json"], 1, ["data format 0"]),
    ("ambiguous id", ["--uuid", "abcd", "up"], 1, ["ambiguous", "abcd0000-0000-4000-8000-000000000001",
                                                   "abcd0000-0000-4000-8000-000000000002"]),
    ("ambiguous callsign", ["--callsign", "twin", "destroy", "--yes"], 1, ["ambiguous"]),
    ("unknown id", ["--uuid", "ffffffff", "up"], 1, ["no agent", "ffffffff"]),
    ("unknown callsign", ["--callsign", "nobody", "down"], 1, ["no agent", "nobody"]),
    ("not a uuid", ["--uuid", "xyz!", "up"], 2, ["not a UUID"]),
    ("file and id", ["--uuid", "abcd", "up", "twin0.json"], 2, ["not both"]),
    ("no agent named", ["destroy"], 2, ["which agent"]),
    ("missing device", ["--uuid", "{id}", "up", "--device", "cuda:3", "--steps", "1"], 1, ["cuda:3", "not found"]),
    ("unknown device", ["--uuid", "{id}", "up", "--device", "tpu", "--steps", "1"], 1, ["unknown device"]),
    ("nothing running", ["down"], 1, ["no agent is running"]),
    ("shrink refused", ["--uuid", "{id}", "grow", "width=1"], 1, ["cannot shrink width from 3 to 1"]),
    ("unwritable directory", ["build", "afile/x.json"], 1, ["cannot write"]),
    ("unknown command", ["biuld"], 2, ["did you mean", "build"]),
    ("mistyped family", ["--family", "abraxs", "build"], 1, ["did you mean 'abraxas'"]),
    ("mistyped layout", ["--layout", "exampel", "build"], 1, ["did you mean 'example'"]),
    ("mistyped callsign", ["--callsign", "twim", "down"], 1, ["no agent", "did you mean 'twin'"]),
    ("id where a file goes", ["up", "{id8}", "--steps", "1"], 1, ["no such file", "--uuid {id8}"]),
    ("an ambiguous callsign where a file goes", ["inspect", "twin"], 1, ["no such file"]),
    ("inspect a missing file", ["inspect", "missing.json"], 1, ["no such file"]),
    ("logs of nothing running", ["logs"], 1, ["no agent is running"]),
    ("zero steps", ["--uuid", "{id}", "up", "--steps", "0"], 2, ["at least 1"]),
]


@pytest.mark.parametrize("args,code,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_line(prepared, args, code, words):
    world, agent_id, _ = prepared
    cached = world.agents_dir / f"{agent_id}.json"
    before = cached.read_bytes()
    proc = world.run(*[a.replace("{id}", agent_id).replace("{id8}", agent_id[:8]) for a in args],
                     check=False)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hera: error: ")
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word.replace("{id8}", agent_id[:8]) in lines[0]
    assert cached.read_bytes() == before, "a failing command must not touch an agent"


def test_hera_debug_shows_the_traceback(world):
    (world.workdir / "garbage.json").write_text("{")
    world.env["HERA_DEBUG"] = "1"
    proc = world.run("install", "garbage.json", check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_unwritable_data_directory(world):
    _, path = world.build()
    blocker = world.root / "blocker"
    blocker.write_text("")
    world.env["HERA_DATA_DIR"] = str(blocker / "data")
    proc = world.run("install", path.name, check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "cannot create" in proc.stderr


def test_bad_config_file(world):
    (world.home / ".herarc").write_text("[options\nfamily=")
    proc = world.run("build", check=False)
    assert proc.returncode == 1 and "not valid TOML" in proc.stderr
    (world.home / ".herarc").write_text('[options]\nwidth = 4\n')
    proc = world.run("build", check=False)
    assert proc.returncode == 1 and "unknown option 'width'" in proc.stderr
    (world.home / ".herarc").write_text('[options]\nsteps = 0\n')
    proc = world.run("build", check=False)
    assert proc.returncode == 1 and "option 'steps' must be at least 1" in proc.stderr
    (world.home / ".herarc").write_text('[options]\nsilent = "yes"\n')
    proc = world.run("build", check=False)
    assert proc.returncode == 1 and "option 'silent' must be true or false" in proc.stderr
    (world.home / ".herarc").unlink()
    (world.workdir / "hera.json").write_text(json.dumps({"definition": {"width": "wide"}}))
    proc = world.run("build", check=False)
    assert proc.returncode == 1 and "width" in proc.stderr


def test_a_hint_is_given_only_where_it_fits(prepared):
    world, agent_id, _ = prepared
    callsign = world.row(agent_id)["callsign"]
    proc = world.run("down", callsign, check=False)
    assert f"name it with --callsign {callsign}" in proc.stderr and proc.returncode == 1
    proc = world.run("--layout", "zzzz", "build", check=False)
    assert "did you mean" not in proc.stderr
    proc = world.run("--callsign", "nobody", "down", check=False)
    assert "did you mean" not in proc.stderr
