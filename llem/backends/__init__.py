"""Inference backends. Each is imported lazily, only by the job that uses it (engines cannot share a process)."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llem.errors import UsageError

if TYPE_CHECKING:
    from llem.backends.base import Backend
    from llem.config import ExperimentConfig


@dataclass(frozen=True)
class BackendInfo:
    name: str
    module: str  # llem module implementing it
    requires: tuple[str, ...]  # import names that must be installed
    extra: str  # pip extra
    purpose: str

    def installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.requires)


BACKENDS: dict[str, BackendInfo] = {
    info.name: info
    for info in (
        BackendInfo(
            "pytorch",
            "llem.backends.pytorch",
            ("torch", "transformers"),
            "pytorch",
            "transformers generate on PyTorch; CPU or NVIDIA GPUs",
        ),
        BackendInfo(
            "vllm",
            "llem.backends.vllm",
            ("vllm",),
            "vllm",
            "vLLM offline engine, continuous batching; NVIDIA GPUs",
        ),
        BackendInfo(
            "tensorrt",
            "llem.backends.tensorrt",
            ("tensorrt_llm",),
            "tensorrt",
            "TensorRT-LLM compiled engines; NVIDIA GPUs",
        ),
    )
}


def install_hint(info: BackendInfo) -> str:
    return f"pip install llenergymeasure[{info.extra}]"


def require_backend(name: str) -> None:
    """Raise a usage error naming the pip extra when backend ``name`` cannot run in this environment."""
    if not any(info.installed() for info in BACKENDS.values()):
        width = max(len(install_hint(i)) for i in BACKENDS.values())
        lines = [f"  {install_hint(i):<{width}}  # {i.purpose}" for i in BACKENDS.values()]
        raise UsageError("No inference backend installed.\n" + "\n".join(lines))
    info = BACKENDS[name]
    if not info.installed():
        raise UsageError(
            f"backend '{name}' is not installed: {install_hint(info)}  ({info.purpose})"
        )
    if importlib.util.find_spec(info.module) is None:
        raise UsageError(f"backend '{name}' is not available in llem {_version()} yet")


def load_backend(config: ExperimentConfig) -> Backend:
    """Import the configured backend's module (and its engine) and construct it."""
    require_backend(config.backend.name)
    module = importlib.import_module(BACKENDS[config.backend.name].module)
    return module.create(config)


def _version() -> str:
    from llem import __version__

    return __version__
