"""Each key metric of two runs in words: better, worse, no significant difference, not comparable.

A run whose measured windows were contended (other processes used more than
:data:`llem.hostcpu.CONTENTION_CORES` of a core) is not compared: its throughput, energy and
latency measured the other processes as much as the configuration. Latency medians use the
per-request values when both runs stored enough of them, every other metric its repeats
(:mod:`llem.compare.difference`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from llem.compare.difference import (
    MIN_REQUESTS,
    RatioInterval,
    bootstrap_median_ratio,
    log_welch,
)
from llem.compare.facts import contended, other_cores
from llem.keymetrics import BY_NAME, KeyMetric
from llem.result import RepeatMetrics, Result

Better = Literal["higher", "lower"]
Outcome = Literal[
    "better", "worse", "no significant difference", "not comparable", "no interval", "not measured"
]
Values = Callable[[Result], list[float]]


@dataclass(frozen=True)
class Compared:
    """A key metric as ``llem compare`` judges it."""

    metric: KeyMetric
    better: Better
    noun: str  # what the sentence names: "energy per output token"
    shape: Literal["has", "uses", "is"]  # "B has 5% more", "B uses 5% less", "B's ... is 5% lower"
    repeats: Values  # one value per repeat
    requests: Values | None = None  # one value per request, where result.json keeps them


def _per_repeat(get: Callable[[RepeatMetrics], float | None]) -> Values:
    def values(r: Result) -> list[float]:
        return [v for rep in r.repeats.per_repeat if (v := get(rep)) is not None]

    return values


def _wh_per_1k(r: Result) -> list[float]:
    """Per repeat: energy (Wh) per 1,000 requests of that repeat's window."""
    per = r.tokens.requests / max(len(r.repeats.per_repeat), 1)
    return [e / 3.6 / per for e in _per_repeat(lambda m: m.energy_j)(r) if per]


def _estimate(r: Result) -> list[float]:
    """Per repeat: CodeCarbon's modelled energy of the window (J)."""
    out = []
    for rep in r.repeats.per_repeat:
        found = [
            x.energy_j
            for x in r.energy.readings
            if x.meter == "codecarbon" and x.window == f"repeat-{rep.repeat}"
        ]
        if found and all(v is not None for v in found):
            out.append(sum(v for v in found if v is not None))
    return out


METRICS: tuple[Compared, ...] = (
    Compared(BY_NAME["output_tokens_per_s"], "higher", "output throughput", "has",
             _per_repeat(lambda m: m.output_tokens_per_s)),
    Compared(BY_NAME["total_tokens_per_s"], "higher", "total throughput", "has",
             _per_repeat(lambda m: m.total_tokens_per_s)),
    Compared(BY_NAME["energy_per_output_token_j"], "lower", "energy per output token", "uses",
             _per_repeat(lambda m: m.energy_per_output_token_j)),
    Compared(BY_NAME["energy_total_j"], "lower", "energy", "uses",
             _per_repeat(lambda m: m.energy_j)),
    Compared(BY_NAME["wh_per_1k_requests"], "lower", "energy per 1k requests", "uses",
             _wh_per_1k),
    Compared(BY_NAME["codecarbon_estimate_j"], "lower", "modelled energy (CodeCarbon)", "uses",
             _estimate),
    Compared(BY_NAME["ttft_p50_ms"], "lower", "TTFT p50", "is",
             _per_repeat(lambda m: m.ttft_p50_ms),
             lambda r: [q.ttft_ms for q in r.requests if q.ttft_ms is not None]),
    Compared(BY_NAME["itl_p50_ms"], "lower", "ITL p50", "is", _per_repeat(lambda m: m.itl_p50_ms)),
    Compared(BY_NAME["e2e_p50_ms"], "lower", "E2E p50", "is",
             _per_repeat(lambda m: m.e2e_p50_ms), lambda r: [q.e2e_ms for q in r.requests]),
)  # fmt: skip


class MetricComparison(BaseModel):
    """One key metric of A and B, their difference and its verdict."""

    name: str
    label: str
    noun: str = Field(description="what the verdict calls the metric")
    unit: str
    better: Better
    a: float | None
    b: float | None
    difference_pct: float | None = Field(description="(B - A) / A of the headline values, %")
    interval: RatioInterval | None = Field(description="B/A with its 95% interval")
    outcome: Outcome
    verdict: str


def contention(a: Result, b: Result, names: tuple[str, str]) -> str | None:
    """``'A was contended (other processes used 0.97 cores)'`` for each contended side, or None."""
    parts = [
        f"{name} was contended (other processes used {other_cores(r) or 0:.2f} cores)"
        for name, r in zip(names, (a, b), strict=True)
        if contended(r)
    ]
    return "; ".join(parts) or None


def interval_of(spec: Compared, a: Result, b: Result) -> RatioInterval:
    """Per-request bootstrap where both runs kept enough requests, else Welch over repeats (its
    reason, when neither suffices, names both)."""
    if spec.requests is None:
        return log_welch(spec.repeats(a), spec.repeats(b))
    ra, rb = spec.requests(a), spec.requests(b)
    if min(len(ra), len(rb)) >= MIN_REQUESTS:
        return bootstrap_median_ratio(ra, rb)
    iv = log_welch(spec.repeats(a), spec.repeats(b))
    if iv.reason is not None:
        iv.reason = f"fewer than {MIN_REQUESTS} requests and {iv.reason}"
    return iv


def _pct(x: float) -> str:
    return f"{abs(x) * 100:.1f}" if abs(x) < 0.1 else f"{abs(x) * 100:.0f}"


def _signed(x: float) -> str:
    return f"{'-' if x < 0 else '+'}{_pct(x)}%"


def span(iv: RatioInterval) -> str:
    """The interval as percent differences, ``'-4% to +6%'`` ('' without one)."""
    if iv.low is None or iv.high is None:
        return ""
    return f"{_signed(iv.low - 1)} to {_signed(iv.high - 1)}"


def words(spec: Compared, name: str, iv: RatioInterval) -> tuple[Outcome, str]:
    """The verdict for a significant interval: ``'B uses 23% less energy per output token (95% CI
    18–28%): better'``."""
    assert iv.ratio is not None and iv.low is not None and iv.high is not None
    up = iv.low > 1
    size, near, far = (
        (iv.ratio - 1, iv.low - 1, iv.high - 1) if up else (1 - iv.ratio, 1 - iv.high, 1 - iv.low)
    )
    ci = f"95% CI {_pct(near)}–{_pct(far)}%"
    if spec.shape == "is":
        text = f"{name}'s {spec.noun} is {_pct(size)}% {'higher' if up else 'lower'} ({ci})"
    else:
        text = f"{name} {spec.shape} {_pct(size)}% {'more' if up else 'less'} {spec.noun} ({ci})"
    good = up == (spec.better == "higher")
    return ("better" if good else "worse"), f"{text}: {'better' if good else 'worse'}"


def judge(spec: Compared, a: Result, b: Result, names: tuple[str, str]) -> MetricComparison:
    """One metric of ``a`` (the reference) and ``b``, judged (``names``: what the text calls
    them)."""
    va, vb = spec.metric.of(a), spec.metric.of(b)
    fa = float(va) if isinstance(va, int | float) else None
    fb = float(vb) if isinstance(vb, int | float) else None
    iv: RatioInterval | None = None
    if fa is None or fb is None:
        missing = "either side" if fa is None and fb is None else names[0 if fa is None else 1]
        outcome: Outcome = "not measured"
        text = f"not measured on {missing}"
    else:
        iv = interval_of(spec, a, b)
        note = contention(a, b, names)
        if note is not None:
            outcome, text = "not comparable", f"not comparable: {note}"
        elif iv.reason is not None:
            outcome, text = "no interval", f"no interval: {iv.reason}"
        elif not iv.significant:
            outcome, text = (
                "no significant difference",
                f"no significant difference (95% CI {span(iv)})",
            )
        else:
            outcome, text = words(spec, names[1], iv)
    return MetricComparison(
        name=spec.metric.name,
        label=spec.metric.label,
        noun=spec.noun,
        unit=spec.metric.unit,
        better=spec.better,
        a=fa,
        b=fb,
        difference_pct=(fb - fa) / fa * 100 if fa and fb is not None else None,
        interval=iv,
        outcome=outcome,
        verdict=text,
    )


def judge_all(a: Result, b: Result, names: tuple[str, str] = ("A", "B")) -> list[MetricComparison]:
    """Every compared metric of ``a`` and ``b``."""
    return [judge(spec, a, b, names) for spec in METRICS]
