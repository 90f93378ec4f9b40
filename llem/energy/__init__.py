"""Energy measurement for one job: meters, the time-series sampler, the idle baseline, quality warnings.

:class:`EnergySession` owns NVML for the job (one ``nvmlInit`` paired with one ``nvmlShutdown``). The
harness synchronises the device before every window boundary; meters read after that.

Meter selection (``energy.meter``):
- ``auto``: Zeus when installed and it sees GPUs (it then owns NVML energy reads), else NVML counters for
  every GPU the job can use; RAPL for CPU packages when readable; plus CodeCarbon's CO2 estimate when
  installed and ``energy.codecarbon`` is true. None of these here -> energy is null with the reason.
- ``nvml`` / ``zeus`` / ``rapl`` / ``codecarbon``: that meter only; if it cannot work here the job stops
  before the model is loaded (:func:`check_meter` runs in pre-flight).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from llem.config import EnergyConfig
from llem.energy import baseline as baseline_cache
from llem.energy import quality
from llem.energy.base import Meter, Reading
from llem.energy.codecarbon import CodeCarbonMeter, codecarbon_status
from llem.energy.nvml import Gpu, NvmlMeter, load_nvml, require_nvml, visible_gpus
from llem.energy.rapl import POWERCAP, RaplMeter, find_zones, require_rapl
from llem.energy.sampler import Sampler, write_timeseries
from llem.energy.zeus import zeus_status
from llem.errors import UsageError
from llem.records import TIMESERIES_FILE as TIMESERIES_FILE


def get_active_energy_backend() -> str | None:
    """The GPU energy backend ``auto`` uses: 'zeus' when installed and usable, else 'nvml', else None."""
    if zeus_status() is None:
        return "zeus"
    nvml, _ = load_nvml()
    if nvml is None:
        return None
    nvml.nvmlShutdown()
    return "nvml"


def check_meter(cfg: EnergyConfig) -> None:
    """Pre-flight: an explicitly chosen meter must work on this machine (else a usage error, exit 2)."""
    if cfg.meter == "nvml":
        require_nvml()
    elif cfg.meter == "rapl":
        require_rapl()
    elif cfg.meter == "zeus" and (why := zeus_status()):
        raise UsageError(f"energy=zeus cannot work here: {why}. Use energy=auto (or energy=none)")
    elif cfg.meter == "codecarbon" and (why := codecarbon_status()):
        raise UsageError(f"energy=codecarbon cannot work here: {why}")


def rapl_status(root: Path = POWERCAP) -> str | None:
    """None when RAPL counters are readable, else why not."""
    return find_zones(root)[1]


@dataclass
class Window:
    """One measured window: its name, its readings (filled when it closes) and its sample rows."""

    name: str
    start_s: float = 0.0
    end_s: float = 0.0
    readings: list[Reading] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class EnergySession:
    """The meters of one job. Use :meth:`open` before loading the model and :meth:`close` at the end."""

    def __init__(self, cfg: EnergyConfig, powercap_root: Path = POWERCAP) -> None:
        self.cfg = cfg
        self.powercap_root = powercap_root
        self.meters: list[Meter] = []
        self.nvml = None
        self.gpus: list[Gpu] = []
        self.warnings: list[str] = []
        self.unavailable: list[str] = []  # why each kind of meter is absent
        self.sampler: Sampler | None = None
        self.gpu_backend: str | None = None

    # ------------------------------------------------------------------ set-up

    def open(self) -> None:
        cfg, choice = self.cfg, self.cfg.meter
        check_meter(cfg)
        if choice in ("auto", "zeus"):
            why = zeus_status()
            if why is None:
                self._open_zeus()
            elif choice == "auto":
                self.unavailable.append(why)
        if choice == "nvml" or (choice == "auto" and self.gpu_backend is None):
            self._open_nvml()
        if choice in ("auto", "rapl"):
            zones, why = find_zones(self.powercap_root)
            if zones:
                self.meters.append(RaplMeter(zones))
            else:
                self.unavailable.append(why or "no RAPL")
        if choice == "codecarbon" or (
            choice == "auto" and cfg.codecarbon and codecarbon_status() is None
        ):
            self.meters.append(CodeCarbonMeter(cfg.country_iso_code))
        elif choice == "auto" and cfg.codecarbon:
            self.unavailable.append(codecarbon_status() or "")
        self.sampler = Sampler(
            cfg.sample_interval_ms / 1000.0,
            self.nvml,
            self.gpus if self.nvml else [],
            pollers=[m.poll for m in self.meters],
        )
        if self.nvml is not None:
            self.warnings += quality.device_problems(self.nvml, self.gpus)

    def _open_nvml(self) -> None:
        nvml, why = load_nvml()
        if nvml is None:
            self.unavailable.append(why or "NVML unavailable")
            return
        self.nvml = nvml
        self.gpus, mapping_warnings = visible_gpus(nvml)
        self.warnings += mapping_warnings
        if not self.gpus:
            self.unavailable.append("no GPU visible to this job (CUDA_VISIBLE_DEVICES)")
            return
        self.gpu_backend = "nvml"
        self.meters.append(
            NvmlMeter(nvml, self.gpus, lambda g, a, b: self.sampler.integrate(g, a, b))
        )

    def _open_zeus(self) -> None:
        from zeus.device import get_gpus

        from llem.energy.zeus import ZeusMeter

        zgpus = get_gpus()
        labels = {
            i: (f"gpu{i} {zgpus.get_name(i)}", f"zeus-gpu{i}-{zgpus.get_name(i)}")
            for i in range(len(zgpus))
        }
        self.meters.append(ZeusMeter(list(labels), labels))
        self.gpu_backend = "zeus"

    @property
    def active(self) -> bool:
        return bool(self.meters)

    @property
    def hardware_meters(self) -> list[Meter]:
        return [m for m in self.meters if m.name != "codecarbon"]

    def reason(self) -> str:
        """Why nothing (hardware) measured energy."""
        if self.cfg.meter == "none":
            return "disabled (energy=none)"
        why = "; ".join(w for w in self.unavailable if w)
        if self.cfg.meter == "codecarbon":
            return (
                "energy=codecarbon measures nothing: its modelled estimate is in energy.estimate_j"
            )
        if self.meters:  # only CodeCarbon
            return (
                f"no hardware meter ({why}); CodeCarbon's modelled estimate is in energy.estimate_j"
            )
        return f"no usable meter ({why})"

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
        # estimates start first and stop last, so hardware meters bracket the work as tightly as possible
        chosen = sorted(chosen, key=lambda m: m.name != "codecarbon")
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
        identity = self._identity()
        keys: dict[str, str] = {}
        cached: list[baseline_cache.IdlePower] = []
        for dev_key in self._device_keys():
            keys[dev_key] = baseline_cache.cache_key(dev_key, identity.get(dev_key, ""))
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

    def _device_keys(self) -> list[str]:
        keys = [g.uuid for g in self.gpus] if self.gpu_backend == "nvml" else []
        for m in self.meters:
            if isinstance(m, RaplMeter):
                keys += [str(z.path) for z in m.zones]
            elif m.name == "zeus":
                keys += [uuid for _, uuid in m.labels.values()]
        return keys

    def _identity(self) -> dict[str, str]:
        """Driver version and power limit per GPU: a change invalidates cached baselines."""
        if self.nvml is None:
            return {}
        nv = self.nvml
        driver = nv.nvmlSystemGetDriverVersion()
        out = {}
        for g in self.gpus:
            try:
                limit = nv.nvmlDeviceGetEnforcedPowerLimit(g.handle)
            except nv.NVMLError:
                limit = None
            out[g.uuid] = f"driver={driver}|power_limit_mw={limit}"
        return out

    def window_warnings(self, win: Window) -> list[str]:
        out = quality.reading_problems(win.readings)
        if self.sampler:
            out += quality.sample_problems(
                win.rows, self.gpus if self.nvml else [], self.sampler.interval_s
            )
        return out

    def end_checks(self) -> list[str]:
        return quality.device_problems(self.nvml, self.gpus) if self.nvml is not None else []

    def close(self, timeseries_path: Path | None) -> str | None:
        """Stop sampling, write the time series (returns its file name), release NVML and meters."""
        name = None
        try:
            if self.sampler:
                self.sampler.stop()
                if timeseries_path is not None and self.sampler.rows:
                    write_timeseries(self.sampler.rows, timeseries_path)
                    name = timeseries_path.name
            for m in self.meters:
                m.close()
        finally:
            if self.nvml is not None:
                self.nvml.nvmlShutdown()
                self.nvml = None
        return name
