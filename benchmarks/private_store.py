"""A temporary HOME, data dir and runtime dir for a benchmark that ups
agents through the Python API: nothing of the user's is touched."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def private_store() -> Iterator[Path]:
    """Point hera at fresh directories under a temporary root; yield the root."""
    with tempfile.TemporaryDirectory() as root:
        for name in ("HOME", "HERA_DATA_DIR", "HERA_RUNTIME_DIR"):
            os.environ[name] = str(Path(root) / name.lower())
            Path(os.environ[name]).mkdir()
        yield Path(root)
