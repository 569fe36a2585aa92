"""What an ``up`` needs: the family's report, and what hera's process adds.

A family's ``hera_simulate`` counts what its loaded agent holds on a device.
Where the agent lives in the memory of the process itself (the CPU), the
process needs more at its peak, and ``up --simulate``, ``layouts`` and the
check before loading count it too:

- **the process**: Python, hera and the libraries the family loads (torch's
  own code and allocations come to a few hundred MB), measured once by
  loading the family's smallest layout in a process of its own, and kept in
  hera's cache directory for this Python, hera, family and torch;
- **a copy of the agent**: while loading, the file's decoded tensors sit
  beside the family's copies; while saving, the snapshot sits beside the
  live agent (the report's ``snapshot``, or the tensors the file holds).

On a GPU the report is the device's memory and stays the family's.
"""

from __future__ import annotations

import functools
import json
import resource
import subprocess
import sys
from typing import Any

from hera import atomic, places
from hera.errors import HeraError
from hera.hooks.types import ResourceReport

PROCESS = "process (Python, libraries)"
COPY = "copy at load and save"

_CACHE_FILE = "process-memory.json"
# longer than a first compile may take (cpu_backend's 600 s)
_MEASURE_TIMEOUT = 900.0
# what this process read or measured, also where the cache could not keep it
_MEASURED: dict[str, int | None] = {}
# A measurement outside this range is not believed.
_MOST = 1 << 40


def host_device(device: str) -> bool:
    """Whether an agent on ``device`` lives in this process's own memory."""
    return device.split(":", 1)[0] == "cpu"


def up_report(plugins: Any, family: str, report: ResourceReport | None, device: str,
              held: int = 0, measure: bool = True) -> ResourceReport | None:
    """The family's ``report`` with what the up's process adds on a host
    device (see the module docstring); ``held``: the bytes of the tensors
    an instance file holds (the copy, where the family's report has no
    snapshot). ``measure``: measure the process where the cache has no
    figure yet (else it is left out: ``up`` itself, which loads the family
    anyway, does not start a second process that would compile or load
    what it is about to)."""
    if report is None or not host_device(device):
        return report
    classes = dict(report.tensors)
    copy = max(report.snapshot, held)
    if copy:
        classes[COPY] = copy
    base = baseline(plugins, family, measure)
    if base:
        classes[PROCESS] = base
    return ResourceReport(device=report.device, tensors=classes, dominant=report.dominant,
                          snapshot=report.snapshot)


def baseline(plugins: Any, family: str, measure: bool = True) -> int | None:
    """The bytes of a process that has loaded ``family``'s smallest agent,
    less the agent: measured once per Python, hera, family and torch (if
    ``measure``), then read from the cache; ``None`` where it is not known."""
    key = _key(plugins, family)
    if key in _MEASURED:  # read or measured already (layouts asks once per layout)
        return _MEASURED[key]
    path = places.cache_dir() / _CACHE_FILE
    known = _read_cache(path)
    value = known.get(key)
    if isinstance(value, int) and 0 < value < _MOST:
        _MEASURED[key] = value
        return value
    if not measure:
        return None
    value = _MEASURED[key] = _measure(family)  # once per process, even if it fails
    if value is None:
        return None
    known[key] = value
    try:
        places.ensure_private_dir(path.parent, must_own=True, keeping="hera's cache",
                                  override="HERA_CACHE_DIR")
        atomic.write_atomically(path, [json.dumps(known, indent=1, sort_keys=True).encode()])
    except (HeraError, OSError):
        pass  # measured again next time
    return value


def _key(plugins: Any, family: str) -> str:
    import hera

    info = plugins.family(family)
    return "|".join([sys.executable, sys.version.split()[0], hera.__version__,
                     f"{family} {info.version}", f"torch {_torch_version()}"])


@functools.lru_cache(maxsize=None)
def _torch_version() -> str:
    """The installed torch's version, without importing it."""
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "none"


def _read_cache(path: Any) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as stream:
            found = json.loads(stream.read(1 << 20))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _measure(family: str) -> int | None:
    """Run :func:`measure` in a process of its own (this one may hold
    other things): its answer, or ``None`` if it fails. What the child
    says on stderr is passed on when it succeeds."""
    try:
        done = subprocess.run([sys.executable, "-m", "hera.estimates", family],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=_MEASURE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not lines[-1].isdigit():
        return None
    # what the family said while loading (a first compile, say) is said once, here
    sys.stderr.write(done.stderr)
    value = int(lines[-1])
    return value if 0 < value < _MOST else None


def measure(family: str) -> int:
    """In this fresh process: load ``family``'s smallest layout on the CPU
    as ``up`` does, step it and take a snapshot; the peak resident memory
    less what the family's report counts for that agent."""
    import hera.runner  # noqa: F401 - what an up imports besides the family
    from hera.plugins import load_plugins

    plugins = load_plugins()
    hooks = plugins.family_hooks(family)
    smallest = min(plugins.layouts(family), key=lambda layout: layout.bytes)
    built = hooks.hera_build(layout=smallest.name, overrides={}, seed=1)
    report = hooks.hera_simulate(definition=dict(built.definition), device="cpu")
    loaded = hooks.hera_load(definition=dict(built.definition), tensors=built.tensors,
                             state=None, device="cpu", seed=1)
    hooks.hera_step(agent=loaded.handle, steps=1)
    hooks.hera_serialize(agent=loaded.handle)
    peak = _peak_resident()
    agent = 0 if report is None else report.total + report.snapshot
    return max(1, peak - agent)


def _peak_resident() -> int:
    """This process's peak resident bytes since it was started. On Linux
    from ``VmHWM``: ``ru_maxrss`` keeps the parent's peak across fork and
    exec, and the parent may hold an agent."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes there, KiB here
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit


if __name__ == "__main__":
    print(measure(sys.argv[1]))
