"""Which backend steps an abraxas sheet: the one place that chooses.

``cpp`` (the compiled CPU step) on a CPU where it builds, ``triton``
(hera.kernels' GPU kernels) on a CUDA device where triton imports,
``torch`` (the kernels' references) everywhere else; all three give the same
bits. ``HERA_ABRAXAS_BACKEND`` or a sheet's ``backend`` argument asks for
one. :func:`choose` is what a sheet steps on; :func:`planned` says which one
it will be without building or loading anything, for the memory estimate.
The kernel-level default (``hera.kernels.default_backend``) is the GPU half
of the choice; ``hera devices`` shows that one.
"""

from __future__ import annotations

import os
from typing import Any

from hera.errors import HeraError
from hera.kernels import device_type

#: The backends a sheet can step on.
BACKENDS = ("torch", "triton", "cpp")
#: The environment variable that asks for one.
ENV = "HERA_ABRAXAS_BACKEND"


def requested(backend: str | None = None) -> str | None:
    """``backend``, else ``HERA_ABRAXAS_BACKEND``, else ``None``; refusing
    a name abraxas does not have."""
    asked = backend or os.environ.get(ENV) or None
    if asked is not None and asked not in BACKENDS:
        raise HeraError(f"abraxas has no backend {asked!r} ({ENV}: {', '.join(BACKENDS)})")
    return asked


def planned(device: Any, backend: str | None = None) -> str:
    """The backend :func:`choose` picks for ``device``, without compiling or
    loading: ``cpp`` on a CPU where it is built or a compiler is found."""
    from hera.kernels import default_backend

    asked = requested(backend)
    if asked is not None:
        return asked
    if device_type(device) != "cpu":
        return default_backend(device)
    from hera_family_abraxas import cpu_backend

    if cpu_backend.library_path().is_file():
        return "cpp"
    try:
        cpu_backend.compiler()
    except RuntimeError:
        return "torch"
    return "cpp"


def choose(device: Any, backend: str | None = None) -> tuple[str, Any]:
    """The backend a sheet on ``device`` steps on, and the compiled step
    when it is ``cpp``.

    :raises HeraError: a backend was asked for that cannot run here.
    """
    from hera.kernels import check_backend, default_backend

    asked = requested(backend)
    if asked is None and device_type(device) == "cpu":
        from hera_family_abraxas.cpu_backend import available

        step = available()  # says once why not, and the sheet steps with torch
        return ("torch", None) if step is None else ("cpp", step)
    if asked is None:
        return default_backend(device), None
    if asked == "cpp":
        if device_type(device) != "cpu":
            raise HeraError(f"the abraxas cpp backend runs on the CPU, not {device}")
        from hera_family_abraxas.cpu_backend import compiled

        try:
            return "cpp", compiled()
        except RuntimeError as error:
            raise HeraError(str(error)) from error
    try:
        check_backend(asked, device)
    except (ValueError, RuntimeError) as error:
        raise HeraError(f"abraxas cannot step on {asked}: {error}") from error
    return asked, None
