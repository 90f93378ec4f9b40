"""The key metrics of a run: one definition read by the study summary (its metric columns, in this
order), the terminal table, ``llem reproduce``'s comparison and the study launcher's progress lines.

Each metric is taken from a typed result (:class:`llem.result.Result`, or its measured sections
:class:`llem.result.ResultMetrics`); ``None`` where the run did not measure it (a non-finite number
counts as not measured).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from llem.hostcpu import CpuContention, HostCpu, is_contended
from llem.result import (
    Distribution,
    EnergyMetrics,
    FlopsMetrics,
    LatencyMetrics,
    MemoryMetrics,
    RepeatSummary,
    ServingReport,
    SpanFigures,
    ThroughputMetrics,
    TimingMetrics,
)

Value = float | int | str | bool | None
Kind = Literal["float", "int", "str", "bool"]


class Measured(Protocol):
    """The sections of a result the key metrics read (Result and ResultMetrics both have them)."""

    @property
    def throughput(self) -> ThroughputMetrics: ...
    @property
    def latency(self) -> LatencyMetrics: ...
    @property
    def timing(self) -> TimingMetrics: ...
    @property
    def memory(self) -> MemoryMetrics: ...
    @property
    def flops(self) -> FlopsMetrics: ...
    @property
    def energy(self) -> EnergyMetrics: ...
    @property
    def repeats(self) -> RepeatSummary: ...
    @property
    def host_cpu(self) -> HostCpu | None: ...
    @property
    def cpu_contention(self) -> list[CpuContention]: ...
    @property
    def serving(self) -> ServingReport | None: ...


@dataclass(frozen=True)
class KeyMetric:
    name: str  # column name (carries the unit)
    label: str  # short human label
    unit: str  # unit symbol for display ('' for a count or a text)
    kind: Kind  # column type
    get: Callable[[Measured], Value]

    def of(self, result: Measured) -> Value:
        """This metric of ``result``; ``None`` when not measured or not finite."""
        value = self.get(result)
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    def format(self, value: Value) -> str:
        """``'123.4 output tok/s'``, ``'n/a'`` for ``None``."""
        if value is None:
            return "n/a"
        if isinstance(value, bool):
            return "yes" if value else "no"
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return f"{text} {self.unit}".rstrip()


def _p(dist: Distribution | None, name: Literal["p50", "p99"]) -> float | None:
    if dist is None:
        return None
    return dist.p50 if name == "p50" else dist.p99


def _co2(r: Measured) -> float | None:
    return None if r.energy.co2 is None else r.energy.co2.emissions_kg_co2eq


def _estimate_per_token(r: Measured) -> float | None:
    """CodeCarbon's modelled J / output token (output tokens = throughput x window)."""
    tokens = r.throughput.output_tokens_per_s * r.timing.measured_window_s
    return None if r.energy.estimate_j is None or not tokens else r.energy.estimate_j / tokens


def _threads(r: Measured) -> int | None:
    return None if r.host_cpu is None else r.host_cpu.torch_threads


def _other_cores(r: Measured) -> float | None:
    """The busiest measured window's CPU use by other processes (cores)."""
    values = [c.other_cores for c in r.cpu_contention if c.other_cores is not None]
    return max(values) if values else None


def contended(r: Measured) -> bool | None:
    """Whether any measured window had other processes above its threshold (None: none measured)."""
    flags = [f for c in r.cpu_contention if (f := is_contended(c)) is not None]
    return any(flags) if flags else None


def _steady(r: Measured) -> SpanFigures | None:
    """The steady-state window of a served run (None offline or without one)."""
    return r.serving.steady if r.serving is not None else None


def _slo_attainment(r: Measured) -> float | None:
    w = _steady(r)
    if w is None or w.goodput_requests_per_s is None or not w.achieved_requests_per_s:
        return None
    return w.goodput_requests_per_s / w.achieved_requests_per_s


KEY_METRICS: tuple[KeyMetric, ...] = (
    KeyMetric(
        "output_tokens_per_s",
        "output throughput",
        "output tok/s",
        "float",
        lambda r: r.throughput.output_tokens_per_s,
    ),
    KeyMetric(
        "total_tokens_per_s",
        "total throughput",
        "total tok/s",
        "float",
        lambda r: r.throughput.total_tokens_per_s,
    ),
    KeyMetric(
        "requests_per_s", "request rate", "req/s", "float", lambda r: r.throughput.requests_per_s
    ),
    KeyMetric("ttft_p50_ms", "TTFT p50", "ms", "float", lambda r: _p(r.latency.ttft_ms, "p50")),
    KeyMetric("ttft_p99_ms", "TTFT p99", "ms", "float", lambda r: _p(r.latency.ttft_ms, "p99")),
    KeyMetric("itl_p50_ms", "ITL p50", "ms", "float", lambda r: _p(r.latency.itl_ms, "p50")),
    KeyMetric("e2e_p50_ms", "E2E p50", "ms", "float", lambda r: _p(r.latency.e2e_ms, "p50")),
    KeyMetric("e2e_p99_ms", "E2E p99", "ms", "float", lambda r: _p(r.latency.e2e_ms, "p99")),
    KeyMetric("energy_total_j", "energy", "J", "float", lambda r: r.energy.total_j),
    KeyMetric(
        "energy_per_output_token_j",
        "energy per output token",
        "J/output token",
        "float",
        lambda r: r.energy.per_output_token_j,
    ),
    KeyMetric(
        "wh_per_1k_requests",
        "energy per 1k requests",
        "Wh/1k requests",
        "float",
        lambda r: r.energy.wh_per_1k_requests,
    ),
    KeyMetric("energy_covers", "energy covers", "", "str", lambda r: r.energy.covers),
    KeyMetric("energy_reason", "energy not measured", "", "str", lambda r: r.energy.reason),
    KeyMetric(
        "codecarbon_estimate_j",
        "CodeCarbon energy (modelled estimate)",
        "J",
        "float",
        lambda r: r.energy.estimate_j,
    ),
    KeyMetric(
        "codecarbon_estimate_per_output_token_j",
        "CodeCarbon energy per output token (modelled estimate)",
        "J/output token",
        "float",
        _estimate_per_token,
    ),
    KeyMetric("codecarbon_co2_kg", "CO2-eq (CodeCarbon, modelled)", "kg", "float", _co2),
    KeyMetric(
        "window_flops_per_output_token",
        "FLOPs per output token (closed form, every measured batch)",
        "FLOP",
        "float",
        lambda r: r.flops.window_per_output_token,
    ),
    KeyMetric(
        "counted_flops_per_output_token",
        "FLOPs per output token (counted, check on counted_flops_batches)",
        "FLOP",
        "float",
        lambda r: r.flops.counted_per_output_token,
    ),
    KeyMetric(
        "counted_flops_batches",
        "batches re-run by the FLOP counter",
        "",
        "int",
        lambda r: r.flops.counted_batches,
    ),
    KeyMetric("peak_memory_bytes", "peak memory", "B", "int", lambda r: r.memory.peak_bytes),
    KeyMetric(
        "measured_window_s", "measured window", "s", "float", lambda r: r.timing.measured_window_s
    ),
    # the job's wall time and its parts (the overhead of measuring stays visible)
    KeyMetric("job_s", "job wall time", "s", "float", lambda r: r.timing.job_s),
    KeyMetric("startup_s", "start-up", "s", "float", lambda r: r.timing.startup_s),
    KeyMetric("model_load_s", "model load", "s", "float", lambda r: r.timing.model_load_s),
    KeyMetric("warmup_s", "warm-up", "s", "float", lambda r: r.timing.warmup_s),
    KeyMetric("flops_pass_s", "FLOP pass", "s", "float", lambda r: r.timing.flops_pass_s),
    KeyMetric("write_s", "write", "s", "float", lambda r: r.timing.write_s),
    KeyMetric("repeats", "repeats", "", "int", lambda r: len(r.repeats.per_repeat)),
    KeyMetric("cpu_threads", "torch CPU threads", "threads", "int", _threads),
    KeyMetric(
        "other_cpu_cores",
        "CPU used by other processes (busiest window)",
        "cores",
        "float",
        _other_cores,
    ),
    KeyMetric(
        "contended",
        "CPU contended (other processes above the threshold)",
        "",
        "bool",
        contended,
    ),
    # served runs (backend=openai under a load): the steady-state window (docs/serving.md)
    KeyMetric(
        "steady_achieved_requests_per_s",
        "steady achieved rate",
        "req/s",
        "float",
        lambda r: w.achieved_requests_per_s if (w := _steady(r)) else None,
    ),
    KeyMetric(
        "steady_output_tokens_per_s",
        "steady output throughput",
        "output tok/s",
        "float",
        lambda r: w.output_tokens_per_s if (w := _steady(r)) else None,
    ),
    KeyMetric(
        "steady_energy_per_output_token_j",
        "steady energy per output token",
        "J/output token",
        "float",
        lambda r: w.per_output_token_j if (w := _steady(r)) else None,
    ),
    KeyMetric(
        "steady_e2e_p50_ms",
        "steady E2E p50",
        "ms",
        "float",
        lambda r: _p(w.latency.e2e_ms, "p50") if (w := _steady(r)) else None,
    ),
    KeyMetric(
        "steady_e2e_p99_ms",
        "steady E2E p99",
        "ms",
        "float",
        lambda r: _p(w.latency.e2e_ms, "p99") if (w := _steady(r)) else None,
    ),
    KeyMetric(
        "steady_slo_attainment",
        "steady SLO attainment",
        "",
        "float",
        _slo_attainment,
    ),
)
BY_NAME: dict[str, KeyMetric] = {m.name: m for m in KEY_METRICS}

# metrics with a 95% interval across repeats (``<name>_ci95_low`` / ``_high``: the log-scale
# interval of the geometric mean, llem.stats; None with fewer than 3 repeats)
CI_METRICS: tuple[KeyMetric, ...] = (
    BY_NAME["output_tokens_per_s"],
    BY_NAME["energy_per_output_token_j"],
)
CI_COLUMNS: tuple[str, ...] = tuple(
    f"{m.name}_ci95_{side}" for m in CI_METRICS for side in ("low", "high")
)
# what ``llem reproduce`` compares and a study's progress line shows
COMPARED: tuple[KeyMetric, ...] = tuple(
    BY_NAME[n]
    for n in (
        "output_tokens_per_s",
        "total_tokens_per_s",
        "ttft_p50_ms",
        "itl_p50_ms",
        "e2e_p50_ms",
        "energy_total_j",
        "energy_per_output_token_j",
        "codecarbon_estimate_j",
        "codecarbon_co2_kg",
        "window_flops_per_output_token",
        "peak_memory_bytes",
        "cpu_threads",
        "other_cpu_cores",
    )
)
PROGRESS: tuple[KeyMetric, ...] = CI_METRICS


def key_metrics(result: Measured) -> dict[str, Value]:
    """Every key metric of ``result`` by name, then the CI bounds (``None`` without an interval)."""
    values = {m.name: m.of(result) for m in KEY_METRICS}
    for m in CI_METRICS:
        interval = result.repeats.stats.get(m.name)
        low = None if interval is None else interval.ci95_low
        high = None if interval is None else interval.ci95_high
        values[f"{m.name}_ci95_low"] = low if low is None or math.isfinite(low) else None
        values[f"{m.name}_ci95_high"] = high if high is None or math.isfinite(high) else None
    return values
