"""The ``triton_device`` fixture of the kernel tests, and the import of triton
under Triton's interpreter that it needs. The Triton kernels run on the GPU
when there is one, otherwise in Triton's interpreter on the CPU
(``TRITON_INTERPRET=1``, set by the ``triton_device`` fixture for each test
module's kernel tests only, so other modules' subprocesses never inherit it;
``_import_triton_for_the_interpreter`` says why triton itself is imported
when this conftest is, at collection).
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest
import torch

from tests.kernels.common import KERNEL_MODULES


def _import_triton_for_the_interpreter() -> None:
    """Import triton now, with ``TRITON_INTERPRET=1``, then put the
    environment back.

    ``@triton.jit`` decides when it decorates a function whether to
    interpret it, and Triton's own library functions (``tl.max``,
    ``tl.zeros_like``, ...) are decorated when triton is imported: imported
    without the variable, they refuse to run inside an interpreted kernel.
    pytest imports this conftest before the kernel test modules, no other
    test module imports triton in this process, and collection happens
    before any test runs, so doing it here comes first. On a GPU machine the
    kernels run compiled and nothing is done.
    """
    if torch.cuda.is_available() or "triton" in sys.modules:
        return
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        importlib.import_module("triton")
    except ImportError:
        pass  # the triton_device fixture skips the kernel tests
    finally:
        if before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = before


_import_triton_for_the_interpreter()


@pytest.fixture(scope="module")
def triton_device():
    """Where the kernels run: ``cuda`` when there is a GPU, else ``cpu``
    under Triton's interpreter (set before the kernel modules are decorated)."""
    triton = pytest.importorskip("triton")
    if torch.cuda.is_available():
        yield "cuda"
        return
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(triton.language.max, InterpretedFunction):
        pytest.fail("triton was imported before TRITON_INTERPRET=1 was set, so its library "
                    "cannot run in the interpreter: run tests/kernels in its own process")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRITON_INTERPRET", "1")
        # @triton.jit decides at import whether to interpret: a module
        # imported earlier without the variable is decorated again.
        for name in KERNEL_MODULES:
            if name in sys.modules:
                importlib.reload(sys.modules[name])
        yield "cpu"
