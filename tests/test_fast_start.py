"""Listing commands start fast: they never import torch or triton, and
every command's --help works."""

from __future__ import annotations

import pytest

from hera.cli import COMMANDS

LIGHT = [["--help"], ["agents"], ["agents", "--all"], ["families"], ["layouts"], ["devices"]]


@pytest.mark.parametrize("argv", LIGHT, ids=[" ".join(a) for a in LIGHT])
def test_light_commands_do_not_import_torch_or_triton(world, argv):
    code = ("import sys\nfrom hera.cli import main\n"
            "try:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('heavy:', sorted(m for m in ('torch', 'triton') if m in sys.modules))" % argv)
    proc = world.run_python(code)
    assert proc.stdout.strip().splitlines()[-1] == "heavy: []"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(world, command):
    proc = world.run(command, "--help")
    assert f"usage: hera {command}" in proc.stdout
    assert "--uuid" in proc.stdout  # global options are accepted after the command too


def test_version_and_bare_invocation(world):
    assert world.run("--version").stdout.startswith("hera ")
    bare = world.run(check=False)
    assert bare.returncode == 2 and "COMMAND" in bare.stdout


def test_the_family_authors_module_is_light_until_a_kernel_is_used(world):
    """hera.family is imported at the top of every family's plugin module:
    it must not pull torch in; its kernels do, when first used."""
    proc = world.run_python(
        "import sys\nimport hera.family as f\n"
        "print(sorted(m for m in ('torch', 'triton') if m in sys.modules))\n"
        "assert callable(f.fill_normal) and callable(f.stream_key)\n"
        "print('torch' in sys.modules, sorted(f.__all__) == sorted(dir(f)))\n")
    assert proc.stdout.split("\n")[:2] == ["[]", "True True"]
