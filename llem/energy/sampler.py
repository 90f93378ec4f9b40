"""A background thread that samples device state every period and keeps the time series.

Columns of ``timeseries.parquet`` (one row per sample and device; null where a device has no such
value):

=====================  ======================================================================
time_unix_s            sample time (Unix seconds)
phase                  what the job was doing: baseline, warmup, quiet-wait (waiting for other
                       processes to go quiet), repeat-1 …, cooldown, prefill, flops, idle
device                 "process" (this Python process) or "gpu<cuda index>"
power_w                instant board power (NVML_FI_DEV_POWER_INSTANT; see power_source)
power_source           field:POWER_INSTANT, or power_usage (nvmlDeviceGetPowerUsage, a ~1 s average
                       on Ampere and newer) where the instant field is missing
temperature_c          GPU core temperature
sm_util_pct            NVML utilisation rate of the SMs over the last sample period
mem_util_pct           NVML memory-controller utilisation
memory_used_bytes      device memory in use
sm_clock_mhz           SM clock
throttle_reasons       NVML clock event reason bit mask (see llem.energy.nvml.THROTTLE_BITS)
cpu_util_pct           process CPU time / wall time over the last period (100 = one core busy)
other_cpu_pct          CPU time of all other processes (all CPUs' busy time minus llem's process
                       tree) / wall time over the last period (100 = one core busy)
rss_bytes              process resident memory
=====================  ======================================================================

When Zeus owns NVML, this sampler reads no GPU (only the process rows): the two never poll NVML at
once."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TypedDict, TypeVar

from llem.energy.nvml import Gpu
from llem.hostcpu import others_cpu_s
from llem.paths import atomic_path

T = TypeVar("T")

COLUMNS = (
    "time_unix_s",
    "phase",
    "device",
    "power_w",
    "power_source",
    "temperature_c",
    "sm_util_pct",
    "mem_util_pct",
    "memory_used_bytes",
    "sm_clock_mhz",
    "throttle_reasons",
    "cpu_util_pct",
    "other_cpu_pct",
    "rss_bytes",
)


class _RowKeys(TypedDict):
    time_unix_s: float
    phase: str
    device: str


class Row(_RowKeys, total=False):
    """One sample of one device (the columns above; a device lacks the others' keys)."""

    power_w: float | None
    power_source: str | None
    temperature_c: float | None
    sm_util_pct: float | None
    mem_util_pct: float | None
    memory_used_bytes: int | None
    sm_clock_mhz: float | None
    throttle_reasons: int | None
    cpu_util_pct: float | None
    other_cpu_pct: float | None
    rss_bytes: int | None


def _rss_bytes() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class Sampler:
    """Samples every ``interval_s`` in a daemon thread; ``rows`` is the time series."""

    def __init__(
        self,
        interval_s: float,
        nvml: ModuleType | None = None,
        gpus: list[Gpu] | None = None,
        pollers: list[Callable[[], None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval_s = interval_s
        self.nvml, self.gpus = nvml, list(gpus or [])
        self.pollers = list(pollers or [])
        self.clock = clock
        self.rows: list[Row] = []
        self.phase = "idle"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_cpu: tuple[float, float, float | None] | None = None  # time, own, others (s)
        self._instant_ok = {g.uuid: True for g in self.gpus}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="llem-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        """Sample on a fixed schedule (start + k x period): the period does not drift with cost."""
        next_t = time.monotonic()
        while True:
            self.sample_once()
            next_t += self.interval_s
            delay = next_t - time.monotonic()
            if delay < 0:  # fell behind (a slow driver call): skip the missed slots
                next_t = time.monotonic()
                delay = 0.0
            if self._stop.wait(delay):
                return

    def set_phase(self, phase: str) -> None:
        self.sample_once()  # close the previous phase with a sample
        self.phase = phase

    # ------------------------------------------------------------------ one sample

    def sample_once(self) -> None:
        """One sample of every device (thread-safe: the main thread samples at phase changes)."""
        with self._lock:
            now = self.clock()
            for poll in self.pollers:
                poll()
            self.rows.append(self._process_row(now))
            if self.nvml is not None:
                self.rows.extend(self._gpu_row(self.nvml, now, g) for g in self.gpus)

    def _process_row(self, now: float) -> Row:
        cpu, others = sum(os.times()[:2]), others_cpu_s()
        util = other = None
        # CPU times tick every 10 ms: a ratio over a much shorter gap (phase changes) is noise
        if self._last_cpu is not None and now - self._last_cpu[0] >= self.interval_s / 2:
            last_t, last_cpu, last_others = self._last_cpu
            util = 100.0 * (cpu - last_cpu) / (now - last_t)
            if others is not None and last_others is not None:
                other = max(0.0, 100.0 * (others - last_others) / (now - last_t))
        if util is not None or self._last_cpu is None:
            self._last_cpu = (now, cpu, others)
        return {
            "time_unix_s": now,
            "phase": self.phase,
            "device": "process",
            "cpu_util_pct": util,
            "other_cpu_pct": other,
            "rss_bytes": _rss_bytes(),
        }

    def _gpu_row(self, nv: ModuleType, now: float, g: Gpu) -> Row:
        row: Row = {"time_unix_s": now, "phase": self.phase, "device": f"gpu{g.cuda_index}"}
        row["power_w"], row["power_source"] = self._power(nv, g)
        row["temperature_c"] = _try(
            lambda: nv.nvmlDeviceGetTemperature(g.handle, nv.NVML_TEMPERATURE_GPU)
        )
        util = _try(lambda: nv.nvmlDeviceGetUtilizationRates(g.handle))
        row["sm_util_pct"] = getattr(util, "gpu", None)
        row["mem_util_pct"] = getattr(util, "memory", None)
        row["memory_used_bytes"] = getattr(
            _try(lambda: nv.nvmlDeviceGetMemoryInfo(g.handle)), "used", None
        )
        row["sm_clock_mhz"] = _try(lambda: nv.nvmlDeviceGetClockInfo(g.handle, nv.NVML_CLOCK_SM))
        row["throttle_reasons"] = _try(lambda: _throttle(nv, g.handle))
        return row

    def _power(self, nv: ModuleType, g: Gpu) -> tuple[float | None, str | None]:
        if self._instant_ok[g.uuid]:
            try:
                (fv,) = nv.nvmlDeviceGetFieldValues(g.handle, [nv.NVML_FI_DEV_POWER_INSTANT])
                if fv.nvmlReturn == nv.NVML_SUCCESS:
                    return float(fv.value.uiVal) / 1000.0, "field:POWER_INSTANT"
            except nv.NVMLError:
                pass
            self._instant_ok[g.uuid] = (
                False  # not supported here: fall back for the rest of the run
            )
        mw = _try(lambda: nv.nvmlDeviceGetPowerUsage(g.handle))
        return (float(mw) / 1000.0, "power_usage") if mw is not None else (None, None)

    # ------------------------------------------------------------------ queries

    def snapshot(self) -> list[Row]:
        with self._lock:
            return list(self.rows)

    def gpu_rows(self, g: Gpu, start_s: float, end_s: float) -> list[Row]:
        key = f"gpu{g.cuda_index}"
        return [
            r
            for r in self.snapshot()
            if r["device"] == key and start_s <= r["time_unix_s"] <= end_s
        ]

    def integrate(self, g: Gpu, start_s: float, end_s: float) -> float | None:
        """Joules from the instant-power samples in [start_s, end_s] (trapezoid); None with < 2."""
        pts = [
            (r["time_unix_s"], power)
            for r in self.gpu_rows(g, start_s, end_s)
            if (power := r.get("power_w")) is not None
        ]
        if len(pts) < 2:
            return None
        return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(pts))


def _throttle(nv: ModuleType, handle: object) -> int:
    fn = (
        getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
        or nv.nvmlDeviceGetCurrentClocksThrottleReasons
    )
    return int(fn(handle))


def _try(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except Exception:
        return None


def write_timeseries(rows: list[Row], path: Path) -> None:
    """Write ``rows`` as Parquet atomically (temp file + rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("time_unix_s", pa.float64()),
            ("phase", pa.string()),
            ("device", pa.string()),
            ("power_w", pa.float64()),
            ("power_source", pa.string()),
            ("temperature_c", pa.float64()),
            ("sm_util_pct", pa.float64()),
            ("mem_util_pct", pa.float64()),
            ("memory_used_bytes", pa.int64()),
            ("sm_clock_mhz", pa.float64()),
            ("throttle_reasons", pa.int64()),
            ("cpu_util_pct", pa.float64()),
            ("other_cpu_pct", pa.float64()),
            ("rss_bytes", pa.int64()),
        ]
    )
    table = pa.table({c: [r.get(c) for r in rows] for c in COLUMNS}, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
