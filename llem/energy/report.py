"""From windows of readings to a result's ``energy`` section (pure arithmetic, tested by hand)."""

from __future__ import annotations

from datetime import datetime, timezone

from llem.energy.base import CPU_PACKAGE, DRAM, GPU_BOARD, Reading
from llem.energy.baseline import IdlePower
from llem.energy.codecarbon import CarbonFigures, no_figure
from llem.result import CarbonEstimate, EnergyMetrics, EnergyReading, IdleBaseline, PrefillSplit

J_PER_WH = 3600.0


def _energies(readings: list[Reading]) -> list[float] | None:
    """Every reading's joules, or None when any of them is missing."""
    known = [r.energy_j for r in readings if r.energy_j is not None]
    return known if len(known) == len(readings) else None


def hardware_total(readings: list[Reading]) -> tuple[float | None, str | None]:
    """Sum of the hardware readings, or (None, why) when there are none or any one is missing."""
    hw = [r for r in readings if r.hardware]
    if not hw:
        return None, "no hardware meter"
    known = _energies(hw)
    if known is None:
        missing = [r for r in hw if r.energy_j is None]
        return None, "; ".join(f"{r.meter} {r.device}: {r.reason}" for r in missing)
    return sum(known), None


def _sum(readings: list[Reading], covers: str) -> float | None:
    known = _energies([r for r in readings if r.covers == covers])
    return sum(known) if known else None


def _record(window: str, r: Reading) -> EnergyReading:
    return EnergyReading(
        window=window,
        meter=r.meter,
        device=r.device,
        covers=r.covers,
        method=r.method,
        energy_j=r.energy_j,
        start_unix_s=r.start_s,
        end_unix_s=r.end_s,
        duration_s=r.duration_s,
        reason=r.reason,
    )


def _iso(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, timezone.utc).isoformat(timespec="seconds")


def _carbon(fig: CarbonFigures, estimate_j: float | None) -> CarbonEstimate:
    reasons = dict(fig.null_reasons)
    if estimate_j is None:
        reasons["energy_estimate_j"] = no_figure("energy")
    return CarbonEstimate(
        emissions_kg_co2eq=fig.sums.get("emissions_kg_co2eq"),
        country_iso_code=fig.country,
        coverage=fig.coverage,
        energy_estimate_j=estimate_j,
        cpu_estimate_j=fig.sums.get("cpu_estimate_j"),
        gpu_estimate_j=None,
        ram_estimate_j=fig.sums.get("ram_estimate_j"),
        null_reasons=reasons,
        method="CodeCarbon OfflineEmissionsTracker: modelled power x time x grid intensity",
    )


def energy_metrics(
    *,
    meters: list[str],
    windows: list[tuple[str, list[Reading], float]],
    output_tokens: int,
    requests: int,
    baseline: list[IdlePower],
    baseline_reason: str | None,
    reason_if_none: str,
    carbon: CarbonFigures | None = None,
    prefill: tuple[list[Reading], float] | None = None,
    timeseries: str | None = None,
) -> EnergyMetrics:
    """``windows``: (name, readings, window seconds) of each measured window (repeats)."""
    measured = [r for _, rs, _ in windows for r in rs]
    window_s = sum(w for _, _, w in windows)
    total, why = hardware_total(measured)
    hw = [r for r in measured if r.hardware]
    covers = " + ".join(dict.fromkeys(r.covers for r in hw)) or None
    methods = " + ".join(dict.fromkeys(r.method for r in hw)) or None
    estimate = [r for r in measured if not r.hardware]
    estimated = _energies(estimate)
    estimate_j = sum(estimated) if estimated and all(estimated) else None

    idle_w = sum(b.idle_power_w for b in baseline) if baseline else None
    adjusted = total - idle_w * window_s if total is not None and idle_w is not None else None

    def per(value: float | None, count: float) -> float | None:
        return value / count if value is not None and count else None

    prefill_split = None
    if prefill is not None:
        p_total, _ = hardware_total(prefill[0])
        prefill_split = PrefillSplit(
            prefill_j=p_total,
            prefill_window_s=prefill[1],
            decode_j=(total - p_total * len(windows))
            if total is not None and p_total is not None
            else None,
            method="prefill-only pass (1 new token per prompt, same batches); "
            "decode = measured - prefill x repeats",
        )
    co2 = None if carbon is None else _carbon(carbon, estimate_j)
    records = [_record(name, r) for name, rs, _ in windows for r in rs]
    if prefill is not None:
        records += [_record("prefill", r) for r in prefill[0]]
    return EnergyMetrics(
        meters=meters,
        covers=covers if total is not None else None,
        method=methods if total is not None else None,
        total_j=total,
        gpu_j=_sum(hw, GPU_BOARD),
        cpu_package_j=_sum(hw, CPU_PACKAGE),
        dram_j=_sum(hw, DRAM),
        per_output_token_j=per(total, output_tokens),
        per_request_j=per(total, requests),
        wh_per_1k_requests=per(total * 1000 / J_PER_WH, requests) if total is not None else None,
        average_power_w=per(total, window_s) if window_s else None,
        output_tokens_per_j=output_tokens / total if total else None,
        window_s=window_s if total is not None else None,
        baseline=[
            IdleBaseline(
                device=b.device,
                covers=b.covers,
                meter=b.meter,
                idle_power_w=b.idle_power_w,
                duration_s=b.duration_s,
                measured_at=_iso(b.measured_at_unix_s),
                age_s=b.age_s(),
                source=b.source,
            )
            for b in baseline
        ],
        baseline_reason=baseline_reason,
        adjusted_total_j=adjusted,
        adjusted_per_output_token_j=per(adjusted, output_tokens),
        estimate_j=estimate_j,
        co2=co2,
        prefill=prefill_split,
        readings=records,
        timeseries=timeseries,
        reason=None if total is not None else (reason_if_none if not hw else why),
    )
