"""Point labels that overlap nothing, placed by measuring them with the figure's renderer.

:func:`place_labels` tries offsets on rings around each point (nearest first, eight directions per
ring) and keeps the first whose text box (``Text.get_window_extent``) overlaps no label placed
before it, no marker and no obstacle line, and stays inside the axes. When no offset is free, the
one with the least overlap wins. A label moved beyond the first ring gets a thin grey leader line
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


def place_labels(
    ax: Axes,
    labels: list[tuple[str, tuple[float, float]]],
    markers: list[Bbox],
    lines: list[Line2D],
    fontsize: float = 7,
) -> list[Annotation]:
    """Annotate each (text, data point) of ``labels`` where it overlaps nothing; returns them."""
    renderer: RendererBase = ax.figure.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = ax.get_window_extent(renderer)
    obstacles = list(markers) + [line.get_window_extent(renderer).padded(2) for line in lines]
    placed: list[Bbox] = []
    out: list[Annotation] = []
    for text, point in labels:
        ann = ax.annotate(
            text, point, xytext=(0, 0), textcoords="offset points", fontsize=fontsize, zorder=4
        )
        best: tuple[float, int, Align] | None = None
        for i, (dx, dy, ha, va) in enumerate(_candidates()):
            ann.set_position((dx, dy))
            ann.set_horizontalalignment(ha)
            ann.set_verticalalignment(va)
            box = _padded(ann.get_window_extent(renderer))
            cost = sum(_overlap(box, o) for o in placed + obstacles) + _outside(box, frame)
            if best is None or cost < best[0]:
                best = (cost, i, (dx, dy, ha, va))
            if cost == 0:
                break
        assert best is not None
        dx, dy, ha, va = best[2]
        ann.set_position((dx, dy))
        ann.set_horizontalalignment(ha)
        ann.set_verticalalignment(va)
        box = ann.get_window_extent(renderer)
        placed.append(_padded(box))
        if best[1] >= len(ANGLES_DEG):
            _leader(ax, point, box)
        out.append(ann)
    return out
