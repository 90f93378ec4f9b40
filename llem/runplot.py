"""``timeseries.png``: one picture of a run, drawn from ``timeseries.parquet`` without a display.

Panels share one time axis (seconds since the first sample): power per device (W) when any meter
gave a power series, else the words "no power meter"; utilisation (GPU SMs %, llem's process CPU %
where 100 = one core); memory (process RSS and GPU memory, GB). Phases (baseline, warm-up, each
repeat, cool-down, prefill, FLOP pass) are shaded and named; measured windows (``repeat-*``) are
outlined. A line with more samples than :data:`MAX_POINTS` is thinned to every k-th sample (the
picture is 1,000 pixels wide): a 10-minute run draws in well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from math import ceil
from pathlib import Path

import pyarrow.parquet as pq

from llem.paths import atomic_path

FILE = "timeseries.png"
_PHASE_COLOURS = {
    "baseline": "#d9d9d9",
    "warmup": "#fde0c5",
    "cooldown": "#e5e5f7",
    "prefill": "#d6f0e0",
    "flops": "#f3d6f0",
}
_WINDOW_COLOUR = "#cfe3f7"
MAX_POINTS = 2000  # samples drawn per line (2 per pixel column)
PRELOAD = ("matplotlib.figure", "matplotlib.backends.backend_agg")  # what drawing imports


def _line(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """(xs, ys) of ``points``, thinned to at most :data:`MAX_POINTS`."""
    step = max(1, ceil(len(points) / MAX_POINTS))
    kept = points[::step]
    return [p[0] for p in kept], [p[1] for p in kept]


def _phase_spans(times: Sequence[float], phases: Sequence[str]) -> list[tuple[str, float, float]]:
    """(phase, start, end) for each run of equal phases; a span ends where the next one starts."""
    spans: list[tuple[str, float, float]] = []
    i = 0
    for phase, group in groupby(phases):
        n = len(list(group))
        start = times[i]
        end = times[i + n] if i + n < len(times) else times[i + n - 1]
        spans.append((phase, start, end))
        i += n
    return spans


def write_run_plot(parquet: Path, out: Path) -> Path | None:
    """Draw ``out`` from the series in ``parquet``; ``None`` (nothing written) without rows."""
    table = pq.ParquetFile(parquet).read()  # not read_table: it imports pyarrow.dataset
    if table.num_rows == 0:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = table.to_pydict()
    t_abs: list[float] = cols["time_unix_s"]
    t0 = min(t_abs)
    rows = list(
        zip(
            [t - t0 for t in t_abs],
            cols["phase"],
            cols["device"],
            *(
                cols.get(k, [None] * table.num_rows)
                for k in (
                    "power_w",
                    "sm_util_pct",
                    "cpu_util_pct",
                    "rss_bytes",
                    "memory_used_bytes",
                )
            ),
            strict=True,
        )
    )
    devices = sorted({r[2] for r in rows})
    proc = [r for r in rows if r[2] == "process"]

    fig = Figure(figsize=(10, 7), dpi=100)
    FigureCanvasAgg(fig)
    ax_p, ax_u, ax_m = fig.subplots(3, 1, sharex=True)
    has_power = False
    for dev in devices:
        pts = [(r[0], r[3]) for r in rows if r[2] == dev and r[3] is not None]
        if pts:
            has_power = True
            ax_p.plot(*_line(pts), label=f"{dev} power", lw=1)
        util = [(r[0], r[4]) for r in rows if r[2] == dev and r[4] is not None]
        if util:
            ax_u.plot(*_line(util), label=f"{dev} SM util", lw=1)
        mem = [(r[0], r[7] / 1e9) for r in rows if r[2] == dev and r[7] is not None]
        if mem:
            ax_m.plot(*_line(mem), label=f"{dev} memory used", lw=1)
    if not has_power:
        ax_p.text(
            0.5,
            0.5,
            "no power meter",
            ha="center",
            va="center",
            transform=ax_p.transAxes,
            fontsize=14,
            color="#888888",
        )
        ax_p.set_yticks([])
    cpu = [(r[0], r[5]) for r in proc if r[5] is not None]
    if cpu:
        ax_u.plot(*_line(cpu), label="llem process CPU", lw=1, color="#444444")
    rss = [(r[0], r[6] / 1e9) for r in proc if r[6] is not None]
    if rss:
        ax_m.plot(*_line(rss), label="llem process RSS", lw=1, color="#444444")

    ref = proc or rows
    spans = _phase_spans([r[0] for r in ref], [r[1] for r in ref])
    for ax in (ax_p, ax_u, ax_m):
        for phase, start, end in spans:
            if phase.startswith("repeat"):
                ax.axvspan(start, end, color=_WINDOW_COLOUR, alpha=0.6, lw=0)
                ax.axvline(start, color="#1f77b4", lw=0.8, ls="--")
                ax.axvline(end, color="#1f77b4", lw=0.8, ls="--")
            elif phase in _PHASE_COLOURS:
                ax.axvspan(start, end, color=_PHASE_COLOURS[phase], alpha=0.6, lw=0)
    top = ax_p.secondary_xaxis("top")
    top.set_xticks([(s + e) / 2 for p, s, e in spans if p != "idle" and e > s])
    top.set_xticklabels(
        [
            p if not p.startswith("repeat") else f"{p} (measured)"
            for p, s, e in spans
            if p != "idle" and e > s
        ],
        fontsize=7,
        rotation=20,
    )
    ax_p.set_ylabel("power (W)")
    ax_u.set_ylabel("utilisation (%)")
    ax_m.set_ylabel("memory (GB)")
    ax_m.set_xlabel("time since first sample (s)")
    for ax in (ax_p, ax_u, ax_m):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out) as tmp:  # a full disk leaves no half picture
        fig.savefig(tmp, format="png")
    return out
