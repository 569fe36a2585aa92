"""The compiled CPU step (``cpu_step.cpp``), built on first use.

PyTorch's per-operation overhead, not arithmetic, bounds the torch backend
on small and medium sheets: a step is a few dozen small operations. The
compiled step runs whole chunks of steps in one call with the same float32
operations in the same order, so it gives the torch backend's bits. It
needs a C++ compiler and ninja; the build (about a minute) is cached by
PyTorch's extension loader (``TORCH_EXTENSIONS_DIR``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

#: Bumped whenever cpu_step.cpp changes, so a cached build is never reused.
_BUILD = "hera_abraxas_cpu_step_4"


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
        raise RuntimeError(f"the abraxas cpp backend cannot be built here: {first}") from error
