"""The short table printed at the end of a run: one line per headline, one line per energy meter
(reading, what it covers, method; or why it is null). The full reasons stay in ``result.json``."""

from __future__ import annotations

import re
from pathlib import Path

from llem.benchmarks import summary_line
from llem.keymetrics import BY_NAME, CI_METRICS
from llem.result import ENERGY_NOT_MEASURED, Distribution, EnergyMetrics, EnergyReading, Result
from llem.stats import Interval

THROUGHPUT = tuple(
    BY_NAME[n] for n in ("output_tokens_per_s", "total_tokens_per_s", "requests_per_s")
)


def _dist(d: Distribution | None) -> str:
    return (
        "n/a"
        if d is None
        else f"mean {d.mean:.2f}  p50 {d.p50:.2f}  p90 {d.p90:.2f}  p99 {d.p99:.2f}"
    )


def _si(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _milli(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1e3:.4g}"


def short_reason(reason: str) -> str:
    """The first clause of a reason, on one line (the full text is in result.json)."""
    return re.split(r" \(|; |\n", reason.strip(), maxsplit=1)[0]


def meter_lines(e: EnergyMetrics) -> list[tuple[str, str]]:
    """(label, text) per meter and device over the measured windows: the reading, what it covers
    and how; or why it is null."""
    groups: dict[tuple[str, str], list[EnergyReading]] = {}
    for r in e.readings:
        if r.window.startswith("repeat-"):
            groups.setdefault((r.meter, r.device), []).append(r)
    per_meter = [meter for meter, _ in groups]
    lines = []
    for (meter, device), readings in groups.items():
        values = [r.energy_j for r in readings]
        first = readings[0]
        if all(v is not None for v in values):
            total = sum(v for v in values if v is not None)
            text = f"{total:.3f} J ({first.covers}, {first.method})"
            if meter == "codecarbon" and e.co2 and e.co2.emissions_kg_co2eq is not None:
                co2 = e.co2.emissions_kg_co2eq * 1e3
                text += f", {co2:.4g} g CO2-eq modelled ({e.co2.country_iso_code})"
        else:
            why = next((r.reason for r in readings if r.reason), "no reading")
            text = f"null: {short_reason(why)} ({first.covers})"
        label = meter if per_meter.count(meter) == 1 else f"{meter} {device}"
        lines.append((f"  {label}", text))
    return lines


def print_summary(result: Result, path: Path) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    m, t, e = result.model, result.tokens, result.energy
    table = Table(
        title=f"llem: {m.name_or_path} on {m.device} ({m.dtype})",
        show_header=False,
        title_justify="left",
    )
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "requests / tokens",
        f"{t.requests} requests, {t.input} in + {t.output} out = {t.total} tokens",
    )
    table.add_row(
        "measured window",
        f"{result.timing.measured_window_s:.3f} s "
        f"(model load {result.timing.model_load_s:.2f} s, not included)",
    )
    table.add_row("throughput", ", ".join(m.format(m.of(result)) for m in THROUGHPUT))
    table.add_row("TTFT (ms)", _dist(result.latency.ttft_ms))
    table.add_row("ITL (ms)", _dist(result.latency.itl_ms))
    table.add_row("E2E (ms)", _dist(result.latency.e2e_ms))
    table.add_row("peak memory", f"{_si(result.memory.peak_bytes, 'B')} ({result.memory.measured})")
    if result.host_cpu is not None:
        table.add_row("CPU threads", threads_line(result))
    f = result.flops
    table.add_row(
        "FLOPs / output token",
        f"{_si(f.window_per_output_token, 'FLOP')} (closed form, all "
        f"{f.window_batches or '?'} measured batches)",
    )
    if f.counted_batches:
        table.add_row(
            "  check",
            f"{_si(f.counted_per_output_token, 'FLOP')} counted vs "
            f"{_si(f.analytic_per_output_token, 'FLOP')} closed form on the {f.counted_batches} "
            f"re-run batch{'es' if f.counted_batches > 1 else ''}",
        )
    if e.total_j is not None:
        table.add_row(
            "energy",
            Text(
                f"{e.total_j:.3f} J ({e.covers}; {', '.join(e.meters)}, {e.method}), "
                f"{_milli(e.per_output_token_j)} mJ/output token, "
                f"{e.wh_per_1k_requests:.4g} Wh/1k requests, {e.average_power_w:.1f} W"
            ),
        )
        if e.adjusted_total_j is not None:
            table.add_row("  minus idle baseline", f"{e.adjusted_total_j:.3f} J (secondary)")
    else:
        why = short_reason(e.reason or "no meter")
        below = "; CodeCarbon's modelled estimate below" if e.estimate_j is not None else ""
        table.add_row("energy", Text(f"not measured: {why} (reason in result.json){below}"))
    for label, text in meter_lines(e):
        table.add_row(label, Text(text))
    if result.benchmark is not None:
        table.add_row("benchmark", Text(summary_line(result.benchmark)))
    if len(result.repeats.per_repeat) > 1:
        for metric in CI_METRICS:
            iv = result.repeats.stats.get(metric.name)
            if iv is not None:
                table.add_row(f"{metric.unit} over {iv.n} repeats", interval_text(iv))
    Console().print(table)
    for w in result.warnings:
        if w.startswith(ENERGY_NOT_MEASURED):  # the table's energy line says it in one line
            continue
        Console(stderr=True).print(Text("warning: ", style="yellow") + Text(w), highlight=False)
    print(f"result: {path}")


def interval_text(iv: Interval) -> str:
    """``'893.1 geometric mean (95% CI 655 .. 1132, t on log scale)'``, or the point and why
    there is no interval (``'56.71 geometric mean; too few repeats for an interval (2 < 3)'``)."""
    if iv.ci95_low is None or iv.ci95_high is None:
        return f"{iv.point:.4g} {iv.estimate}; {iv.reason}"
    scale = "t on log scale" if iv.estimate == "geometric mean" else "t"
    return f"{iv.point:.4g} {iv.estimate} (95% CI {iv.ci95_low:.4g} .. {iv.ci95_high:.4g}, {scale})"


def threads_line(result: Result) -> str:
    """``'2 intra-op, 2 inter-op (OMP_NUM_THREADS); other processes 0.03 cores'``."""
    h = result.host_cpu
    if h is None:
        return "n/a"
    rule = f" ({h.policy.rule})" if h.policy else ""
    text = f"{h.torch_threads} intra-op, {h.torch_interop_threads} inter-op{rule}"
    text += f" on {h.physical_cores} physical / {h.logical_cores} logical cores"
    other = BY_NAME["other_cpu_cores"].of(result)
    if isinstance(other, float):
        text += f"; other processes {other:.2f} cores"
        text += " (contended)" if BY_NAME["contended"].of(result) is True else ""
    return text
