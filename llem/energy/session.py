"""The meters of one job: opened from the registry, driven window by window, closed at the end.

The meters are chosen by :mod:`llem.energy.registry` (``energy.meter``: ``auto``, ``none`` or one
meter's name). A meter that owns NVML (the NVML meter) lends it to the sampler for per-GPU rows;
when Zeus measures the GPUs nothing else reads NVML. The harness synchronises the device before
every window boundary; meters read after that."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from llem.energy import baseline as baseline_cache
from llem.energy import quality, registry
from llem.energy.base import GpuTelemetry, Meter, MeterContext, Reading
from llem.energy.config import EnergyConfig
from llem.energy.nvml import Gpu
from llem.energy.rapl import POWERCAP
from llem.energy.sampler import Row, Sampler, write_timeseries


@dataclass
class Window:
    """One measured window: its name, its readings (filled when it closes) and its sample rows."""

    name: str
    start_s: float = 0.0
    end_s: float = 0.0
    readings: list[Reading] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class EnergySession:
    """The meters of one job: :meth:`open` before loading the model, :meth:`close` at the end."""

    def __init__(self, cfg: EnergyConfig, powercap_root: Path = POWERCAP) -> None:
        self.cfg = cfg
        self.powercap_root = powercap_root
        self.meters: list[Meter] = []
        self.warnings: list[str] = []
        self.unavailable: list[str] = []  # why each meter tried is absent
        self.sampler: Sampler | None = None
        self.telemetry: GpuTelemetry | None = None  # the meter whose NVML the sampler reads

    # ------------------------------------------------------------------ set-up

    def open(self) -> None:
        """Open the chosen meters; an explicit meter that cannot work here raises a usage error."""
        registry.check_meter(self.cfg)
        ctx = MeterContext(self.cfg, self.powercap_root, self._integrate, self.warnings)
        self.meters, self.unavailable = registry.open_meters(ctx)
        self.telemetry = next((m for m in self.meters if isinstance(m, GpuTelemetry)), None)
        self.sampler = Sampler(
            self.cfg.sample_interval_ms / 1000.0,
            self.nvml,
            self.gpus,
            pollers=[m.poll for m in self.meters],
        )
        if self.nvml is not None:
            self.warnings += quality.device_problems(self.nvml, self.gpus)

    def _integrate(self, gpu: Gpu, start_s: float, end_s: float) -> float | None:
        return self.sampler.integrate(gpu, start_s, end_s) if self.sampler else None

    @property
    def nvml(self) -> ModuleType | None:
        return self.telemetry.nvml if self.telemetry else None

    @property
    def gpus(self) -> list[Gpu]:
        return self.telemetry.gpus if self.telemetry else []

    @property
    def hardware_meters(self) -> list[Meter]:
        return [m for m in self.meters if registry.is_hardware(m)]

    def reason(self) -> str:
        """Why nothing (hardware) measured energy."""
        return registry.nothing_measured(self.cfg, self.meters, self.unavailable)

    # ------------------------------------------------------------------ running

    def start_sampling(self) -> None:
        if self.sampler:
            self.sampler.start()

    def phase(self, name: str) -> None:
        if self.sampler:
            self.sampler.set_phase(name)

    @contextmanager
    def window(
        self, name: str, sync: Callable[[], None], meters: list[Meter] | None = None
    ) -> Iterator[Window]:
        """Measure the enclosed block; ``sync`` waits for the device before each boundary read."""
        win = Window(name)
        chosen = self.meters if meters is None else meters
        # estimates start first and stop last: hardware meters bracket the work as tightly as can be
        chosen = sorted(chosen, key=registry.is_hardware)
        self.phase(name)
        sync()
        for m in chosen:
            m.start()
        win.start_s = time.time()
        try:
            yield win
        finally:
            sync()
            win.end_s = time.time()
            if self.sampler:
                self.sampler.sample_once()
            for m in reversed(chosen):
                win.readings += m.stop()
            if self.sampler:
                win.rows = [
                    r
                    for r in self.sampler.snapshot()
                    if win.start_s <= r["time_unix_s"] <= win.end_s
                ]
            self.phase("idle")

    def baseline(
        self, sync: Callable[[], None]
    ) -> tuple[list[baseline_cache.IdlePower], str | None]:
        """Idle power per hardware-metered device (cached), or ([], why not)."""
        if not self.cfg.baseline.enabled:
            return [], "disabled (energy.baseline.enabled=false)"
        hw = self.hardware_meters
        if not hw:
            return [], "no hardware meter"
        keys: dict[str, str] = {}
        cached: list[baseline_cache.IdlePower] = []
        for m in hw:
            for dev_key, identity in m.baseline_keys().items():
                keys[dev_key] = baseline_cache.cache_key(dev_key, identity)
                entry = baseline_cache.load(keys[dev_key], self.cfg.baseline.max_age_h * 3600)
                if entry:
                    cached.append(entry)
        if len(cached) == len(keys):
            return cached, None
        with self.window("baseline", sync, meters=hw) as win:
            time.sleep(self.cfg.baseline.duration_s)
        out = []
        for r in win.readings:
            if r.energy_j is None or r.device_key is None:
                continue
            entry = baseline_cache.IdlePower(
                r.device,
                r.device_key,
                r.covers,
                r.meter,
                r.energy_j / r.duration_s,
                r.duration_s,
                r.start_s,
            )
            baseline_cache.store(
                keys.get(r.device_key, baseline_cache.cache_key(r.device_key, "")), entry
            )
            out.append(entry)
        return out, None if out else "the idle window gave no reading"

    def window_warnings(self, win: Window) -> list[str]:
        out = quality.reading_problems(win.readings)
        if self.sampler:
            out += quality.sample_problems(win.rows, self.gpus, self.sampler.interval_s)
        return out

    def end_checks(self) -> list[str]:
        return quality.device_problems(self.nvml, self.gpus) if self.nvml is not None else []

    def close(self, timeseries_path: Path | None) -> str | None:
        """Stop sampling, write the time series (returns its file name), release the meters."""
        name = None
        try:
            if self.sampler:
                self.sampler.stop()
                if timeseries_path is not None and self.sampler.rows:
                    write_timeseries(self.sampler.rows, timeseries_path)
                    name = timeseries_path.name
        finally:
            for m in self.meters:  # the NVML meter shuts NVML down
                m.close()
        return name
