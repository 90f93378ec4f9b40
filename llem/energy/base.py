"""What every meter returns, and the small protocol the energy session drives.

Energies in joules, times in Unix seconds (``time.time()``) unless named otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from llem.energy.config import EnergyConfig

if TYPE_CHECKING:
    from llem.energy.nvml import Gpu

GPU_BOARD = "GPU board"
CPU_PACKAGE = "CPU package"
DRAM = "DRAM"
ESTIMATE = "modelled estimate"

COUNTER = "counter delta"
INTEGRATED = "integrated instant power"
MODELLED = "estimate"


@dataclass
class Reading:
    """One meter's energy for one device over one window; ``energy_j`` None = not measured (why:
    ``reason``)."""

    meter: str  # the registry name of the meter (llem.energy.registry)
    device: str  # e.g. "gpu0 NVIDIA H200 (GPU-…)", "package-0", "process"
    covers: str  # GPU_BOARD | CPU_PACKAGE | DRAM | ESTIMATE
    method: str  # COUNTER | INTEGRATED | MODELLED
    energy_j: float | None
    start_s: float
    end_s: float
    reason: str | None = None
    device_key: str | None = None  # stable identity for baselines (uuid, zone path)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def hardware(self) -> bool:
        return self.covers != ESTIMATE


class Meter(Protocol):
    """A window-based energy meter; the session synchronises the device before start and stop."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> list[Reading]: ...

    def poll(self) -> None:
        """Called by the sampler every period (lets counters that wrap be read often enough)."""

    def baseline_keys(self) -> dict[str, str]:
        """Device key -> identity (e.g. driver, power limit) of each device a baseline covers."""

    def close(self) -> None: ...


class MeterUnavailable(Exception):
    """A meter's factory found it cannot measure here; the message says why (one short clause)."""


@runtime_checkable
class GpuTelemetry(Protocol):
    """A meter that lends its NVML session to the sampler (per-GPU rows) and the quality checks."""

    nvml: ModuleType
    gpus: list[Gpu]


@dataclass
class MeterContext:
    """What a meter factory may use; ``integrate(gpu, start_s, end_s)``: J from sampled power."""

    cfg: EnergyConfig
    powercap_root: Path
    integrate: Callable[[Gpu, float, float], float | None]
    warnings: list[str]  # a factory adds its set-up warnings here
    gpu_meter: str | None = None  # label of the job's hardware GPU meter, once one has opened
