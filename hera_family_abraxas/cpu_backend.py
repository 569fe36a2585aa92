"""The compiled CPU step (``cpu_step.cpp``): the default backend of a sheet
on the CPU, compiled on first use.

PyTorch's per-operation overhead, not arithmetic, bounds the torch backend
on small and medium sheets: a step is a few dozen small operations. The
compiled step runs whole chunks of steps in one call with the same float32
operations in the same order, so it gives the torch backend's bits.

It is one C function over raw pointers, with no torch or Python header, so
the system's C++ compiler builds it in about a second and ctypes loads it.
Builds live in hera's cache directory (:func:`hera.places.cache_dir`), one
file per *build key*: a hash of the source, the compiler flags and the CPU
target (``-march=native`` makes code for this CPU). A build whose key is
there is loaded as it is, with no compiler or build tool involved, so a
change of PATH, compiler or environment never rebuilds it; a change of any
part of the key builds a new file beside it. torch and Python versions are
not part of the key: the library links neither. Where it cannot be built,
the sheet says so once and steps with torch.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import os
import platform
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any, Sequence

from hera.errors import HeraError

SOURCE = Path(__file__).with_name("cpu_step.cpp")

#: -ffp-contract=off and -fno-fast-math keep the reference's roundings.
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math", "-std=c++17",
         "-shared", "-fPIC")

#: What a sheet hands the step, in order (see ``cpu_step.cpp``).
STATE_DTYPES = ("float32", "int32", "float32", "float32", "float32", "float32", "int32",
                "float32", "int64", "uint8", "int64")
VALUES, SIZES = 15, 10
#: The geometry among the sizes: inputs, width, height, depth, cells,
#: dendrite, axon (then output_start, refractory and the scaling cap).
GEOMETRY_SIZES = 7

_COMPILE_TIMEOUT = 600.0


class BuildInterrupted(HeraError):
    """The compile was interrupted (Ctrl-C): nothing may start on a slower
    backend in its place."""


def cpu_target() -> str:
    """What ``-march=native`` compiles for here: the processor's identity
    and features (Linux), or the machine and processor names elsewhere."""
    wanted = ("vendor_id", "cpu family", "model", "flags",  # x86
              "CPU implementer", "CPU architecture", "CPU variant", "CPU part", "Features")
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            first = info.read().split("\n\n", 1)[0]
    except OSError:
        first = ""
    fields = []
    for line in first.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in wanted:
            fields.append(f"{key.strip()}={value.strip()}")
    return "; ".join([sys.platform, platform.machine(), platform.processor(), *sorted(fields)])


def build_key(source: bytes | None = None, flags: Sequence[str] = FLAGS,
              target: str | None = None) -> str:
    """The key that names a build: it changes with the source, the flags or
    the CPU target, and with nothing else.

    :param source: the C++ source (default: ``cpu_step.cpp``'s bytes).
    :param target: the CPU target (default: :func:`cpu_target`).
    """
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes() if source is None else source,
                 "\0".join(flags).encode(), (cpu_target() if target is None else target).encode()):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()[:20]


def library_path() -> Path:
    """Where this source's build for this CPU lives (or will)."""
    from hera import places

    return places.cache_dir() / "compiled" / f"abraxas-cpu-step-{build_key()}.so"


def compiler() -> list[str]:
    """The C++ compiler's command: ``CXX`` when set, else the first of
    c++, g++ and clang++ on PATH.

    :raises RuntimeError: where there is none.
    """
    if os.environ.get("CXX", "").strip():
        try:
            return shlex.split(os.environ["CXX"])
        except ValueError as error:
            raise RuntimeError(f"CXX is not a command line ({error})") from None
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return [found]
    raise RuntimeError("no C++ compiler: install g++ or clang++, or set CXX")


def build(path: Path | None = None) -> Path:
    """Compile the step into ``path`` (default :func:`library_path`) unless
    it is there already. Concurrent builders wait for each other on a lock
    that ends with its holder, so a killed build never blocks the next one;
    the file appears whole or not at all.

    :raises RuntimeError: with the reason where it cannot be built.
    :raises BuildInterrupted: when Ctrl-C stopped the compiler.
    """
    from hera import places

    path = library_path() if path is None else path
    try:
        places.ensure_private_dir(path.parent, must_own=True, keeping="compiled code",
                                  override="HERA_CACHE_DIR")
    except HeraError as error:
        raise RuntimeError(error.message) from None
    try:
        lock_fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                          0o600)
    except OSError as error:
        raise RuntimeError(f"cannot lock {path.with_suffix('.lock')}: {error.strerror}") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if path.exists():
            return path
        command = compiler()
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            try:
                done = subprocess.run([*command, *FLAGS, str(SOURCE), "-o", str(partial)],
                                      stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                      errors="replace", timeout=_COMPILE_TIMEOUT)
            except OSError as error:
                raise RuntimeError(f"cannot run {command[0]}: {error.strerror}") from None
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{command[0]} took over {_COMPILE_TIMEOUT:.0f} s") from None
            if done.returncode == -signal.SIGINT:
                raise BuildInterrupted("interrupted while compiling the abraxas CPU step; "
                                       "the agent did not start")
            if done.returncode != 0:
                lines = [ln for ln in done.stderr.splitlines() if "error" in ln.lower()]
                first = (lines or done.stderr.strip().splitlines() or
                         [f"exit status {done.returncode}"])[0].strip()
                raise RuntimeError(f"{Path(command[0]).name} failed: {first}")
            os.chmod(partial, 0o700)
            os.replace(partial, path)
        finally:
            if partial.exists():
                partial.unlink()
        return path
    finally:
        os.close(lock_fd)


class CompiledStep:
    """The loaded library: :meth:`run_steps` advances a sheet's arrays."""

    def __init__(self, path: Path):
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() \
                or info.st_mode & 0o022:
            raise RuntimeError(f"{path} is not a file of this user's alone; not loading it")
        self.path = path
        function = ctypes.CDLL(str(path)).hera_abraxas_run_steps
        function.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p,
                             ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int64),
                             ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        function.restype = ctypes.c_int64
        self._function = function
        self._checked: tuple[Any, ...] = ()
        rates = ctypes.CDLL(str(path)).hera_abraxas_input_rates
        rates.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                          ctypes.c_double, ctypes.c_double]
        rates.restype = None
        self._rates = rates

    def input_rates(self, values: int, n: int, rates: Any, max_rate: float, idle: float
                    ) -> None:
        """Set ``rates`` (the sheet's input rates: a contiguous float32 CPU
        tensor) from the ``n`` doubles at address ``values``: ``max_rate``
        times each clipped to [0, 1], NaN as 0, rounded to float once; the
        channels past ``n`` get ``idle``."""
        if not 0 <= n <= rates.numel():
            raise ValueError(f"{n} input values for {rates.numel()} rates")
        self._rates(values, n, rates.data_ptr(), rates.numel(), max_rate, idle)

    def run_steps(self, state: Sequence[Any], weights: Any, values: Sequence[float],
                  sizes: Sequence[int], seed: int, t: int, steps: int,
                  raster: Any | None = None) -> int:
        """Advance ``steps`` steps in place from step ``t``; returns the new
        step counter. ``weights`` is the weight buffer (input weights, then
        the neurons' rows); ``sizes`` begins with the geometry, from which
        the step finds every synapse. ``raster`` (uint8 ``[steps, inputs]``)
        gives input spikes for each step. The tensors are checked against
        the sizes first: a wrong dtype, device, layout or size would be read
        as raw memory.

        :raises ValueError: for tensors or values that do not fit the step.
        """
        if len(values) != VALUES or len(sizes) != SIZES:
            raise ValueError(f"the compiled step takes {VALUES} values and {SIZES} sizes")
        if t < 0 or steps < 0:
            raise ValueError(f"steps from step {t}: neither may be negative")
        arrays = (*state, weights)
        # A tensor's dtype, device, layout and size stay what they are, so
        # the same live tensors with the same sizes as last time need no
        # second look (weak references: a sheet's tensors go when it goes).
        key = tuple(int(x) for x in sizes[:GEOMETRY_SIZES + 1])
        if len(arrays) != len(self._checked) - 1 or self._checked[-1] != key or any(
                seen() is not a for a, seen in zip(arrays, self._checked)):
            _check(state, STATE_DTYPES, "state")
            _check([weights], ("float32",), "weights")
            _check_sizes(state, weights, key)
            self._checked = (*(weakref.ref(a) for a in arrays), key)
        if raster is not None:
            _check([raster], ("uint8",), "raster")
            if tuple(raster.shape) != (steps, sizes[0]):
                raise ValueError(f"a raster for {steps} steps of {sizes[0]} inputs must be "
                                 f"[{steps}, {sizes[0]}], not {list(raster.shape)}")
        low64 = (int(seed) & 0xFFFF_FFFF_FFFF_FFFF) - ((int(seed) >> 63 & 1) << 64)
        return self._function((ctypes.c_void_p * len(state))(*(x.data_ptr() for x in state)),
                              weights.data_ptr(), (ctypes.c_double * VALUES)(*values),
                              (ctypes.c_int64 * SIZES)(*sizes), low64, t, steps,
                              None if raster is None else raster.data_ptr())


def _check_sizes(state: Sequence[Any], weights: Any, sizes: Sequence[int]) -> None:
    """Refuse arrays smaller than the geometry in ``sizes`` says they are."""
    inputs, width, height, depth, cells, reach, axon, output_start = sizes
    if min(inputs, width, height, depth, cells, axon) < 1 or reach < 0 \
            or not 0 <= output_start <= width * height * depth * cells:
        raise ValueError(f"the compiled step cannot take the geometry {list(sizes)}")
    first = width * height * cells
    n, k = first * depth, 3 * (2 * reach + 1) ** 2 * cells
    if n >= 2 ** 31:  # the step numbers its targets in int32
        raise ValueError(f"the compiled step takes fewer than 2**31 neurons, not {n}")
    want = (n, n, n, n, inputs + n, n, (axon + 1) * n, inputs, n - output_start, inputs,
            inputs + n)
    for index, (array, count) in enumerate(zip(state, want)):
        if array.numel() != count:
            raise ValueError(f"state[{index}] has {array.numel()} elements where the geometry "
                             f"gives {count}")
    if weights.numel() != inputs * first + n * k:
        raise ValueError(f"the weight buffer has {weights.numel()} elements where the geometry "
                         f"gives {inputs * first + n * k}")


def _check(tensors: Sequence[Any], dtypes: Sequence[Any], what: str) -> None:
    if len(tensors) != len(dtypes):
        raise ValueError(f"the compiled step takes {len(dtypes)} {what} tensors")
    for index, (tensor, allowed) in enumerate(zip(tensors, dtypes)):
        allowed = (allowed,) if isinstance(allowed, str) else allowed
        if str(tensor.dtype).removeprefix("torch.") not in allowed \
                or tensor.device.type != "cpu" or not tensor.is_contiguous():
            raise ValueError(f"{what}[{index}] must be a contiguous CPU tensor of "
                             f"{' or '.join(allowed)}, not {tensor.dtype} on {tensor.device}")


@functools.lru_cache(maxsize=None)
def compiled() -> CompiledStep:
    """The compiled step, built first where this CPU has no build yet.

    :raises RuntimeError: with the reason when it cannot be built here.
    :raises BuildInterrupted: when Ctrl-C stopped the compiler.
    """
    path = library_path()
    for attempt in ("first", "again"):
        if not path.exists():
            print("abraxas: compiling the CPU step (once for this CPU, about a second)",
                  file=sys.stderr, flush=True)
            build(path)
        try:
            return CompiledStep(path)
        except OSError as error:  # not a library this system loads (damaged)
            if attempt == "again":
                raise RuntimeError(f"cannot load {path}: {error}") from None
            path.unlink(missing_ok=True)
    raise AssertionError("unreachable")


@functools.lru_cache(maxsize=None)
def available() -> CompiledStep | None:
    """The compiled step, or None (said once on stderr) where it cannot be
    built: the default CPU backend then steps with torch.

    :raises BuildInterrupted: when Ctrl-C stopped the compiler: the agent
        stops rather than start on a slower backend.
    """
    try:
        return compiled()
    except RuntimeError as error:
        print(f"abraxas: the compiled CPU step cannot be built here ({error}); "
              "stepping with torch instead (slower)", file=sys.stderr, flush=True)
        return None
