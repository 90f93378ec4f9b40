"""The meters llem knows, in order of preference, and everything derived from that list.

One :class:`MeterSpec` per meter: its name, the kind of device it measures, what its readings cover,
its pip extra, a status probe and a factory. Built-ins are registered at the bottom of this module;
code outside llem adds a meter with :func:`register_meter` from a module named in ``LLEM_PLUGINS``
(an example: ``tests/stand_ins/constant_meter.py``, one class and one call).

Derived from the list: the valid ``energy.meter`` values (names + ``auto`` + ``none``), the Hydra
group choices ``energy=<name>`` (each node is the schema's defaults with ``meter`` set, see
:mod:`llem.hydra_options`), the pre-flight check of an explicit meter, ``energy=auto``'s choice and
``llem config``'s meter lines.

``energy=auto``: for each hardware device kind (gpu, cpu) the first meter, in registration order,
whose factory succeeds here (Zeus before NVML: when Zeus works it owns NVML energy reads and llem's
NVML sampler reads no GPU), plus every estimate whose ``in_auto`` holds (CodeCarbon when
``energy.codecarbon``). Estimates open after the hardware meters and never read a GPU: CodeCarbon's
GPU part is off, so NVML has one owner (see :mod:`llem.energy.codecarbon`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from llem.energy import codecarbon, nvml, rapl, zeus
from llem.energy.base import (
    CPU_PACKAGE,
    DRAM,
    ESTIMATE,
    GPU_BOARD,
    Meter,
    MeterContext,
    MeterUnavailable,
)
from llem.energy.config import EnergyConfig
from llem.errors import UsageError

AUTO = "auto"
NONE = "none"

DeviceKind = Literal["gpu", "cpu", "estimate"]


def _always(cfg: EnergyConfig) -> bool:
    return True


@dataclass(frozen=True)
class MeterSpec:
    """One meter. ``status()`` is None when the meter can work here, else why not (one clause)."""

    name: str  # energy=<name>; also Reading.meter and the result's energy.meters
    label: str  # how messages name it ("CodeCarbon")
    devices: DeviceKind  # estimate = a modelled figure, never summed with hardware readings
    covers: tuple[str, ...]  # what its readings cover (Reading.covers, the result's energy.covers)
    summary: str  # one line for `llem config`
    status: Callable[[], str | None]
    factory: Callable[[MeterContext], Meter]  # raises MeterUnavailable when it cannot measure here
    extra: str | None = None  # pip install llenergymeasure[<extra>]
    requires: tuple[str, ...] = ()  # importable modules it needs (checked before status/factory)
    fix: str = "Use energy=auto (or energy=none)"  # the advice after a failed pre-flight check
    in_auto: Callable[[EnergyConfig], bool] = _always  # whether energy=auto tries it
    # what a study's fork server imports for it (``module:function``: also called, to warm caches)
    preload: tuple[str, ...] = ()

    @property
    def hardware(self) -> bool:
        return self.devices != "estimate"

    def missing(self) -> str | None:
        """The first required module not installed, with its pip extra; None when all are."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                hint = f" (pip install llenergymeasure[{self.extra}])" if self.extra else ""
                return f"{module} is not installed{hint}"
        return None

    def why_not(self) -> str | None:
        """None when the meter is usable here, else why."""
        return self.missing() or self.status()


_METERS: dict[str, MeterSpec] = {}


def register_meter(spec: MeterSpec) -> None:
    """Add a meter (lowest preference so far), and so its Hydra group choice ``energy=<name>``.

    An estimate's readings cover exactly :data:`~llem.energy.base.ESTIMATE` and a hardware meter's
    never do: results tell the two apart by ``covers``."""
    if spec.name in (AUTO, NONE) or spec.name in _METERS:
        raise ValueError(f"a meter named {spec.name!r} is already registered")
    consistent = ESTIMATE not in spec.covers if spec.hardware else spec.covers == (ESTIMATE,)
    if not consistent:
        raise ValueError(
            f"meter {spec.name!r}: an estimate covers exactly ({ESTIMATE!r},) and a hardware "
            f"meter never covers {ESTIMATE!r}"
        )
    _METERS[spec.name] = spec


def meters() -> list[MeterSpec]:
    """Every registered meter, most preferred first."""
    return list(_METERS.values())


def meter_spec(name: str) -> MeterSpec:
    return _METERS[name]


def choices() -> list[str]:
    """The valid values of ``energy.meter``."""
    return [AUTO, *_METERS, NONE]


def check_meter(cfg: EnergyConfig) -> None:
    """Pre-flight: an explicitly chosen meter must work here (else a usage error, exit 2)."""
    if cfg.meter in (AUTO, NONE):
        return
    spec = meter_spec(cfg.meter)
    why = spec.why_not()
    if why is not None:
        fix = f". {spec.fix}" if spec.fix else ""
        raise UsageError(f"energy={spec.name} cannot work here: {why}{fix}")


def _candidates(cfg: EnergyConfig) -> Iterator[MeterSpec]:
    if cfg.meter == AUTO:
        yield from (s for s in meters() if s.in_auto(cfg))
    elif cfg.meter != NONE:
        yield meter_spec(cfg.meter)


def meter_preload(cfg: EnergyConfig) -> list[str]:
    """The preloads of every installed meter ``cfg`` may open."""
    return [m for spec in _candidates(cfg) if spec.missing() is None for m in spec.preload]


def open_meters(ctx: MeterContext) -> tuple[list[Meter], list[str]]:
    """The meters ``ctx.cfg.meter`` selects, opened, and why each one tried is absent."""
    opened: list[Meter] = []
    unavailable: list[str] = []
    kinds_done: set[str] = set()
    # hardware meters first: an estimate opens knowing the job's GPU meter (ctx.gpu_meter)
    for spec in sorted(_candidates(ctx.cfg), key=lambda s: not s.hardware):
        if spec.hardware and spec.devices in kinds_done:
            continue
        why = spec.missing()  # the factory checks the rest (an explicit meter: also pre-flight)
        if why is None:
            try:
                opened.append(spec.factory(ctx))
            except MeterUnavailable as exc:
                why = str(exc)
        if why is None:
            kinds_done.add(spec.devices)
            if spec.devices == "gpu":
                ctx.gpu_meter = spec.label
        else:
            unavailable.append(why)
    return opened, unavailable


def is_hardware(meter: Meter) -> bool:
    """Whether an opened meter measures devices (not an estimate)."""
    return meter_spec(meter.name).hardware


def nothing_measured(cfg: EnergyConfig, opened: list[Meter], unavailable: list[str]) -> str:
    """The result's ``energy.reason`` when no hardware meter gave a total."""
    if cfg.meter == NONE:
        return f"disabled (energy={NONE})"
    why = "; ".join(w for w in unavailable if w)
    if cfg.meter != AUTO and not meter_spec(cfg.meter).hardware:
        return f"energy={cfg.meter} measures nothing: its modelled estimate is in energy.estimate_j"
    if opened:  # only estimates
        names = ", ".join(meter_spec(m.name).label for m in opened)
        return f"no hardware meter ({why}); {names}'s modelled estimate is in energy.estimate_j"
    return f"no usable meter ({why})"


def meter_status_lines() -> list[tuple[str, str]]:
    """``llem config``'s rows: what ``energy=auto`` would use here, then each meter's status."""
    status = {s.name: s.why_not() for s in meters()}
    defaults = EnergyConfig()
    auto: list[str] = []
    kinds: set[str] = set()
    for s in meters():
        usable = status[s.name] is None and s.in_auto(defaults)
        if usable and (not s.hardware or s.devices not in kinds):
            kinds.add(s.devices)
            auto.append(f"{s.name} ({s.devices})")
    rows = [
        (f"energy {AUTO}", ", ".join(auto) or "no usable meter (energy is null with the reason)")
    ]
    for s in meters():
        why = status[s.name]
        rows.append((f"energy {s.name}", f"usable: {s.summary}" if why is None else why))
    return rows


for _spec in (
    MeterSpec(
        name="zeus",
        label="Zeus",
        devices="gpu",
        covers=(GPU_BOARD,),
        summary="Zeus ZeusMonitor windows over the job's GPUs (owns NVML energy reads)",
        status=zeus.zeus_status,
        factory=zeus.open_meter,
        extra="zeus",
        requires=("zeus",),
    ),
    MeterSpec(
        name="nvml",
        label="NVML",
        devices="gpu",
        covers=(GPU_BOARD,),
        summary="NVML total-energy counter deltas of the job's GPUs",
        status=nvml.nvml_status,
        factory=nvml.open_meter,
    ),
    MeterSpec(
        name="rapl",
        label="RAPL",
        devices="cpu",
        covers=(CPU_PACKAGE, DRAM),
        summary="CPU package and DRAM counters under /sys/class/powercap",
        status=rapl.rapl_status,
        factory=rapl.open_meter,
        fix="Use energy=auto (or run as root)",
    ),
    MeterSpec(
        name="codecarbon",
        label="CodeCarbon",
        devices="estimate",
        covers=(ESTIMATE,),
        summary="CodeCarbon's modelled CPU + RAM energy estimate and CO2-eq (never reads a GPU)",
        status=codecarbon.codecarbon_status,
        factory=codecarbon.open_meter,
        extra="codecarbon",
        requires=("codecarbon",),
        fix="",
        in_auto=lambda cfg: cfg.codecarbon,
        preload=("llem.energy.codecarbon:prewarm",),
    ),
):
    register_meter(_spec)
