"""The short table printed at the end of a run."""

from __future__ import annotations

from pathlib import Path

from llem.benchmarks import summary_line
from llem.keymetrics import BY_NAME, CI_METRICS
from llem.result import Distribution, Result

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
    table.add_row(
        "FLOPs / output token",
        f"{_si(result.flops.counted_per_output_token, 'FLOP')} counted, "
        f"{_si(result.flops.analytic_per_output_token, 'FLOP')} analytic",
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
        table.add_row("energy", Text(f"not measured: {e.reason}"))
    if e.estimate_j is not None:
        co2 = (
            f", {e.co2.emissions_kg_co2eq * 1e3:.4g} g CO2-eq ({e.co2.country_iso_code})"
            if e.co2 and e.co2.emissions_kg_co2eq is not None
            else ""
        )
        table.add_row("CodeCarbon estimate", Text(f"{e.estimate_j:.3f} J modelled{co2}"))
    if result.benchmark is not None:
        table.add_row("benchmark", Text(summary_line(result.benchmark)))
    if len(result.repeats.per_repeat) > 1:
        for metric in CI_METRICS:
            iv = result.repeats.stats.get(metric.name)
            if iv is not None and iv.ci95_low is not None and iv.ci95_high is not None:
                table.add_row(
                    f"{metric.unit} over {iv.n} repeats",
                    f"{iv.mean:.4g} (95% CI {iv.ci95_low:.4g} .. {iv.ci95_high:.4g})",
                )
    Console().print(table)
    for w in result.warnings:
        Console(stderr=True).print(Text("warning: ", style="yellow") + Text(w), highlight=False)
    print(f"result: {path}")
