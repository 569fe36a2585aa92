"""Devices on this host: the CPU always, CUDA GPUs when present.

``list_devices`` reports every device, usable or not (a GPU that the
installed torch cannot drive is listed as unusable, with the reason).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

from hera.errors import HeraError
from hera.kernels import TRITON_INSTALL, default_backend


@dataclass
class Device:
    """One compute device."""

    id: str
    kind: str  # "cpu" or "cuda"
    name: str
    memory: int  # bytes
    usable: bool
    backend: str  # what hera runs on it: "torch", "triton"
    cores: int | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def cpu_device() -> Device:
    """The host CPU (cores, memory). Needs no torch."""
    import psutil

    return Device(
        id="cpu",
        kind="cpu",
        name=_cpu_name(),
        memory=psutil.virtual_memory().total,
        usable=True,
        backend="torch",
        cores=os.cpu_count(),
    )


def list_devices() -> list[Device]:
    """Every device on the host, usable or not."""
    devices = [cpu_device()]
    devices.extend(_cuda_devices())
    return devices


def likely_default_device() -> str:
    """The device an up would choose, guessed without torch: ``cuda:0``
    where the host shows an NVIDIA GPU, else ``cpu``."""
    return "cuda:0" if _nvidia_hardware_visible() else "cpu"


def _nvidia_hardware_visible() -> bool:
    """Whether this host shows any sign of an NVIDIA GPU (cheap: no torch)."""
    return (os.path.exists("/proc/driver/nvidia/gpus") or os.path.exists("/dev/nvidiactl")
            or shutil.which("nvidia-smi") is not None)


def _cuda_devices() -> list[Device]:
    found: dict[int, Device] = {}
    note = ""
    if not _nvidia_hardware_visible():
        return []  # importing torch (seconds) could only confirm there is none
    try:
        import torch

        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                backend = default_backend(f"cuda:{index}")
                props = torch.cuda.get_device_properties(index)
                found[index] = Device(
                    id=f"cuda:{index}",
                    kind="cuda",
                    name=props.name,
                    memory=props.total_memory,
                    usable=True,
                    backend=backend,
                    note="" if backend == "triton" else f"no triton: {TRITON_INSTALL}",
                    details={"capability": f"{props.major}.{props.minor}",
                             "multiprocessors": props.multi_processor_count},
                )
        elif torch.version.cuda is None:
            note = "installed torch is a CPU build"
        else:
            note = "CUDA driver not available to torch"
    except ImportError:
        note = "torch is not installed"
    # GPUs the driver knows but torch cannot use are listed too.
    for index, name, memory in _nvidia_smi_gpus():
        if index not in found:
            found[index] = Device(id=f"cuda:{index}", kind="cuda", name=name, memory=memory,
                                  usable=False, backend="", note=note or "not usable by torch")
    return [found[i] for i in sorted(found)]


def _nvidia_smi_gpus() -> list[tuple[int, str, int]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            try:
                gpus.append((int(parts[0]), parts[1], int(float(parts[2])) * 1024 * 1024))
            except ValueError:
                continue
    return gpus


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def choose_device(requested: str | None) -> str:
    """The device to load on: ``requested`` if it exists and is usable,
    else the best one (first CUDA GPU, then the CPU) for ``auto``/``None``."""
    wanted = (requested or "auto").strip().lower()
    if wanted == "cpu":
        return "cpu"
    if wanted == "cuda":
        wanted = "cuda:0"
    if wanted != "auto" and not wanted.startswith("cuda:"):
        raise HeraError(f"unknown device {requested!r} (use cpu, cuda, cuda:N or auto)")
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:  # pragma: no cover - torch is a dependency
        count = 0
    if wanted == "auto":
        return "cuda:0" if count else "cpu"
    index = wanted.split(":", 1)[1]
    if not index.isdigit():
        raise HeraError(f"unknown device {requested!r} (use cpu, cuda, cuda:N or auto)")
    if int(index) >= count:
        available = ", ".join(["cpu"] + [f"cuda:{i}" for i in range(count)])
        raise HeraError(f"device {wanted} not found (available: {available})")
    return wanted


def device_memory(device_id: str) -> int:
    """Total memory of a device in bytes (for ``layouts --device``)."""
    if device_id == "cpu":
        return cpu_device().memory
    for device in _cuda_devices():
        if device.id == device_id:
            return device.memory
    raise HeraError(f"device {device_id} not found (see 'hera devices')")
