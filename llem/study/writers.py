"""The study summary's files, each written atomically (:func:`llem.paths.atomic_path`).

- ``study_summary.json``: metadata, then one job per line (fast to write, easy to diff);
- ``study_summary.csv`` / ``study_summary.parquet``: one typed row per job (parquet carries the
  metadata);
- ``study_summary.md``: a readable table.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from llem.keymetrics import CI_METRICS
from llem.paths import atomic_path
from llem.stats import MIN_REPEATS
from llem.study.scan import JobEntry
from llem.study.table import Cell, Column, Row, status_line

SUMMARY_VERSION = 3  # 2: whole-window FLOPs, CodeCarbon labelled, CPU threads; 3: contended


class SummaryMeta(BaseModel):
    """The metadata of ``study_summary.json`` (its keys before ``jobs``)."""

    model_config = ConfigDict(extra="ignore")

    summary_version: int = SUMMARY_VERSION
    sweep_dir: str
    llem_version: str | None
    created_at: str | None
    updated_at: str
    final: bool
    interrupted: bool
    launcher: str | None
    mode: str | None
    n_jobs: int
    counts: dict[str, int]
    swept: dict[str, list[Cell]]
    fixed: dict[str, str]
    pareto_front: list[str]
    columns: list[str]
    plot: str | None = None
    latency_plot: str | None = None


class SummaryFile(BaseModel):
    """``study_summary.json`` as read back (the previous summary's entries are the metrics
    cache)."""

    model_config = ConfigDict(extra="ignore")

    summary_version: int
    jobs: list[JobEntry]


def json_text(meta: SummaryMeta, jobs: list[JobEntry]) -> str:
    """The summary as JSON: metadata keys indented, one job per line."""
    fields = meta.model_dump(mode="json", exclude_none=False)
    for key in ("plot", "latency_plot"):
        if fields[key] is None:
            del fields[key]
    lines = ["{", *(f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in fields.items())]
    lines.append('  "jobs": [')
    last = len(jobs) - 1
    lines += [f"    {job.model_dump_json()}{',' if i < last else ''}" for i, job in enumerate(jobs)]
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[Row], columns: list[Column]) -> str:
    """CSV with a header; missing values are empty cells, booleans ``true``/``false``."""
    names = [name for name, _ in columns]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow(
            [str(v).lower() if isinstance(v, bool) else v for v in (row[n] for n in names)]
        )
    return buf.getvalue()


def write_parquet(path: Path, rows: list[Row], columns: list[Column], meta: SummaryMeta) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}
    arrays = {
        name: pa.array([row.get(name) for row in rows], type=types[kind]) for name, kind in columns
    }
    table = pa.table(arrays).replace_schema_metadata(
        {"llem.study": meta.model_dump_json(exclude={"plot", "latency_plot"})}
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _fmt(value: Cell, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e6 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def _with_ci(row: Row, name: str) -> str:
    value, low, high = row.get(name), row.get(f"{name}_ci95_low"), row.get(f"{name}_ci95_high")
    if value is None:
        return ""
    if low is not None and high is not None:
        return f"{_fmt(value)} [{_fmt(low, 3)}, {_fmt(high, 3)}]"
    n = _repeats(row)
    if n >= MIN_REPEATS:
        return f"{_fmt(value)} (no CI)"
    return f"{_fmt(value)} (n<{MIN_REPEATS})" if n > 1 else _fmt(value)


def _interval_note(rows: list[Row]) -> list[str]:
    """The footnote saying what the brackets are and why a cell has none."""
    if not any(_repeats(r) >= 2 for r in rows):
        return []
    text = (
        "Brackets: 95% interval of the geometric mean of the per-repeat values (Student's t on "
        "the log scale, never <= 0); the value before them covers all measured windows together."
    )
    if any(1 < _repeats(r) < MIN_REPEATS for r in rows):
        text += f" (n<{MIN_REPEATS}): too few repeats for an interval."
    if any("(no CI)" in _with_ci(r, m.name) for r in rows for m in CI_METRICS):
        text += " (no CI): no interval, the reason is in result.json `repeats.stats`."
    return ["", text]


def _md_cell(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _repeats(row: Row) -> int:
    value = row.get("repeats")
    return value if isinstance(value, int) else 0


def _has(rows: list[Row], name: str) -> bool:
    return any(r.get(name) is not None for r in rows)


def contended_note(rows: list[Row]) -> list[str]:
    """The md lines naming the contended jobs (none when no job was)."""
    jobs = [_fmt(r["num"]) for r in rows if r.get("contended") is True]
    if not jobs:
        return []
    return [
        "",
        f"CPU contended: job{'s' if len(jobs) > 1 else ''} {', '.join(jobs)} ran while other "
        "processes used more CPU than contention.threshold_cores in a measured window "
        "(other CPU cores: the busiest window); their figures are not comparable with an idle "
        'machine\'s (docs/studies.md, "Contention").',
    ]


def md_text(meta: SummaryMeta, rows: list[Row], columns: list[Column]) -> str:
    has_energy = _has(rows, "energy_per_output_token_j")
    has_estimate = _has(rows, "codecarbon_estimate_j")
    lines = [
        f"# llem study: {Path(meta.sweep_dir).name}",
        "",
        status_line(meta.counts, meta.interrupted),
        "",
        f"- folder: `{meta.sweep_dir}`",
        f"- updated: {meta.updated_at}{' (final)' if meta.final else ''}",
    ]
    if meta.fixed:
        lines.append("- fixed: " + ", ".join(f"`{k}={v}`" for k, v in meta.fixed.items()))
    if meta.pareto_front:
        lines.append(
            "- Pareto front (higher tokens/s, lower J/token): " + ", ".join(meta.pareto_front)
        )
    if not has_energy:
        reasons = [str(r["energy_reason"]) for r in rows if r.get("energy_reason")]
        lines.append(
            "- energy: not measured by a hardware meter"
            + (f" ({_md_cell(reasons[0], 160)})" if reasons else "")
            + ("; CodeCarbon's modelled estimate is in its own columns" if has_estimate else "")
        )
    lines.append("")
    swept = set(meta.swept)
    param_names = [c for c, _ in columns if c.removeprefix("param.") in swept]
    header = ["#", *param_names, "status", "out tok/s"]
    if has_energy:
        header += ["J/out tok", "Wh/1k req"]
    if has_estimate:
        header += ["CodeCarbon J/out tok (modelled)", "CO2 g (modelled)"]
    header += ["TTFT p50 ms", "ITL p50 ms", "E2E p99 ms", "FLOP/out tok (window)"]
    header += ["peak mem MiB", "threads", "other CPU cores", "note"]
    lines += ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        mem = row["peak_memory_bytes"]
        cells = [_fmt(row["num"])]
        cells += [_md_cell(_fmt(row[p])) for p in param_names]
        cells += [str(row["status"]), _with_ci(row, "output_tokens_per_s")]
        if has_energy:
            cells += [_with_ci(row, "energy_per_output_token_j"), _fmt(row["wh_per_1k_requests"])]
        if has_estimate:
            co2 = row["codecarbon_co2_kg"]
            cells += [
                _fmt(row["codecarbon_estimate_per_output_token_j"]),
                _fmt(co2 * 1e3 if isinstance(co2, float) else None),
            ]
        cells += [
            _fmt(row["ttft_p50_ms"]),
            _fmt(row["itl_p50_ms"]),
            _fmt(row["e2e_p99_ms"]),
            _fmt(row["window_flops_per_output_token"]),
            f"{mem / 2**20:.0f}" if isinstance(mem, int) else "",
            _fmt(row["cpu_threads"]),
            _fmt(row["other_cpu_cores"]) + (" (contended)" if row.get("contended") is True else ""),
            _md_cell(str(row["error"])) if row["error"] else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += contended_note(rows)
    if has_estimate:
        lines += [
            "",
            "CodeCarbon columns: a MODELLED estimate (CPU: TDP and utilisation; RAM: a constant"
            " power), not a measurement (docs/results.md, 'What does my run cost?').",
        ]
    lines += [
        "",
        "FLOP/out tok (window): closed-form FLOPs of every measured batch / output tokens.",
    ]
    lines += _interval_note(rows)
    return "\n".join(lines) + "\n"
