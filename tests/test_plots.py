"""The study's charts read at a glance: each job's p50 and p99 joined and labelled once, no two
labels overlapping (measured with matplotlib's renderer), contended jobs framed by a red square."""

from __future__ import annotations

import itertools
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from llem.runplot import plot_spans, window_spans
from llem.study.plot import (
    CONTENDED_LABEL,
    latency_figure,
    study_figure,
    write_latency_plot,
    write_plot,
)
from llem.study.table import Row


def _rows(n: int) -> list[Row]:
    """``n`` - 1 jobs with nearly equal throughput and latency, and one far away that stretches the
    axes: the first ``n`` - 1 labels all collide where first put."""
    return [
        {
            "num": i,
            "status": "ok",
            "param.batch": 2**i,
            "param.n": 8,
            "output_tokens_per_s": 100.0 + 0.05 * i if i < n - 1 else 160.0,
            "e2e_p50_ms": 50.0 + 0.1 * i if i < n - 1 else 30.0,
            "e2e_p99_ms": 80.0 + 0.5 * i,
            "energy_per_output_token_j": 0.5 + 0.001 * i,
            "contended": i in (1, 4),
        }
        for i in range(n)
    ]


def test_latency_labels_do_not_overlap_and_p50_p99_are_joined(tmp_path: Path) -> None:
    rows = _rows(7)
    fig = latency_figure(rows, ["batch", "n"], "crowded")
    assert fig is not None
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    (ax,) = fig.axes
    labels = [t for t in ax.texts if t.get_text()]
    assert sorted(t.get_text() for t in labels) == sorted(f"batch={2**i}, n=8" for i in range(7))
    boxes = [t.get_window_extent(renderer) for t in labels]
    frame = ax.get_window_extent(renderer)
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    assert all(frame.contains(b.x0, b.y0) and frame.contains(b.x1, b.y1) for b in boxes)
    joins = {line.get_gid(): line for line in ax.lines if str(line.get_gid()).startswith("p50")}
    assert sorted(joins) == [f"p50-p99 #{i}" for i in range(7)]
    for r in rows:
        line = joins[f"p50-p99 #{r['num']}"]
        assert list(line.get_xdata()) == [r["output_tokens_per_s"]] * 2
        assert list(line.get_ydata()) == [r["e2e_p50_ms"], r["e2e_p99_ms"]]
    (legend,) = fig.legends
    assert CONTENDED_LABEL in [t.get_text() for t in legend.get_texts()]
    assert "0.25 cores" in CONTENDED_LABEL
    ring = next(line for line in ax.lines if line.get_label() == CONTENDED_LABEL)
    assert sorted(ring.get_xdata()) == [100.05, 100.05, 100.2, 100.2]  # p50, p99 of jobs 1, 4
    moved = [line for line in ax.lines if line.get_gid() == "leader"]
    assert moved  # labels pushed off their point are tied to it
    png = tmp_path / "study_latency.png"
    assert write_latency_plot(png, rows, ["batch", "n"])
    assert png.read_bytes().startswith(b"\x89PNG")


def _label_boxes(fig: Figure) -> list[list[Bbox]]:
    """Per axes, the window boxes of its non-empty texts (the point labels)."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    return [[t.get_window_extent(renderer) for t in ax.texts if t.get_text()] for ax in fig.axes]


def test_the_pareto_chart_marks_contended_jobs(tmp_path: Path) -> None:
    fig = study_figure(_rows(7), ["batch"], "crowded")
    assert fig is not None
    pareto = fig.axes[0]
    legend = pareto.get_legend()
    assert legend is not None and CONTENDED_LABEL in [t.get_text() for t in legend.get_texts()]
    (boxes, _) = _label_boxes(fig)
    assert len(boxes) == 7
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legend_box = legend.get_window_extent(renderer)
    for a, b in itertools.combinations([*boxes, legend_box], 2):
        assert not a.overlaps(b), (a, b)
    png = tmp_path / "study_pareto.png"
    assert write_plot(png, _rows(6), ["batch"])
    assert png.read_bytes().startswith(b"\x89PNG")
    served = [
        {
            **r,
            "param.load.rate": i + 1,
            "steady_output_tokens_per_s": 10.0 * (i + 1),
            "steady_e2e_p50_ms": 50.0 + i,
            "steady_e2e_p99_ms": 90.0 + i,
            "steady_energy_per_output_token_j": 0.2 + 0.01 * i,
        }
        for i, r in enumerate(_rows(4))
    ]
    assert write_plot(tmp_path / "load.png", served, ["load.rate"])


def test_sampled_phases_yield_to_the_meters_windows() -> None:
    times = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    phases = ["warmup", "warmup", "repeat-1", "repeat-1", "idle", "flops"]  # sampled 0.14-0.33
    metered = window_spans([("repeat-1", 100.15, 100.33), ("repeat-1", 100.14, 100.32)], 100.0)
    assert [(p, round(a, 6), round(b, 6)) for p, a, b in metered] == [("repeat-1", 0.14, 0.33)]
    spans = plot_spans(times, phases, metered)
    assert [(p, round(a, 6), round(b, 6)) for p, a, b in spans] == [
        ("warmup", 0.0, 0.14),
        ("repeat-1", 0.14, 0.33),
        ("idle", 0.4, 0.5),  # the last sample's phase has no length: not drawn
    ]


def test_no_contended_job_no_ring(tmp_path: Path) -> None:
    rows = [{**r, "contended": False} for r in _rows(3)]
    fig = latency_figure(rows, ["batch"], "quiet")
    assert fig is not None
    assert all(line.get_label() != CONTENDED_LABEL for line in fig.axes[0].lines)
