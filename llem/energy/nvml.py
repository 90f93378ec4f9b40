"""NVIDIA GPUs through NVML: device mapping, the total-energy counter, and per-sample device state.

Energy is the difference of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load, Volta and
newer) read after device synchronisation at the window's start and end. Where a GPU has no counter,
the sampler's instant-power samples are integrated (trapezoid rule) and labelled as such. A counter
that goes backwards (driver reload) gives no value and a warning."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from llem.energy.base import (
    COUNTER,
    GPU_BOARD,
    INTEGRATED,
    MeterContext,
    MeterUnavailable,
    Reading,
)

# throttle (clock event) reason bits that mean the GPU was slowed down
THROTTLE_BITS = {
    0x4: "software power cap",
    0x8: "hardware slowdown",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
}


def load_nvml() -> tuple[ModuleType | None, str | None]:
    """(pynvml, None) after a successful ``nvmlInit``, else (None, why); pair with a shutdown."""
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return None, f"NVML unavailable: {exc} (no NVIDIA driver?)"
    if pynvml.nvmlDeviceGetCount() == 0:
        pynvml.nvmlShutdown()
        return None, "NVML found no GPU"
    return pynvml, None


def nvml_status() -> str | None:
    """None when NVML loads and sees a GPU, else why not."""
    nv, why = load_nvml()
    if nv is not None:
        nv.nvmlShutdown()
    return why


def open_meter(ctx: MeterContext) -> NvmlMeter:
    """The NVML meter over every GPU the job can use; it owns one ``nvmlInit`` until ``close``."""
    nv, why = load_nvml()
    if nv is None:
        raise MeterUnavailable(why or "NVML unavailable")
    gpus, mapping_warnings = visible_gpus(nv)
    ctx.warnings += mapping_warnings
    if not gpus:
        nv.nvmlShutdown()
        raise MeterUnavailable("no GPU visible to this job (CUDA_VISIBLE_DEVICES)")
    return NvmlMeter(nv, gpus, ctx.integrate)


@dataclass(frozen=True)
class Gpu:
    """One physical GPU the job can use. ``cuda_index`` is the index the job's framework sees."""

    cuda_index: int
    nvml_index: int
    uuid: str
    name: str
    handle: object

    @property
    def label(self) -> str:
        return f"gpu{self.cuda_index} {self.name} ({self.uuid})"


def _text(value: object) -> str:
    """NVML strings are bytes in older nvidia-ml-py releases."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _uuid(nvml: ModuleType, handle: object) -> str:
    return _text(nvml.nvmlDeviceGetUUID(handle))


def visible_gpus(
    nvml: ModuleType, cuda_visible: str | None = None, device_order: str | None = None
) -> tuple[list[Gpu], list[str]]:
    """The GPUs a CUDA process with ``CUDA_VISIBLE_DEVICES=cuda_visible`` sees, in CUDA order.

    Entries may be NVML indices, GPU UUIDs (or unique prefixes) or MIG ids (measured as their parent
    GPU, with a warning: the energy counter covers the whole board). Integer entries map to NVML
    indices exactly only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (the order NVML uses); otherwise a
    warning is returned.
    """
    cuda_visible = os.environ.get("CUDA_VISIBLE_DEVICES") if cuda_visible is None else cuda_visible
    device_order = (
        os.environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
        if device_order is None
        else device_order
    )
    count = int(nvml.nvmlDeviceGetCount())
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    uuids = [_uuid(nvml, h) for h in handles]
    warnings: list[str] = []
    chosen: list[int] = []
    if cuda_visible is None:
        chosen = list(range(count))
        entries_are_indices = True
    else:
        entries_are_indices = False
        for entry in (e.strip() for e in cuda_visible.split(",")):
            if not entry:
                continue
            if entry.lstrip("-").isdigit():
                idx = int(entry)
                if idx < 0 or idx >= count:
                    break  # CUDA stops at the first invalid entry
                chosen.append(idx)
                entries_are_indices = True
                continue
            if entry.startswith("MIG-"):
                warnings.append(
                    f"CUDA_VISIBLE_DEVICES entry {entry} is a MIG instance: "
                    "energy covers its whole GPU"
                )
                parent = _mig_parent(nvml, handles, entry)
                if parent is None:
                    break
                chosen.append(parent)
                continue
            prefix = entry if entry.startswith("GPU-") else f"GPU-{entry}"
            match = [i for i, u in enumerate(uuids) if u.startswith(prefix)]
            if len(match) != 1:
                break
            chosen.append(match[0])
    if entries_are_indices and len(set(_names(nvml, handles))) > 1 and device_order != "PCI_BUS_ID":
        warnings.append(
            "GPUs of different models and CUDA_DEVICE_ORDER is not PCI_BUS_ID: "
            "CUDA and NVML indices may differ; set CUDA_DEVICE_ORDER=PCI_BUS_ID"
        )
    names = _names(nvml, handles)
    gpus = [
        Gpu(cuda_i, nvml_i, uuids[nvml_i], names[nvml_i], handles[nvml_i])
        for cuda_i, nvml_i in enumerate(chosen)
    ]
    return gpus, warnings


def _names(nvml: ModuleType, handles: list[object]) -> list[str]:
    return [_text(nvml.nvmlDeviceGetName(h)) for h in handles]


def _mig_parent(nvml: ModuleType, handles: list[object], mig_uuid: str) -> int | None:
    try:
        mig = nvml.nvmlDeviceGetHandleByUUID(mig_uuid)
        parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
        return next(i for i, h in enumerate(handles) if _uuid(nvml, h) == _uuid(nvml, parent))
    except Exception:
        return None


def counter_supported(nvml: ModuleType, gpu: Gpu) -> bool:
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle)
        return True
    except nvml.NVMLError:
        return False


class NvmlMeter:
    """Energy counter deltas of every GPU the job can use (integrated power where there is no
    counter)."""

    name = "nvml"

    def __init__(
        self,
        nvml: ModuleType,
        gpus: list[Gpu],
        integrate: Callable[[Gpu, float, float], float | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``integrate(gpu, start_s, end_s)`` -> joules from sampled instant power, or None.

        The meter owns one ``nvmlInit`` of ``nvml``: :meth:`close` shuts NVML down."""
        self.nvml, self.gpus, self._integrate, self.clock = nvml, gpus, integrate, clock
        self._has_counter = {g.uuid: counter_supported(nvml, g) for g in gpus}
        self._start: dict[str, float | None] = {}
        self._t0 = 0.0

    def _read_mj(self, gpu: Gpu) -> float | None:
        if not self._has_counter[gpu.uuid]:
            return None
        return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))

    def start(self) -> None:
        self._t0 = self.clock()
        self._start = {g.uuid: self._read_mj(g) for g in self.gpus}

    def stop(self) -> list[Reading]:
        t1 = self.clock()
        return [self._reading(g, self._start.get(g.uuid), self._read_mj(g), t1) for g in self.gpus]

    def _reading(self, g: Gpu, begin: float | None, end: float | None, t1: float) -> Reading:
        def reading(method: str, joules: float | None, reason: str | None = None) -> Reading:
            return Reading(
                self.name, g.label, GPU_BOARD, method, joules, self._t0, t1, reason, g.uuid
            )

        if begin is None or end is None:
            joules = self._integrate(g, self._t0, t1)
            why = None if joules is not None else "no energy counter and too few power samples"
            return reading(INTEGRATED, joules, why)
        if end < begin:
            return reading(
                COUNTER,
                None,
                f"energy counter went backwards ({begin:.0f} -> {end:.0f} mJ): "
                "driver reload or counter reset",
            )
        if end == begin:
            return reading(
                COUNTER,
                None,
                "energy counter did not advance (window shorter than its ~100 ms update period?)",
            )
        return reading(COUNTER, (end - begin) / 1000.0)

    def poll(self) -> None:
        pass

    def baseline_keys(self) -> dict[str, str]:
        """GPU UUID -> driver version and power limit: a change invalidates a cached baseline."""
        nv = self.nvml
        driver = _text(nv.nvmlSystemGetDriverVersion())
        out = {}
        for g in self.gpus:
            try:
                limit = nv.nvmlDeviceGetEnforcedPowerLimit(g.handle)
            except nv.NVMLError:
                limit = None
            out[g.uuid] = f"driver={driver}|power_limit_mw={limit}"
        return out

    def close(self) -> None:
        self.nvml.nvmlShutdown()
