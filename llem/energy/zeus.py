"""Zeus (``pip install llenergymeasure[zeus]``): ``ZeusMonitor`` windows over the job's GPUs.

When Zeus is installed and finds GPUs it owns NVML energy reads and llem's own NVML meter stands
aside (the sampler still records the time series). Zeus reports 0 J and no GPUs on a machine without
any: that is detected and reported as unavailable, never as 0 J."""

from __future__ import annotations

import logging
import os
import time

from llem.energy.base import COUNTER, GPU_BOARD, MeterContext, MeterUnavailable, Reading
from llem.energy.nvml import load_nvml
from llem.quiet import quiet

# present while the amdgpu kernel driver is loaded: Zeus's AMD path (amdsmi) needs it
AMDGPU_DRIVER = "/sys/module/amdgpu"


def no_gpu_driver() -> str | None:
    """Why Zeus can see no GPU here, from the checks Zeus itself starts with (NVML first, then AMD
    SMI, which needs the amdgpu driver), without importing Zeus; None when it might see one."""
    if os.path.exists(AMDGPU_DRIVER):
        return None
    nv, why = load_nvml()
    if nv is not None:
        nv.nvmlShutdown()
        return None
    return f"no GPU for Zeus ({why}; no amdgpu driver loaded)"


def zeus_status() -> str | None:
    """None when Zeus is installed and sees at least one GPU, else why not (Zeus, ~0.1 s to
    import, is imported only when a GPU driver is there)."""
    why = no_gpu_driver()
    if why is not None:
        return why
    logging.getLogger("zeus").setLevel(logging.ERROR)  # its AMD probe warns on NVIDIA/CPU machines
    try:
        with quiet():
            from zeus.device import get_gpus
            from zeus.device.gpu.common import ZeusGPUInitError
    except ImportError:
        return "zeus is not installed (pip install llenergymeasure[zeus])"
    try:
        with quiet():
            gpus = get_gpus()
    except ZeusGPUInitError as exc:
        return f"Zeus found no usable GPU ({exc})"
    except ImportError as exc:  # e.g. the unofficial `pynvml` package instead of nvidia-ml-py
        return f"Zeus cannot use this pynvml ({exc})"
    return None if len(gpus) > 0 else "Zeus found no GPU"


def open_meter(ctx: MeterContext) -> ZeusMeter:
    """A Zeus monitor over every GPU Zeus sees (it applies CUDA_VISIBLE_DEVICES itself)."""
    why = zeus_status()
    if why is not None:
        raise MeterUnavailable(why)
    from zeus.device import get_gpus

    zgpus = get_gpus()
    labels = {
        i: (f"gpu{i} {zgpus.get_name(i)}", f"zeus-gpu{i}-{zgpus.get_name(i)}")
        for i in range(len(zgpus))
    }
    return ZeusMeter(list(labels), labels)


class ZeusMeter:
    name = "zeus"

    def __init__(self, gpu_indices: list[int], labels: dict[int, tuple[str, str]]) -> None:
        """``gpu_indices``: CUDA indices (Zeus applies CUDA_VISIBLE_DEVICES); ``labels``: index ->
        (label, uuid)."""
        from zeus.monitor import ZeusMonitor

        self.labels = labels
        self.monitor = ZeusMonitor(
            gpu_indices=gpu_indices, cpu_indices=[], approx_instant_energy=False
        )
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.time()
        self.monitor.begin_window("llem", sync_execution=False)  # the session synchronises

    def stop(self) -> list[Reading]:
        m = self.monitor.end_window("llem", sync_execution=False)
        t1 = time.time()
        readings: list[Reading] = []
        for idx, (label, uuid) in self.labels.items():
            joules = m.gpu_energy.get(idx)
            reason = None
            if joules is None or joules <= 0:
                joules, reason = (
                    None,
                    "Zeus reported no energy for this GPU (0 J is not a measurement)",
                )
            readings.append(
                Reading(self.name, label, GPU_BOARD, COUNTER, joules, self._t0, t1, reason, uuid)
            )
        return readings

    def poll(self) -> None:
        pass

    def baseline_keys(self) -> dict[str, str]:
        return {uuid: "" for _, uuid in self.labels.values()}

    def close(self) -> None:
        pass
