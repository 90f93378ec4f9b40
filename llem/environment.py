"""What machine and software a run used. Nothing here imports torch (``llem config`` must stay
light)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict, TypeVar

from typing_extensions import Required

T = TypeVar("T")

# Distributions every result records; each backend adds its own (llem.backends.registry).
CORE_PACKAGES = (
    "llenergymeasure",
    "hydra-core",
    "omegaconf",
    "pydantic",
    "nvidia-ml-py",
    "zeus",
    "codecarbon",
)


def packages() -> list[str]:
    """Core distributions, then each registered backend's (no duplicates)."""
    from llem.backends.registry import backends

    names = list(CORE_PACKAGES)
    for entry in backends():
        names += [p for p in entry.packages if p not in names]
    return names


def package_versions() -> dict[str, str | None]:
    """Installed version of each of :func:`packages` (None when absent), and Python's."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages():
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def torch_cuda_build() -> str | None:
    """CUDA version torch was built for ('' = CPU build, None = torch absent), read without
    importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    version_py = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    match = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", version_py.read_text(), re.M)
    return match.group(1) if match else ""


class CpuInfo(TypedDict):
    model: str
    architecture: str
    logical_cores: int | None
    usable_cores: int | None
    native_bf16: bool  # AVX512-BF16 / AMX (x86) or BF16 (Arm) instructions


class GpuInfo(TypedDict):
    index: int
    name: str
    uuid: str
    memory_total_bytes: int
    power_limit_w: float | None  # enforced power limit (W)


class NvmlInfo(TypedDict, total=False):
    status: Required[str]  # ok | unavailable
    reason: str  # when unavailable
    driver: str
    cuda_driver: str | None
    gpus: list[GpuInfo]


def cpu_info() -> CpuInfo:
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        if m := re.search(r"^model name\s*:\s*(.+)$", text, re.M):
            model = m.group(1).strip()
        if m := re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M):
            flags = set(m.group(1).split())
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": model,
        "architecture": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "native_bf16": bool(flags & {"avx512_bf16", "amx_bf16", "bf16"}),
    }


def nvml_info() -> NvmlInfo:
    """Driver and GPUs as NVML sees them; ``status`` is 'ok' or 'unavailable' with ``reason``."""
    try:
        import pynvml
    except ImportError:
        return {"status": "unavailable", "reason": "nvidia-ml-py is not installed"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"status": "unavailable", "reason": f"NVML init failed: {exc} (no NVIDIA driver?)"}
    try:
        gpus: list[GpuInfo] = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)

            def limit_w(h: object = h) -> float:
                return float(pynvml.nvmlDeviceGetEnforcedPowerLimit(h)) / 1000

            gpus.append(
                {
                    "index": i,
                    "name": pynvml.nvmlDeviceGetName(h),
                    "uuid": pynvml.nvmlDeviceGetUUID(h),
                    "memory_total_bytes": pynvml.nvmlDeviceGetMemoryInfo(h).total,
                    "power_limit_w": _try(limit_w),
                }
            )
        cuda = _try(pynvml.nvmlSystemGetCudaDriverVersion_v2)
        return {
            "status": "ok",
            "driver": pynvml.nvmlSystemGetDriverVersion(),
            "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None,
            "gpus": gpus,
        }
    finally:
        pynvml.nvmlShutdown()


def _try(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except Exception:
        return None


def snapshot(record_hostname: bool = False) -> dict[str, object]:
    """The environment recorded in every result."""
    env: dict[str, object] = {
        "versions": package_versions(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "torch_cuda_build": torch_cuda_build(),
        "nvml": nvml_info(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if record_hostname:
        env["hostname"] = socket.gethostname()
    return env
