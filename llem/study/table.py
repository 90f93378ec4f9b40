"""The study table: one row per job — number, folder, swept parameters, status, key metrics — plus
the counts per status and the Pareto front.

Swept parameters are the override keys whose value differs between jobs; their values are typed by
Hydra's own override parser (``batch=4`` -> 4), one type per column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Literal

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from llem.keymetrics import CI_COLUMNS, KEY_METRICS
from llem.records import JobStatus
from llem.study.scan import JobEntry

Cell = float | int | str | bool | None
Row = dict[str, Cell]
ColumnKind = Literal["int", "float", "bool", "str"]
Column = tuple[str, ColumnKind]

METRIC_COLUMNS: tuple[Column, ...] = tuple((m.name, m.kind) for m in KEY_METRICS)
CI_METRIC_COLUMNS: tuple[Column, ...] = tuple((name, "float") for name in CI_COLUMNS)
TAIL_COLUMNS: tuple[Column, ...] = (("config_hash", "str"), ("result", "str"), ("error", "str"))
_OWN_COLUMNS = frozenset({"num", "job", "status", "config_hash", "result", "error"})
# display order of the counts
STATUS_ORDER: tuple[JobStatus, ...] = (
    JobStatus.OK,
    JobStatus.FAILED,
    JobStatus.TIMEOUT,
    JobStatus.KILLED,
    JobStatus.INTERRUPTED,
    JobStatus.INCOMPLETE,
    JobStatus.RUNNING,
    JobStatus.PENDING,
)
DELETED = "(deleted)"  # the value shown for ``~key``
_PLAIN_INT = re.compile(r"[+-]?(0|[1-9][0-9]*)")
_CHUNK = 50  # values per parser call (the parser's cost grows faster than linearly with length)


@lru_cache(maxsize=1)
def _parser() -> OverridesParser:
    return OverridesParser.create()


def split_override(override: str) -> tuple[str, str]:
    """``'batch=4'`` -> ``('batch', '4')``; ``'+x=1'`` -> ``('x', '1')``; ``'~x'`` -> ``('x',
    '(deleted)')``."""
    key, _, value = override.partition("=")
    if override.lstrip().startswith("~") and not value:
        value = DELETED
    return key.lstrip("+~").strip(), value.strip()


def _typed(value: object) -> Cell:
    """A parsed value as a cell: scalars as they are; lists, dicts and sweeps as their text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def parse_values(texts: Iterable[str]) -> dict[str, Cell]:
    """Each override value typed as Hydra types it (``'4'`` -> 4, ``'1e-3'`` -> 0.001, ``"'4'"`` ->
    '4', ``'null'`` -> None); a value the parser refuses stays text."""
    typed: dict[str, Cell] = {"": "", DELETED: DELETED}
    todo: list[str] = []
    for text in set(texts) - typed.keys():
        if _PLAIN_INT.fullmatch(text):  # the grammar's INT without '_': the parser's answer, faster
            typed[text] = int(text)
        else:
            todo.append(text)
    todo.sort()
    for i in range(0, len(todo), _CHUNK):
        chunk = todo[i : i + _CHUNK]
        try:
            values = _parser().parse_override(f"k=[{','.join(chunk)}]").value()
            assert isinstance(values, list) and len(values) == len(chunk)
        except (HydraException, AssertionError):  # one bad value: each on its own
            values = [_parse_one(t) for t in chunk]
        typed.update(zip(chunk, map(_typed, values), strict=True))
    return typed


def _parse_one(text: str) -> object:
    try:
        return _parser().parse_override(f"k={text}").value()
    except HydraException:
        return text


def _column(values: list[Cell]) -> tuple[list[Cell], ColumnKind] | None:
    """One type for a whole column: int, float (ints widened), bool; None when mixed (then text)."""
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {int}:
        return values, "int"
    if kinds <= {int, float}:
        return [None if v is None else float(v) for v in values], "float"
    if kinds <= {bool}:
        return values, "bool"
    return None


def _texts(texts: list[str | None], cells: list[Cell]) -> list[Cell]:
    """A text column: parsed strings unquoted, any other value as written."""
    return [c if isinstance(c, str) else t for t, c in zip(texts, cells, strict=True)]


def job_params(entries: Sequence[JobEntry]) -> list[dict[str, str]]:
    """Each job's ``{key: value text}`` of its overrides."""
    return [dict(split_override(o) for o in (e.overrides or [])) for e in entries]


def swept_parameters(params: Sequence[dict[str, str]]) -> tuple[list[str], dict[str, str]]:
    """(keys whose value differs between jobs, in first-seen order; {key: value} common to every
    job).

    With nothing varying (a one-job study), every override key counts as swept so that the table
    shows it.
    """
    keys: dict[str, None] = {}
    for p in params:
        keys.update(dict.fromkeys(p))
    swept = [k for k in keys if len({p.get(k) for p in params}) > 1]
    if not swept and len(params) <= 1:
        return list(keys), {}
    fixed = {k: params[0][k] for k in keys if k not in swept}
    return swept, fixed


def has_intervals(entries: Sequence[JobEntry]) -> bool:
    """Whether some job has 2+ repeats (then the CI columns are present)."""
    for e in entries:
        repeats = (e.metrics or {}).get("repeats")
        if isinstance(repeats, int) and repeats >= 2:
            return True
    return False


def build_rows(entries: Sequence[JobEntry], swept: list[str]) -> tuple[list[Row], list[Column]]:
    """One flat row per job and the columns: num, job, swept parameters, status, metrics, the CI
    bounds (when some job has repeats >= 2), config_hash, result, error.

    A swept key named like a metric (``repeats``) shares its column: the measured value where there
    is one. A swept key named like one of the table's own columns gets the column ``param.<key>``.
    """
    params = job_params(entries)
    metric_cols = list(METRIC_COLUMNS) + (list(CI_METRIC_COLUMNS) if has_intervals(entries) else [])
    raw = {key: [p.get(key) for p in params] for key in swept}
    typed = parse_values(t for texts in raw.values() for t in texts if t is not None)
    param_cols: list[Column] = []
    param_values: dict[str, list[Cell]] = {}
    for key, texts in raw.items():
        cells = [None if t is None else typed[t] for t in texts]
        column = _column(cells)
        values, kind = column or (_texts(texts, cells), "str")
        name = f"param.{key}" if key in _OWN_COLUMNS else key
        param_values[name] = values
        param_cols.append((name, kind))
    columns: list[Column] = [
        ("num", "int"),
        ("job", "str"),
        *param_cols,
        ("status", "str"),
        *[c for c in metric_cols if c[0] not in param_values],
        *TAIL_COLUMNS,
    ]
    rows: list[Row] = []
    for i, e in enumerate(entries):
        metrics = e.metrics or {}
        row: Row = {"num": e.num, "job": e.job}
        for name, values in param_values.items():
            measured = metrics.get(name)
            row[name] = values[i] if measured is None else measured
        row["status"] = e.status.value
        for name, _ in metric_cols:
            if name not in param_values:
                row[name] = metrics.get(name)
        row.update(config_hash=e.config_hash, result=e.result, error=e.error)
        rows.append(row)
    return rows, columns


def counts(entries: Sequence[JobEntry]) -> dict[str, int]:
    """Jobs per status, every status present (in display order)."""
    n = {s.value: 0 for s in STATUS_ORDER}
    for e in entries:
        n[e.status.value] = n.get(e.status.value, 0) + 1
    return n


def status_line(counts: dict[str, int], interrupted: bool = False) -> str:
    """``'4 jobs: 2 ok, 1 failed, 1 pending'`` (ok and failed always shown), ``' (interrupted)'``
    when so."""
    total = sum(counts.values())
    parts = [f"{counts.get(s, 0)} {s}" for s in ("ok", "failed")]
    parts += [f"{n} {s}" for s, n in counts.items() if s not in ("ok", "failed") and n]
    return f"{total} job{'' if total == 1 else 's'}: {', '.join(parts)}" + (
        " (interrupted)" if interrupted else ""
    )


def _finite(value: Cell) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def pareto_front(points: Sequence[tuple[Cell, Cell]]) -> list[int]:
    """Indices of the non-dominated ``(throughput, energy_per_token)`` points, by ascending
    throughput.

    Higher throughput and lower energy are better: a point is dominated when another one is at least
    as good on both and strictly better on one. Equal points are all kept; points with a missing or
    non-finite coordinate are ignored.
    """
    valid: list[tuple[float, float, int]] = []
    for i, (x, y) in enumerate(points):
        fx, fy = _finite(x), _finite(y)
        if fx is not None and fy is not None:
            valid.append((fx, fy, i))
    valid.sort(key=lambda p: (-p[0], p[1]))
    front: list[tuple[float, float, int]] = []
    best_y = math.inf  # lowest energy among points with strictly higher throughput
    k = 0
    while k < len(valid):
        j = k
        while j < len(valid) and valid[j][0] == valid[k][0]:
            j += 1
        group_min = valid[k][1]  # sorted by y within equal x
        if group_min < best_y:
            front.extend(p for p in valid[k:j] if p[1] == group_min)
        best_y = min(best_y, group_min)
        k = j
    return [i for _, _, i in sorted(front, key=lambda p: (p[0], -p[1], p[2]))]
