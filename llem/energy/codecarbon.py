"""CodeCarbon (``pip install llenergymeasure[codecarbon]``): CO2-eq emissions and its energy
ESTIMATE.

``OfflineEmissionsTracker`` with a country code (no network). Without RAPL/NVML access CodeCarbon
models CPU power from the CPU's TDP or a per-thread constant and RAM power from its size: the energy
it reports is labelled a modelled estimate and is never used in place of a hardware meter. Its
console noise is silenced and it writes no files."""

from __future__ import annotations

import contextlib
import logging
import time

from llem.energy.base import ESTIMATE, MODELLED, MeterContext, MeterUnavailable, Reading
from llem.quiet import quiet

KWH_TO_J = 3.6e6


def codecarbon_status() -> str | None:
    """None when CodeCarbon imports, else why not."""
    try:
        _quiet_import()
    except ImportError:
        return "codecarbon is not installed (pip install llenergymeasure[codecarbon])"
    return None


def _quiet_import() -> type:
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    with quiet():
        from codecarbon import OfflineEmissionsTracker
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    return OfflineEmissionsTracker


def prewarm() -> None:
    """Fill CodeCarbon's process-wide caches of the CPU model and its TDP (a ``cpuinfo``
    subprocess and a table read, ~1.5 s), so that processes forked afterwards (study jobs from the
    fork server) start their tracker without redoing them. Nothing is measured; a CodeCarbon
    without these caches is left alone."""
    _quiet_import()
    with contextlib.suppress(ImportError, AttributeError):
        from codecarbon.core import cpu
        from codecarbon.core.hardware_cache import get_cached_tdp

        with quiet():
            get_cached_tdp(cpu)  # type: ignore[no-untyped-call]  # untyped in CodeCarbon


def open_meter(ctx: MeterContext) -> CodeCarbonMeter:
    why = codecarbon_status()
    if why is not None:
        raise MeterUnavailable(why)
    return CodeCarbonMeter(ctx.cfg.country_iso_code)


class CodeCarbonMeter:
    """One tracker for the whole job. CodeCarbon's figures accumulate across start/stop, so each
    window is the difference of the cumulative figures; a first start/stop at construction absorbs
    its slow hardware probing (~1.5 s) outside every window."""

    name = "codecarbon"

    def __init__(self, country_iso_code: str, interval_s: float = 1.0) -> None:
        self.country = country_iso_code.upper()
        tracker_cls = _quiet_import()
        import inspect

        # no files, no API: newer CodeCarbon takes output_methods=[], older save_to_*=False
        quiet_output: dict[str, list[str] | bool] = (
            {"output_methods": []}
            if "output_methods" in inspect.signature(tracker_cls).parameters
            or "output_methods" in inspect.signature(tracker_cls.__mro__[1]).parameters
            else {"save_to_file": False, "save_to_api": False}
        )
        with quiet():
            self._tracker = tracker_cls(
                country_iso_code=self.country,
                log_level="error",
                measure_power_secs=interval_s,
                allow_multiple_runs=True,
                tracking_mode="process",
                project_name="llem",
                **quiet_output,
            )
        self._t0 = 0.0
        self._last = {"energy": 0.0, "emissions": 0.0, "cpu_j": 0.0, "gpu_j": 0.0, "ram_j": 0.0}
        self.emissions_kg: float | None = None  # summed over the windows measured so far
        self.detail: dict[str, float] = {}  # cpu_j, gpu_j, ram_j summed over the windows
        self.start()
        self._cumulative()  # prime: discard the first (slow) window

    def start(self) -> None:
        with quiet():
            self._tracker.start()
        self._t0 = time.time()

    def _cumulative(self) -> dict[str, float]:
        """Stop the tracker; this window's figures (differences of CodeCarbon's running totals)."""
        with quiet():
            self._tracker.stop()
        d = self._tracker.final_emissions_data
        now: dict[str, float] = {
            "energy": d.energy_consumed * KWH_TO_J,
            "emissions": float(d.emissions or 0.0),
            "cpu_j": d.cpu_energy * KWH_TO_J,
            "gpu_j": d.gpu_energy * KWH_TO_J,
            "ram_j": d.ram_energy * KWH_TO_J,
        }
        delta = {k: now[k] - self._last[k] for k in now}
        self._last = now
        return delta

    def stop(self) -> list[Reading]:
        delta = self._cumulative()
        t1 = time.time()
        self.emissions_kg = (self.emissions_kg or 0.0) + delta["emissions"]
        for key in ("cpu_j", "gpu_j", "ram_j"):
            self.detail[key] = self.detail.get(key, 0.0) + delta[key]
        total = delta["energy"]
        return [
            Reading(
                self.name,
                "process (CodeCarbon model of CPU + GPU + RAM)",
                ESTIMATE,
                MODELLED,
                total if total > 0 else None,
                self._t0,
                t1,
                None if total > 0 else "CodeCarbon estimated no energy",
            )
        ]

    def poll(self) -> None:
        pass

    def baseline_keys(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        self._tracker = None
