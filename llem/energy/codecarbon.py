"""CodeCarbon (``pip install llenergymeasure[codecarbon]``): CO2-eq emissions and its energy
ESTIMATE of the CPU and RAM.

``OfflineEmissionsTracker`` with a country code (no network). Without RAPL access CodeCarbon models
CPU power from the CPU's TDP or a per-thread constant and RAM power from its size: the energy it
reports is labelled a modelled estimate and is never used in place of a hardware meter. Its console
noise is silenced and it writes no files.

Its GPU part is always off: NVML has one owner, Zeus when usable, else llem's NVML meter. CodeCarbon
3.x has no option for that (``gpu_ids=[]`` still opens every GPU, and importing
``codecarbon.core.gpu_nvidia`` calls ``nvmlInit`` and never shuts it down), so CodeCarbon is
imported with its own imports of ``pynvml`` and ``amdsmi`` refused: it then finds no GPU library,
never initialises NVML or AMD SMI and never polls a GPU. Its GPU estimate is null, with why."""

from __future__ import annotations

import builtins
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType

from llem.energy.base import ESTIMATE, MODELLED, MeterContext, MeterUnavailable, Reading
from llem.quiet import quiet

KWH_TO_J = 3.6e6
GPU_LIBRARIES = ("pynvml", "amdsmi")  # what CodeCarbon's GPU part imports (NVIDIA, AMD)
COVERAGE = "CPU + RAM only"
MIN_WINDOW_S = 0.05  # CodeCarbon 3.x takes no sample at stop() within this long of the last one
NOT_INSTALLED = "codecarbon is not installed (pip install llenergymeasure[codecarbon])"
GPU_PART_ON = (
    "CodeCarbon was imported in this process before llem with its GPU part on (it would read the "
    "GPUs beside llem's GPU meter); import it through llem or leave it out"
)

_import_lock = threading.Lock()


def codecarbon_status() -> str | None:
    """None when CodeCarbon imports with its GPU part off, else why not."""
    try:
        _quiet_import()
    except ImportError:
        return NOT_INSTALLED
    except MeterUnavailable as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def gpu_libraries_refused() -> Iterator[None]:
    """While inside: an ``import pynvml``/``import amdsmi`` made by a CodeCarbon module raises
    ImportError; every other import (any thread, any module) is untouched."""
    original = builtins.__import__

    def refusing(
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> ModuleType:
        importer = str((globals or {}).get("__name__", ""))
        if name.split(".")[0] in GPU_LIBRARIES and importer.startswith("codecarbon"):
            raise ImportError(f"llem keeps CodeCarbon off the GPUs ({name})", name=name)
        return original(name, globals, locals, fromlist or (), level)

    builtins.__import__ = refusing
    try:
        yield
    finally:
        builtins.__import__ = original


def gpu_part_off() -> bool:
    """Whether the CodeCarbon imported in this process found no GPU library (its GPU part off)."""
    from codecarbon.core import gpu

    return not gpu.is_gpu_details_available()


def _quiet_import() -> type:
    """CodeCarbon's tracker class, imported quietly with its GPU part off (MeterUnavailable when
    it was imported before, GPU part on)."""
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    with _import_lock, quiet(), gpu_libraries_refused():
        from codecarbon import OfflineEmissionsTracker
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    if not gpu_part_off():
        raise MeterUnavailable(GPU_PART_ON)
    return OfflineEmissionsTracker


def prewarm() -> None:
    """Fill CodeCarbon's process-wide caches of the CPU model and its TDP (a ``cpuinfo``
    subprocess and a table read, ~1.5 s), so that processes forked afterwards (study jobs from the
    fork server) start their tracker without redoing them. Nothing is measured; a CodeCarbon
    without these caches, or one llem cannot use, is left alone."""
    with contextlib.suppress(MeterUnavailable):
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
    return CodeCarbonMeter(ctx.cfg.country_iso_code, gpu_meter=ctx.gpu_meter)


def gpu_reason(gpu_meter: str | None) -> str:
    """Why CodeCarbon gives no GPU figure: ``gpu_meter`` is the label of the job's hardware GPU
    meter (None: there is none)."""
    if gpu_meter is not None:
        return f"CodeCarbon's GPU part is off: the GPUs are measured by {gpu_meter} (energy.gpu_j)"
    return (
        "no GPU meter here (see energy.reason), and CodeCarbon's GPU part is off: in llem only "
        "Zeus or NVML read the GPUs"
    )


def no_figure(name: str) -> str:
    """Why CodeCarbon's figure ``name`` is null."""
    return (
        f"CodeCarbon gave no {name} in a measured window (it measures nothing in a window under "
        f"{MIN_WINDOW_S} s, and counts this process's CPU time only)"
    )


@dataclass
class CarbonFigures:
    """CodeCarbon's figures summed over the windows measured so far, keyed by the result's field
    names (``cpu_estimate_j``, ``ram_estimate_j`` in J, ``emissions_kg_co2eq`` in kg); a figure it
    did not give in every window is absent and ``null_reasons`` says why."""

    country: str
    coverage: str  # what it covers, e.g. "CPU + RAM only; GPU measured by NVML"
    sums: dict[str, float] = field(default_factory=dict)
    null_reasons: dict[str, str] = field(default_factory=dict)  # field name -> why it is null

    def add(self, window: dict[str, float]) -> None:
        """Add one window's figures; one that is not positive makes its sum null for good."""
        for name, value in window.items():
            if value > 0 and name not in self.null_reasons:
                self.sums[name] = self.sums.get(name, 0.0) + value
            else:
                self.sums.pop(name, None)
                self.null_reasons[name] = no_figure(name)


class CodeCarbonMeter:
    """One tracker for the whole job. CodeCarbon's figures accumulate across start/stop, so each
    window is the difference of the cumulative figures; a first start/stop at construction absorbs
    its slow hardware probing (~1.5 s) outside every window. It models the CPU and RAM only (its GPU
    part is off, see the module's docstring); ``gpu_meter`` names the job's GPU meter, if any."""

    name = "codecarbon"

    def __init__(
        self, country_iso_code: str, interval_s: float = 1.0, gpu_meter: str | None = None
    ) -> None:
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
        self._last = {"energy": 0.0, "emissions": 0.0, "cpu_j": 0.0, "ram_j": 0.0}
        gpu = f"GPU measured by {gpu_meter}" if gpu_meter else "no GPU estimate"
        self.figures = CarbonFigures(self.country, f"{COVERAGE}; {gpu}")
        self.figures.null_reasons["gpu_estimate_j"] = gpu_reason(gpu_meter)
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
            "ram_j": d.ram_energy * KWH_TO_J,
        }
        delta = {k: now[k] - self._last[k] for k in now}
        self._last = now
        return delta

    def stop(self) -> list[Reading]:
        delta = self._cumulative()
        t1 = time.time()
        self.figures.add(
            {
                "cpu_estimate_j": delta["cpu_j"],
                "ram_estimate_j": delta["ram_j"],
                "emissions_kg_co2eq": delta["emissions"],
            }
        )
        total = delta["energy"]
        return [
            Reading(
                self.name,
                f"process (CodeCarbon model: {self.figures.coverage})",
                ESTIMATE,
                MODELLED,
                total if total > 0 else None,
                self._t0,
                t1,
                None if total > 0 else no_figure("energy"),
            )
        ]

    def poll(self) -> None:
        pass

    def baseline_keys(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        self._tracker = None
