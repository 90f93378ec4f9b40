"""``timeseries.png``: one picture of a run, drawn from ``timeseries.parquet`` without a display.

Panels share one time axis (seconds since the first sample, ``time_unix_s``): power per device (W)
when any meter gave a power series, else the words "no power meter"; GPU SM utilisation (%) when a
GPU was sampled; CPU in % of one core (100 = one core busy): llem's process and other processes
(``other_cpu_pct``), with the contention threshold dotted; memory (process RSS and GPU memory, GB).
Phases (baseline, warm-up, cool-down, prefill, FLOP pass) are shaded from the samples' ``phase``;
measured windows (``repeat-*``, and ``prefill``) from the meters' own window boundaries (the
readings' start and end, :func:`window_spans`) when the run had a meter, and outlined. A line with
more samples than :data:`MAX_POINTS` is thinned to every k-th sample (the picture is 1,000 pixels
wide): a 10-minute run draws in well under a second.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from itertools import groupby
from math import ceil
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from llem.hostcpu import CONTENTION_CORES
from llem.paths import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

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
CPU_LABEL = "CPU (% of one core)"  # 100 = one core busy
OTHER_CPU = "other processes' CPU"
SPANS_KEY = "llem:spans"  # PNG text chunk: the shaded spans as JSON

MeterWindow = tuple[str, float, float]  # (window, start, end): one meter reading (Unix seconds)
Span = tuple[str, float, float]  # (phase, start, end): seconds since the first sample
Columns = dict[str, list[float | int | str | None]]
Points = list[tuple[float, float]]


def _line(points: Points) -> tuple[list[float], list[float]]:
    """(xs, ys) of ``points``, thinned to at most :data:`MAX_POINTS`."""
    step = max(1, ceil(len(points) / MAX_POINTS))
    kept = points[::step]
    return [p[0] for p in kept], [p[1] for p in kept]


def _phase_spans(times: Sequence[float], phases: Sequence[str]) -> list[Span]:
    """(phase, start, end) for each run of equal phases; a span ends where the next one starts."""
    spans: list[Span] = []
    i = 0
    for phase, group in groupby(phases):
        n = len(list(group))
        start = times[i]
        end = times[i + n] if i + n < len(times) else times[i + n - 1]
        spans.append((phase, start, end))
        i += n
    return spans


def window_spans(windows: Iterable[MeterWindow], t0: float) -> list[Span]:
    """Each window's span on the plot's axis (seconds since ``t0``, the first sample's Unix time):
    from the earliest start to the latest end of its meters' readings, in window order."""
    bounds: dict[str, tuple[float, float]] = {}
    for name, start, end in windows:
        lo, hi = bounds.get(name, (start, end))
        bounds[name] = (min(lo, start), max(hi, end))
    return [(name, lo - t0, hi - t0) for name, (lo, hi) in bounds.items()]


def plot_spans(times: Sequence[float], phases: Sequence[str], metered: list[Span]) -> list[Span]:
    """The spans drawn: the samples' phases, where a phase the meters measured is replaced by its
    meters' span (``metered``, from :func:`window_spans`) and the others are cut where they would
    overlap one; in time order."""
    done = {name for name, _, _ in metered}
    sampled: list[Span] = []
    for phase, start, end in _phase_spans(times, phases):
        for _, m_start, m_end in metered:  # a sampled phase yields to a metered window
            start = m_end if m_start <= start < m_end else start
            end = m_start if m_start < end <= m_end else end
        if phase not in done and end > start:
            sampled.append((phase, start, end))
    return sorted(sampled + metered, key=lambda s: s[1])


def first_sample_s(cols: Columns) -> float:
    """The plot's time origin: the first sample's ``time_unix_s``."""
    return min(float(t) for t in cols["time_unix_s"] if isinstance(t, int | float))


def _series(cols: Columns, device: str, name: str, scale: float = 1.0) -> Points:
    """(seconds since the first sample, value x ``scale``) of ``device``'s non-null ``name``."""
    if name not in cols:
        return []
    t0 = first_sample_s(cols)
    return [
        (float(t) - t0, float(v) * scale)
        for t, dev, v in zip(cols["time_unix_s"], cols["device"], cols[name], strict=True)
        if dev == device and isinstance(v, int | float) and isinstance(t, int | float)
    ]


def _draw_cpu(ax: Axes, cols: Columns) -> None:
    """llem's and other processes' CPU, % of one core; the contention threshold dotted."""
    if own := _series(cols, "process", "cpu_util_pct"):
        ax.plot(*_line(own), label="llem process CPU", lw=1, color="#444444")
    if other := _series(cols, "process", "other_cpu_pct"):
        ax.plot(*_line(other), label=OTHER_CPU, lw=1, color="tab:red")
    ax.axhline(
        CONTENTION_CORES * 100,
        color="tab:red",
        lw=0.8,
        ls=":",
        label=f"contention threshold ({CONTENTION_CORES:g} cores)",
    )
    ax.set_ylabel(CPU_LABEL)
    ax.set_ylim(bottom=0)


def _draw_devices(axes: dict[str, Axes], cols: Columns) -> None:
    """Power, SM utilisation and memory per GPU; llem's RSS; "no power meter" without power."""
    has_power = False
    for dev in sorted({str(d) for d in cols["device"]} - {"process", "server"}):
        if pts := _series(cols, dev, "power_w"):
            has_power = True
            axes["power"].plot(*_line(pts), label=f"{dev} power", lw=1)
        if "gpu" in axes and (util := _series(cols, dev, "sm_util_pct")):
            axes["gpu"].plot(*_line(util), label=f"{dev} SM util", lw=1)
        if mem := _series(cols, dev, "memory_used_bytes", 1e-9):
            axes["memory"].plot(*_line(mem), label=f"{dev} memory used", lw=1)
    if rss := _series(cols, "process", "rss_bytes", 1e-9):
        axes["memory"].plot(*_line(rss), label="llem process RSS", lw=1, color="#444444")
    if not has_power:
        axes["power"].text(
            0.5,
            0.5,
            "no power meter",
            ha="center",
            va="center",
            transform=axes["power"].transAxes,
            fontsize=14,
            color="#888888",
        )
        axes["power"].set_yticks([])


def _shade(axes: Iterable[Axes], spans: list[Span]) -> None:
    """Phases shaded, measured windows shaded and outlined."""
    for ax in axes:
        for phase, start, end in spans:
            if phase.startswith("repeat"):
                ax.axvspan(start, end, color=_WINDOW_COLOUR, alpha=0.6, lw=0, gid=phase)
                ax.axvline(start, color="#1f77b4", lw=0.8, ls="--")
                ax.axvline(end, color="#1f77b4", lw=0.8, ls="--")
            elif phase in _PHASE_COLOURS:
                ax.axvspan(start, end, color=_PHASE_COLOURS[phase], alpha=0.6, lw=0, gid=phase)


def _name_phases(ax: Axes, spans: list[Span]) -> None:
    shown = [(p, s, e) for p, s, e in spans if p != "idle" and e > s]
    top = ax.secondary_xaxis("top")
    top.set_xticks([(s + e) / 2 for _, s, e in shown])
    top.set_xticklabels(
        [p if not p.startswith("repeat") else f"{p} (measured)" for p, _, _ in shown],
        fontsize=7,
        rotation=20,
    )


def _phases(cols: Columns) -> tuple[list[float], list[str]]:
    """Sample times (Unix s) and phases of the process rows (of all rows when there are none)."""
    rows = [
        (float(t), str(p), d)
        for t, p, d in zip(cols["time_unix_s"], cols["phase"], cols["device"], strict=True)
        if isinstance(t, int | float)
    ]
    ref = [r for r in rows if r[2] == "process"] or rows
    return [t for t, _, _ in ref], [p for _, p, _ in ref]


def run_figure(parquet: Path, windows: Sequence[MeterWindow] = ()) -> Figure | None:
    """The figure of the series in ``parquet``, measured windows from the meters' ``windows``;
    None without rows."""
    table = pq.ParquetFile(parquet).read()  # not read_table: it imports pyarrow.dataset
    if table.num_rows == 0:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols: Columns = table.to_pydict()
    names = ["power"] + (["gpu"] if any(cols.get("sm_util_pct") or []) else []) + ["cpu", "memory"]
    fig = Figure(figsize=(10, 2.3 * len(names) + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = dict(
        zip(names, fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0], strict=True)
    )
    _draw_devices(axes, cols)
    _draw_cpu(axes["cpu"], cols)
    t0 = first_sample_s(cols)
    times, phases = _phases(cols)
    spans = plot_spans([t - t0 for t in times], phases, window_spans(windows, t0))
    _shade(axes.values(), spans)
    _name_phases(axes["power"], spans)
    axes["power"].set_ylabel("power (W)")
    if "gpu" in axes:
        axes["gpu"].set_ylabel("GPU SM utilisation (%)")
    axes["memory"].set_ylabel("memory (GB)")
    axes["memory"].set_xlabel("time since first sample (s)")
    for ax in axes.values():
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_run_plot(parquet: Path, out: Path, windows: Sequence[MeterWindow] = ()) -> Path | None:
    """Draw ``out`` from the series in ``parquet`` and the meters' ``windows``; ``None`` (nothing
    written) without rows. The shaded spans, [phase, start, end] in seconds since the first
    sample, are written into the PNG as the text chunk :data:`SPANS_KEY` (JSON)."""
    fig = run_figure(parquet, windows)
    if fig is None:
        return None
    spans = json.dumps([[p.get_gid(), p.get_x(), p.get_x() + p.get_width()] for p in _spans(fig)])
    with atomic_path(out) as tmp:  # a full disk leaves no half picture
        fig.savefig(tmp, format="png", metadata={SPANS_KEY: spans})
    return out


def _spans(fig: Figure) -> list[Rectangle]:
    """The shaded spans of the figure's first panel (``gid`` = phase)."""
    from matplotlib.patches import Rectangle

    return [p for p in fig.axes[0].patches if isinstance(p, Rectangle) and p.get_gid()]
