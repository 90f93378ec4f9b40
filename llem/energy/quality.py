"""Warnings about how far a window's energy can be trusted (recorded in the result and printed)."""

from __future__ import annotations

import os
from types import ModuleType

from llem.energy.base import Reading
from llem.energy.nvml import THROTTLE_BITS, Gpu
from llem.energy.sampler import Row

SHORT_WINDOW_S = 5.0
COUNTER_ERROR_S = 0.2  # NVML's counter updates about every 100 ms: up to ~one period at each end
MIN_SAMPLES = 10
TEMP_DRIFT_C = 10.0


def short_window(window_s: float) -> str | None:
    if window_s >= SHORT_WINDOW_S:
        return None
    bound = 100 * COUNTER_ERROR_S / window_s if window_s > 0 else float("inf")
    return (
        f"measured window is short ({window_s:.2f} s < {SHORT_WINDOW_S:.0f} s): "
        "timings are noisy and a "
        f"~100 ms energy counter may be off by up to ±{bound:.0f}%; raise n or repeats"
    )


def reading_problems(readings: list[Reading]) -> list[str]:
    return [
        f"{r.meter} {r.device}: {r.reason}" for r in readings if r.energy_j is None and r.reason
    ]


def sample_problems(rows: list[Row], gpus: list[Gpu], interval_s: float) -> list[str]:
    """Throttling, temperature drift and sparse samples from the time series of one window."""
    out = []
    process = [r for r in rows if r["device"] == "process"]
    if len(process) < MIN_SAMPLES:
        out.append(
            f"fewer than {MIN_SAMPLES} time-series samples in a measured window (period "
            f"{interval_s * 1000:.0f} ms): lengthen the window (raise n)"
        )
    for g in gpus:
        mine = [r for r in rows if r["device"] == f"gpu{g.cuda_index}"]
        mask = 0
        for r in mine:
            mask |= r.get("throttle_reasons") or 0
        slowed = [name for bit, name in THROTTLE_BITS.items() if mask & bit]
        if slowed:
            out.append(f"gpu{g.cuda_index} was throttled during the window: {', '.join(slowed)}")
        temps = [t for r in mine if (t := r.get("temperature_c")) is not None]
        if temps and max(temps) - min(temps) > TEMP_DRIFT_C:
            out.append(
                f"gpu{g.cuda_index} temperature drifted {min(temps):.0f} -> {max(temps):.0f} °C "
                "in the window"
            )
    return out


def device_problems(nvml: ModuleType, gpus: list[Gpu]) -> list[str]:
    """Other processes on the measured GPUs, persistence mode off."""
    out = []
    me = os.getpid()
    for g in gpus:
        try:
            procs = nvml.nvmlDeviceGetComputeRunningProcesses(g.handle)
            others = sorted({p.pid for p in procs if p.pid != me})
            if others:
                out.append(
                    f"gpu{g.cuda_index} is shared with other processes (pids {others}): "
                    "its energy includes theirs"
                )
        except nvml.NVMLError:
            pass
        try:
            if nvml.nvmlDeviceGetPersistenceMode(g.handle) == 0:
                out.append(
                    f"gpu{g.cuda_index} persistence mode is off: "
                    "the first reads may include driver start-up"
                )
        except nvml.NVMLError:
            pass
    return out
