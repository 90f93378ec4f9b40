"""The study's charts (matplotlib, imported here only, Agg canvas).

``study_pareto.png``, the trade-off at a glance:

- When some job measured energy: energy per output token against output tokens/s, the Pareto front
  marked (higher throughput and lower J/token are better). With no hardware meter in any job but
  CodeCarbon's estimate, the same chart from that estimate, its axis labelled "modelled estimate".
- Otherwise, and in addition when exactly one parameter is swept: output tokens/s against that
  parameter (against the job when several are swept).
- A load sweep (served runs, ``backend=openai``): J per output token, and E2E latency p50/p99,
  against the achieved output throughput of each job's steady-state window, one point per job (per
  rate); the job with the lowest J/token among those meeting the SLOs is starred and named
  (:func:`best_load_row`).

``study_latency.png``: p50 and p99 latency (TTFT when measured, else E2E; ms) against output
tokens/s; each job's p50 and p99 joined by a grey segment and labelled once by its swept values,
where the label overlaps no other label nor marker (a leader line when it had to move).

Every chart's point labels are placed the same way (:mod:`llem.study.labels`).

A job whose measured windows were CPU-contended (summary column ``contended``: other processes used
more than :data:`llem.hostcpu.CONTENTION_CORES` cores) is framed by a red square in every chart,
with one legend entry.

Error bars are the 95% intervals across repeats (jobs with repeats >= 3). No completed
job: no png.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llem.hostcpu import CONTENTION_CORES
from llem.paths import atomic_path
from llem.study.labels import arrange_axes_labels, label, marker_boxes, place_labels
from llem.study.table import Cell, Row, pareto_front

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

MAX_LABELS = 30
CONTENDED_LABEL = f"CPU contended (other processes > {CONTENTION_CORES:g} cores)"
MARKER_MS = 6  # the latency chart's markers (points)
CONTENDED_MS = 13  # square round a contended job's markers (points)
SLO_ATTAINMENT = 0.99  # a served job meets its SLOs when this share of its requests does


def _col(row: Row, key: str) -> str:
    return key if key in row else f"param.{key}"


def _contended(row: Row) -> bool:
    """True for a job whose measured windows other processes' CPU contended."""
    return row.get("contended") is True


def _mark_contended(ax: Axes, rows: list[Row], points: list[tuple[float, float]]) -> None:
    """A red square round each point of a contended job, with one legend entry."""
    ring = [p for r, p in zip(rows, points, strict=True) if _contended(r)]
    if ring:
        ax.plot(
            [x for x, _ in ring],
            [y for _, y in ring],
            "s",
            ms=CONTENDED_MS,
            mfc="none",
            mec="tab:red",
            mew=1.6,
            label=CONTENDED_LABEL,
            zorder=3,
        )


def _label(row: Row, swept: list[str]) -> str:
    parts = [f"{k.rsplit('.', 1)[-1]}={row.get(_col(row, k))}" for k in swept[:3]]
    return ", ".join(parts) if parts else f"#{row['num']}"


def _num(row: Row, name: str) -> float | None:
    """A numeric cell as a float (None when empty or not a number)."""
    value = row.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _nums(rows: list[Row], name: str) -> list[float]:
    return [v for v in (_num(r, name) for r in rows) if v is not None]


def _err(rows: list[Row], name: str) -> list[list[float]] | None:
    """Asymmetric error bars [[below...], [above...]] from the 95% CI; None when no row has one."""
    below: list[float] = []
    above: list[float] = []
    any_ci = False
    for r in rows:
        value, low, high = _num(r, name), _num(r, f"{name}_ci95_low"), _num(r, f"{name}_ci95_high")
        if value is None or low is None or high is None:
            below.append(0.0)
            above.append(0.0)
            continue
        any_ci = True
        below.append(max(value - low, 0.0))
        above.append(max(high - value, 0.0))
    return [below, above] if any_ci else None


MEASURED = "energy_per_output_token_j"
MODELLED = "codecarbon_estimate_per_output_token_j"


def _energy_column(rows: list[Row]) -> str | None:
    """The J/token column the Pareto chart uses: measured when any job has it, else modelled."""
    for name in (MEASURED, MODELLED):
        if any(_num(r, name) is not None for r in rows):
            return name
    return None


def _pareto_panel(ax: Axes, rows: list[Row], swept: list[str]) -> None:
    column = _energy_column(rows) or MEASURED
    pts = [r for r in rows if _num(r, column) is not None]
    xs, ys = _nums(pts, "output_tokens_per_s"), _nums(pts, column)
    ax.errorbar(
        xs,
        ys,
        xerr=_err(pts, "output_tokens_per_s"),
        yerr=_err(pts, column),
        fmt="o",
        color="tab:blue",
        ecolor="lightsteelblue",
        ms=5,
        label="job",
        zorder=2,
    )
    _mark_contended(ax, pts, list(zip(xs, ys, strict=True)))
    front = pareto_front(list(zip(xs, ys, strict=True)))
    ax.plot(
        [xs[i] for i in front],
        [ys[i] for i in front],
        "-o",
        color="tab:red",
        ms=7,
        mfc="none",
        mew=1.5,
        label="Pareto front",
        zorder=3,
    )
    if len(pts) <= MAX_LABELS:
        for r, x, y in zip(pts, xs, ys, strict=True):
            label(ax, _label(r, swept), (x, y))  # placed by arrange_axes_labels
    covers = next((r["energy_covers"] for r in pts if r.get("energy_covers")), None)
    if column == MODELLED:
        covers = "modelled estimate, CodeCarbon"
    ax.set_xlabel("output tokens/s (higher is better)")
    ax.set_ylabel(f"J per output token{f' ({covers})' if covers else ''}\n(lower is better)")
    ax.set_title("Energy per token vs throughput" + (" (modelled)" if column == MODELLED else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _param_panel(ax: Axes, rows: list[Row], swept: list[str]) -> None:
    if len(swept) == 1:
        key = swept[0]
        col = _col(rows[0], key)
        pts = [r for r in rows if r.get(col) is not None]
        numbers = _nums(pts, col)
        numeric = len(numbers) == len(pts)
        values: list[Cell] = [r[col] for r in pts]
        title, xlabel = f"Throughput vs {key}", key
    else:
        pts, numbers, numeric = rows, [], False
        values = [_label(r, swept) for r in rows] if swept else [r["num"] for r in rows]
        title, xlabel = "Throughput per job", "job"
    if not pts:
        return
    xs: list[float]
    if numeric:
        order = sorted(range(len(pts)), key=lambda i: numbers[i])
        pts, xs = [pts[i] for i in order], [numbers[i] for i in order]
        if min(xs) > 0 and max(xs) / min(xs) >= 16:
            ax.set_xscale("log", base=2)
        if len(set(xs)) <= 20:
            ax.set_xticks(sorted(set(xs)), [f"{x:g}" for x in sorted(set(xs))])
    else:
        labels = list(dict.fromkeys(str(v) for v in values))
        where = {label: i for i, label in enumerate(labels)}
        xs = [float(where[str(v)]) for v in values]
        if len(labels) <= MAX_LABELS:
            ax.set_xticks(
                range(len(labels)),
                labels,
                rotation=30 if len(labels) > 4 else 0,
                ha="right" if len(labels) > 4 else "center",
                fontsize=8,
            )
    ys = [_num(r, "output_tokens_per_s") or 0.0 for r in pts]
    ax.errorbar(
        xs,
        ys,
        yerr=_err(pts, "output_tokens_per_s"),
        fmt="-o" if numeric else "o",
        color="tab:blue",
        ecolor="lightsteelblue",
        capsize=3,
        ms=5,
    )
    _mark_contended(ax, pts, list(zip(xs, ys, strict=True)))
    if any(_contended(r) for r in pts):
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("output tokens/s")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)


def _served(rows: list[Row]) -> list[Row]:
    """Jobs with a steady-state window, by achieved throughput."""
    pts = [r for r in rows if _num(r, "steady_output_tokens_per_s") is not None]
    return sorted(pts, key=lambda r: _num(r, "steady_output_tokens_per_s") or 0.0)


def best_load_row(rows: list[Row]) -> Row | None:
    """The served job with the lowest steady J/output token among those meeting the SLOs (at least
    ``SLO_ATTAINMENT`` of their requests; every job when no SLO was set); None without energy."""
    ok = [
        r
        for r in _served(rows)
        if _num(r, "steady_energy_per_output_token_j") is not None
        and (_num(r, "steady_slo_attainment") or 1.0) >= SLO_ATTAINMENT
    ]
    return min(ok, key=lambda r: _num(r, "steady_energy_per_output_token_j") or 0.0, default=None)


def _load_energy_panel(ax: Axes, rows: list[Row], swept: list[str]) -> None:
    pts = [r for r in _served(rows) if _num(r, "steady_energy_per_output_token_j") is not None]
    xs = _nums(pts, "steady_output_tokens_per_s")
    ys = _nums(pts, "steady_energy_per_output_token_j")
    ax.plot(xs, ys, "-o", color="tab:blue", ms=5)
    _mark_contended(ax, pts, list(zip(xs, ys, strict=True)))
    for r, x, y in zip(pts, xs, ys, strict=True):
        label(ax, _label(r, swept), (x, y))  # placed by arrange_axes_labels
    best = best_load_row(rows)
    if best is not None:
        ax.plot(
            _nums([best], "steady_output_tokens_per_s"),
            _nums([best], "steady_energy_per_output_token_j"),
            "*",
            color="tab:red",
            ms=14,
            label=f"lowest J/token meeting the SLOs: {_label(best, swept)}",
        )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    if not pts:
        ax.text(0.5, 0.5, "energy not measured", ha="center", transform=ax.transAxes)
    ax.set_xlabel("achieved output tokens/s (steady window)")
    ax.set_ylabel("J per output token (steady window)")
    ax.set_title("Energy per token vs load")
    ax.grid(True, alpha=0.3)


def _load_latency_panel(ax: Axes, rows: list[Row], swept: list[str]) -> None:
    pts = _served(rows)
    xs = _nums(pts, "steady_output_tokens_per_s")
    marked: list[tuple[Row, tuple[float, float]]] = []
    for name, style in (("steady_e2e_p50_ms", "-o"), ("steady_e2e_p99_ms", "--s")):
        got = [
            (r, (x, y)) for x, r in zip(xs, pts, strict=True) if (y := _num(r, name)) is not None
        ]
        ax.plot(
            [p[0] for _, p in got], [p[1] for _, p in got], style, ms=5, label=name.split("_")[2]
        )
        marked += got
    _mark_contended(ax, [r for r, _ in marked], [p for _, p in marked])
    ax.set_xlabel("achieved output tokens/s (steady window)")
    ax.set_ylabel("E2E latency (ms)")
    ax.set_title("Latency vs load")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def write_plot(path: Path, rows: list[Row], swept: list[str]) -> bool:
    """Draw ``path`` from the summary rows; False (nothing written) when no job completed."""
    fig = study_figure(rows, swept, path.parent.name)
    if fig is None:
        return False
    _save(fig, path)
    return True


def study_figure(rows: list[Row], swept: list[str], study: str) -> Figure | None:
    """The ``study_pareto.png`` chart of ``rows`` (see the module docstring); None when no job
    completed."""
    done = [r for r in rows if r.get("status") == "ok" and r.get("output_tokens_per_s") is not None]
    if not done:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    has_energy = _energy_column(done) is not None
    panels = ([_pareto_panel] if has_energy else []) + (
        [_param_panel] if len(swept) == 1 or not has_energy else []
    )
    if _served(done):  # a load sweep: its own two panels
        panels = [_load_energy_panel, _load_latency_panel]
    fig = Figure(figsize=(6.4 * len(panels), 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels):
        panel(fig.add_subplot(1, len(panels), i + 1), done, swept)
    fig.suptitle(
        f"llem study: {study}, {len(done)} completed job{'s' if len(done) != 1 else ''}",
        fontsize=10,
    )
    fig.canvas.draw()  # settle the layout, then freeze it: labels are placed in pixels
    fig.set_layout_engine("none")
    for ax in fig.axes:
        arrange_axes_labels(ax, CONTENDED_MS)
    return fig


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _draw_latency(
    ax: Axes, done: list[Row], kind: str
) -> tuple[list[tuple[float, float]], list[Row], list[Line2D]]:
    """Each job's p50 and p99 markers joined by a segment, contended jobs framed: returns the
    marker points (all p50s, then the p99s), their rows and the joining segments."""
    xs = _nums(done, "output_tokens_per_s")
    p50 = _nums(done, f"{kind}_p50_ms")
    p99 = [
        (r, x, lo, hi)
        for r, x, lo in zip(done, xs, p50, strict=True)
        if (hi := _num(r, f"{kind}_p99_ms")) is not None
    ]
    joins = [
        ax.plot([x, x], [lo, hi], "-", color="0.6", lw=1.2, zorder=1.8)[0] for _, x, lo, hi in p99
    ]
    for line, p in zip(joins, p99, strict=True):
        line.set_gid(f"p50-p99 #{p[0]['num']}")
    ax.plot(xs, p50, "o", ms=MARKER_MS, color="tab:blue", label=f"{kind.upper()} p50", zorder=2)
    if p99:
        ax.plot(
            [p[1] for p in p99],
            [p[3] for p in p99],
            "^",
            ms=MARKER_MS,
            color="tab:orange",
            label=f"{kind.upper()} p99",
            zorder=2,
        )
    points = list(zip(xs, p50, strict=True)) + [(p[1], p[3]) for p in p99]
    marked = done + [p[0] for p in p99]
    _mark_contended(ax, marked, points)
    return points, marked, joins


def latency_figure(rows: list[Row], swept: list[str], study: str) -> Figure | None:
    """The latency chart of ``rows`` (see the module docstring); None when no completed job has a
    latency. Each job's p50 and p99 are joined by a grey segment (``gid`` "p50-p99 #<num>") and
    labelled once, where the label overlaps nothing (:func:`llem.study.labels.place_labels`)."""
    kind = "ttft" if any(_num(r, "ttft_p50_ms") is not None for r in rows) else "e2e"
    done = [
        r
        for r in rows
        if r.get("status") == "ok"
        and _num(r, "output_tokens_per_s") is not None
        and _num(r, f"{kind}_p50_ms") is not None
    ]
    if not done:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    points, marked, joins = _draw_latency(ax, done, kind)
    ax.margins(0.12, 0.15)
    ax.set_xlabel("output tokens/s (higher is better)")
    ax.set_ylabel(f"{kind.upper()} (ms, lower is better)")
    ax.set_title(f"Latency vs throughput ({'time to first token' if kind == 'ttft' else 'E2E'})")
    ax.grid(True, alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, fontsize=8)
    fig.suptitle(f"llem study: {study}, {len(done)} completed jobs", fontsize=10)
    fig.canvas.draw()  # settle the layout, then freeze it: labels are placed in pixels
    fig.set_layout_engine("none")
    if len(done) <= MAX_LABELS:
        labels = [(_label(r, swept), p) for r, p in zip(done, points, strict=False)]
        sizes = [float(CONTENDED_MS if _contended(r) else MARKER_MS) for r in marked]
        place_labels(ax, labels, marker_boxes(ax, points, sizes), joins)
    return fig


def write_latency_plot(path: Path, rows: list[Row], swept: list[str]) -> bool:
    """Draw ``path``: p50/p99 latency against output tokens/s; False (nothing written) when no
    completed job has a latency."""
    fig = latency_figure(rows, swept, path.parent.name)
    if fig is None:
        return False
    _save(fig, path)
    return True
