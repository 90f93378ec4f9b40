"""What every meter returns, and the small protocol the energy session drives.

Energies in joules, times in Unix seconds (``time.time()``) unless named otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

GPU_BOARD = "GPU board"
CPU_PACKAGE = "CPU package"
DRAM = "DRAM"
ESTIMATE = "modelled estimate"

COUNTER = "counter delta"
INTEGRATED = "integrated instant power"
MODELLED = "estimate"


@dataclass
class Reading:
    """One meter's energy for one device over one window. ``energy_j`` None = not measured (see ``reason``)."""

    meter: str  # nvml | zeus | rapl | codecarbon
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
    """A window-based energy meter. The session synchronises the device before ``start`` and ``stop``."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> list[Reading]: ...

    def poll(self) -> None:
        """Called by the sampler every period (lets counters that wrap be read often enough)."""

    def close(self) -> None: ...
