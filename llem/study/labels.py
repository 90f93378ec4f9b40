"""Point labels that overlap nothing, placed by measuring them with the figure's renderer.

:func:`place_labels` tries offsets on rings around each point (nearest first, eight directions per
ring) and keeps the first whose text box (``Text.get_window_extent``) overlaps no label placed
before it, no marker and no obstacle line, and stays inside the axes. When no offset is free, the
one with the least overlap wins. A label moved beyond the second ring gets a thin grey leader line
to its point. The figure's layout must be final before placing (call it after a first draw with
the layout engine switched off): the offsets are measured in pixels.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.lines import Line2D
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

RINGS_PT = (7.0, 15.0, 26.0, 40.0, 56.0, 74.0)  # label offsets from the point (points)
ANGLES_DEG = (45, 0, -45, 90, -90, 135, 180, -135)  # up-right first, then round the point
PAD_PX = 2.0  # free space kept around each label (pixels)
LEADER_FROM_RING = 2  # a label on this ring (0 = nearest) or farther gets a leader line
LABEL_GID = "point-label"  # the gid of a label :func:`arrange_axes_labels` moves

Align = tuple[float, float, Literal["left", "center", "right"], Literal["bottom", "center", "top"]]


def _overlap(a: Bbox, b: Bbox) -> float:
    """Area (px^2) two boxes share, 0 when apart."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: Bbox, frame: Bbox) -> float:
    """Area (px^2) of ``box`` outside ``frame``."""
    return box.width * box.height - _overlap(box, frame)


def _candidates() -> list[Align]:
    """(dx, dy, ha, va) offsets in points, nearest ring first."""
    out: list[Align] = []
    for r in RINGS_PT:
        for deg in ANGLES_DEG:
            dx, dy = r * math.cos(math.radians(deg)), r * math.sin(math.radians(deg))
            out.append(
                (
                    dx,
                    dy,
                    "left" if dx > 0.5 else "right" if dx < -0.5 else "center",
                    "bottom" if dy > 0.5 else "top" if dy < -0.5 else "center",
                )
            )
    return out


def marker_boxes(ax: Axes, points: list[tuple[float, float]], sizes_pt: list[float]) -> list[Bbox]:
    """Square boxes (pixels) of markers at data ``points``, each ``sizes_pt`` wide (points)."""
    from matplotlib.transforms import Bbox

    boxes = []
    for (x, y), size in zip((ax.transData.transform(p) for p in points), sizes_pt, strict=True):
        half = size * ax.figure.dpi / 72 / 2
        boxes.append(Bbox.from_extents(x - half, y - half, x + half, y + half))
    return boxes


def _padded(box: Bbox) -> Bbox:
    return box.expanded(1.0, 1.0).padded(PAD_PX)


def _leader(ax: Axes, point: tuple[float, float], box: Bbox) -> None:
    """A thin line from ``point`` (data) to the nearest point of the label box."""
    px, py = ax.transData.transform(point)
    ex, ey = min(max(px, box.x0), box.x1), min(max(py, box.y0), box.y1)
    inv = ax.transData.inverted()
    (x0, y0), (x1, y1) = inv.transform((px, py)), inv.transform((ex, ey))
    ax.plot([x0, x1], [y0, y1], "-", color="0.55", lw=0.6, zorder=1.5, gid="leader")


def _move(ann: Annotation, where: Align) -> None:
    dx, dy, ha, va = where
    ann.set_position((dx, dy))
    ann.set_horizontalalignment(ha)
    ann.set_verticalalignment(va)


def arrange_labels(
    ax: Axes, labels: list[Annotation], markers: list[Bbox], lines: list[Line2D]
) -> None:
    """Move each label (an annotation in offset points from its ``xy``) to the first offset where
    it overlaps no label before it, no marker box and no line (see the module docstring)."""
    renderer: RendererBase = ax.figure.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = ax.get_window_extent(renderer)
    obstacles = list(markers) + [line.get_window_extent(renderer).padded(2) for line in lines]
    placed: list[Bbox] = []
    for ann in labels:
        best: tuple[float, int, Align] | None = None
        for i, where in enumerate(_candidates()):
            _move(ann, where)
            box = _padded(ann.get_window_extent(renderer))
            cost = sum(_overlap(box, o) for o in placed + obstacles) + _outside(box, frame)
            if best is None or cost < best[0]:
                best = (cost, i, where)
            if cost == 0:
                break
        assert best is not None
        _move(ann, best[2])
        box = ann.get_window_extent(renderer)
        placed.append(_padded(box))
        if best[1] >= LEADER_FROM_RING * len(ANGLES_DEG):
            _leader(ax, (float(ann.xy[0]), float(ann.xy[1])), box)


def label(ax: Axes, text: str, point: tuple[float, float], fontsize: float = 7) -> Annotation:
    """A label of ``point`` for :func:`arrange_labels` (``gid`` :data:`LABEL_GID`)."""
    return ax.annotate(
        text,
        point,
        xytext=(0, 0),
        textcoords="offset points",
        fontsize=fontsize,
        zorder=4,
        gid=LABEL_GID,
    )


def freeze_legend(ax: Axes) -> list[Bbox]:
    """Pin the axes' legend where it was drawn ("best" would move it once labels are added);
    returns its box (pixels) as an obstacle, or nothing without a legend."""
    legend = ax.get_legend()
    if legend is None:
        return []
    renderer: RendererBase = ax.figure.canvas.get_renderer()  # type: ignore[attr-defined]
    box = legend.get_window_extent(renderer)
    x0, y0 = ax.transAxes.inverted().transform((box.x0, box.y0))
    legend.set_loc((float(x0), float(y0)))
    return [box]


def arrange_axes_labels(ax: Axes, size_pt: float) -> None:
    """Arrange the axes' :func:`label` annotations round their points (markers ``size_pt`` wide,
    the legend pinned and avoided). The figure's layout must be final."""
    from matplotlib.text import Annotation

    labels = [t for t in ax.texts if isinstance(t, Annotation) and t.get_gid() == LABEL_GID]
    if labels:
        points = [(float(a.xy[0]), float(a.xy[1])) for a in labels]
        boxes = marker_boxes(ax, points, [size_pt] * len(points)) + freeze_legend(ax)
        arrange_labels(ax, labels, boxes, [])


def place_labels(
    ax: Axes,
    labels: list[tuple[str, tuple[float, float]]],
    markers: list[Bbox],
    lines: list[Line2D],
    fontsize: float = 7,
) -> list[Annotation]:
    """Annotate each (text, data point) of ``labels`` where it overlaps nothing; returns them."""
    out = [label(ax, text, point, fontsize) for text, point in labels]
    arrange_labels(ax, out, markers, lines)
    return out
