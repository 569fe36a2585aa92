"""The compiled CPU step (``cpu_step.cpp``), built on first use: the
default backend of a sheet on the CPU.

PyTorch's per-operation overhead, not arithmetic, bounds the torch backend
on small and medium sheets: a step is a few dozen small operations. The
compiled step runs whole chunks of steps in one call with the same float32
operations in the same order, so it gives the torch backend's bits. It
needs a C++ compiler and ninja; the build (about 30 s) is cached by
PyTorch's extension loader (``TORCH_EXTENSIONS_DIR``). Where it cannot be
built, the sheet says so once and steps with torch.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

#: The extension's name in PyTorch's cache; the loader rebuilds it by itself
#: when the source or the flags change.
_BUILD = "hera_abraxas_cpu_step_5"


def _built() -> bool:
    """Whether the extension loader holds a build of this step (only to
    announce a build; a stale one is rebuilt all the same)."""
    from torch.utils.cpp_extension import _get_build_directory

    return any(Path(_get_build_directory(_BUILD, verbose=False)).glob(f"{_BUILD}*.so"))


@functools.lru_cache(maxsize=None)
def available() -> Any | None:
    """The built extension, or None (said once on stderr) where it cannot be
    built: the default CPU backend then falls back to torch."""
    try:
        if not _built():
            print("abraxas: building the compiled CPU step (once, about 30 s)", file=sys.stderr,
                  flush=True)
        return compiled()
    except RuntimeError as error:
        print(f"abraxas: {error}; stepping with torch instead (slower)", file=sys.stderr,
              flush=True)
        return None


@functools.lru_cache(maxsize=None)
def compiled() -> Any:
    """The built extension module (``run_steps``).

    :raises RuntimeError: with the reason when it cannot be built here.
    """
    try:
        from torch.utils.cpp_extension import load

        return load(name=_BUILD, sources=[str(Path(__file__).with_name("cpu_step.cpp"))],
                    extra_cflags=["-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math"],
                    verbose=False)
    except Exception as error:  # compiler missing, headers missing, build error
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(f"the compiled CPU step cannot be built here ({first.rstrip('.')})") \
            from error
