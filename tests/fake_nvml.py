"""A simulated NVML for tests: the pynvml functions llem calls, driven by scripted power traces.

Each :class:`FakeGpu` draws piecewise-constant power (``trace``: list of (from time, watts)); its
energy counter is the exact integral in mJ, so expected joules can be computed by hand. Time comes
from ``clock`` (a :class:`Clock` the test moves, or ``time.time``).
"""

from __future__ import annotations

import itertools
import time
import types
from dataclasses import dataclass, field


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class Clock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H200"
    trace: list[tuple[float, float]] = field(
        default_factory=lambda: [(0.0, 100.0)]
    )  # (from t, watts)
    counter_supported: bool = True
    instant_supported: bool = True
    reset_at: float | None = None  # the counter restarts from 0 at this time (driver reload)
    throttle: int = 0
    temperature: float = 40.0
    pids: tuple[int, ...] = ()
    persistence: int = 1
    power_limit_mw: int = 700_000
    mig_children: tuple[str, ...] = ()

    def power(self, t: float) -> float:
        watts = self.trace[0][1]
        for start, w in self.trace:
            if t >= start:
                watts = w
        return watts

    def energy_j(self, t0: float, t1: float) -> float:
        """Exact integral of the trace over [t0, t1]."""
        points = sorted({t0, t1, *(s for s, _ in self.trace if t0 < s < t1)})
        return sum((b - a) * self.power(a) for a, b in itertools.pairwise(points))


def make_nvml(
    gpus: list[FakeGpu], clock=time.time, origin: float | None = None, driver: str = "580.65"
) -> types.ModuleType:
    """A module object standing in for ``pynvml``."""
    origin = clock() if origin is None else origin
    state = {"inits": 0, "shutdowns": 0}
    nv = types.ModuleType("pynvml")
    nv.NVMLError, nv.NVMLError_NotSupported, nv.NVMLError_LibraryNotFound = (
        NVMLError,
        NVMLError_NotSupported,
        NVMLError_LibraryNotFound,
    )
    nv.NVML_SUCCESS, nv.NVML_ERROR_NOT_SUPPORTED = 0, 3
    nv.NVML_FI_DEV_POWER_INSTANT, nv.NVML_TEMPERATURE_GPU, nv.NVML_CLOCK_SM = 186, 0, 1
    nv.state, nv.gpus = state, gpus

    def init():
        state["inits"] += 1

    def shutdown():
        state["shutdowns"] += 1

    def counter(g: FakeGpu) -> int:
        if not g.counter_supported:
            raise NVMLError_NotSupported("Not Supported")
        now = clock()
        start = origin if g.reset_at is None or now < g.reset_at else g.reset_at
        return round(g.energy_j(start, now) * 1000)

    def field_values(g: FakeGpu, ids):
        assert ids == [186]
        ok = g.instant_supported
        value = types.SimpleNamespace(uiVal=int(g.power(clock()) * 1000))
        return [types.SimpleNamespace(nvmlReturn=0 if ok else 3, value=value)]

    def by_uuid(uuid: str):
        for g in gpus:
            if g.uuid == uuid:
                return g
            if uuid in g.mig_children:
                return ("mig", g)
        raise NVMLError("Not Found")

    nv.nvmlInit, nv.nvmlShutdown = init, shutdown
    nv.nvmlDeviceGetCount = lambda: len(gpus)
    nv.nvmlDeviceGetHandleByIndex = lambda i: gpus[i]
    nv.nvmlDeviceGetHandleByUUID = by_uuid
    nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle = lambda h: h[1]
    nv.nvmlDeviceGetUUID = lambda g: g.uuid
    nv.nvmlDeviceGetName = lambda g: g.name
    nv.nvmlDeviceGetTotalEnergyConsumption = counter
    nv.nvmlDeviceGetFieldValues = field_values
    nv.nvmlDeviceGetPowerUsage = lambda g: int(g.power(clock()) * 1000)
    nv.nvmlDeviceGetTemperature = lambda g, sensor: g.temperature
    nv.nvmlDeviceGetUtilizationRates = lambda g: types.SimpleNamespace(gpu=97, memory=40)
    nv.nvmlDeviceGetMemoryInfo = lambda g: types.SimpleNamespace(used=10 * 2**30, total=141 * 2**30)
    nv.nvmlDeviceGetClockInfo = lambda g, kind: 1980
    nv.nvmlDeviceGetCurrentClocksEventReasons = lambda g: g.throttle
    nv.nvmlDeviceGetComputeRunningProcesses = lambda g: [
        types.SimpleNamespace(pid=p) for p in g.pids
    ]
    nv.nvmlDeviceGetPersistenceMode = lambda g: g.persistence
    nv.nvmlDeviceGetEnforcedPowerLimit = lambda g: g.power_limit_mw
    nv.nvmlSystemGetDriverVersion = lambda: driver
    nv.nvmlSystemGetCudaDriverVersion_v2 = lambda: 12080
    return nv
