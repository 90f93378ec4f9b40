"""The study summary of a multirun sweep folder: one row per job, rebuilt from the files on disk.

:func:`write_summary` scans ``<sweep_dir>`` (:mod:`llem.study.scan`), builds the table
(:mod:`llem.study.table`) and writes (:mod:`llem.study.writers`, :mod:`llem.study.plot`), each
atomically:

- ``study_summary.json``: study metadata, counts per status, swept parameters and every job (status,
  overrides, result path, error, key metrics); one job per line;
- ``study_summary.csv`` / ``study_summary.parquet``: one row per job, each swept parameter as its
  own column (named after the override key, e.g. ``batch``), then the key metrics
  (:mod:`llem.keymetrics`);
- ``study_summary.md``: a readable table;
- ``study_pareto.png`` and ``study_latency.png``: see :mod:`llem.study.plot`.

Rebuilds are serialised with an exclusive ``flock`` on ``.study_summary.lock`` (parallel jobs each
rebuild as they end) and reuse the entries of the previous ``study_summary.json`` for every
unchanged ``result.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from llem.clock import now_iso
from llem.paths import write_atomic
from llem.records import (
    LATENCY_PNG,
    PARETO_PNG,
    SUMMARY_CSV,
    SUMMARY_JSON,
    SUMMARY_LOCK,
    SUMMARY_MD,
    SUMMARY_PARQUET,
    JobStatus,
)
from llem.study.remeasure import contention_line
from llem.study.scan import JobEntry, read_result, scan
from llem.study.studyfiles import REBUILD, unwritten, warn, writing
from llem.study.table import (
    METRIC_COLUMNS,
    Cell,
    Column,
    Row,
    build_rows,
    counts,
    job_params,
    pareto_front,
    status_line,
    swept_parameters,
)
from llem.study.writers import (
    SUMMARY_VERSION,
    SummaryFile,
    SummaryMeta,
    csv_text,
    json_text,
    md_text,
    write_parquet,
)

__all__ = [
    "METRIC_COLUMNS",
    "PARETO_PNG",
    "SUMMARY_CSV",
    "SUMMARY_JSON",
    "SUMMARY_LOCK",
    "SUMMARY_MD",
    "SUMMARY_PARQUET",
    "Summary",
    "build_summary",
    "keep_summary",
    "pareto_front",
    "read_result",
    "status_line",
    "write_summary",
]

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """A built summary: metadata, job entries, rows and their columns."""

    meta: SummaryMeta
    jobs: list[JobEntry]
    rows: list[Row]
    columns: list[Column]


@contextlib.contextmanager
def study_lock(sweep_dir: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``<sweep_dir>/.study_summary.lock`` (between processes and
    threads)."""
    fd = os.open(sweep_dir / SUMMARY_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _previous(sweep_dir: Path) -> dict[str, JobEntry]:
    """Job entries of the last summary (the metrics cache), by job folder; empty if unusable."""
    try:
        data = SummaryFile.model_validate_json((sweep_dir / SUMMARY_JSON).read_bytes())
    except (OSError, ValidationError):
        return {}
    if data.summary_version != SUMMARY_VERSION:
        return {}
    return {job.job: job for job in data.jobs}


def build_summary(
    sweep_dir: Path,
    *,
    final: bool = False,
    interrupted: bool = False,
    previous: dict[str, JobEntry] | None = None,
) -> Summary:
    """The summary of a sweep folder, writing nothing."""
    from llem import __version__

    plan, entries = scan(sweep_dir, settled=final or interrupted, previous=previous)
    swept, fixed = swept_parameters(job_params(entries))
    rows, columns = build_rows(entries, swept)
    front = pareto_front(
        [
            (r["output_tokens_per_s"], r["energy_per_output_token_j"])
            if r["status"] == JobStatus.OK.value
            else (None, None)
            for r in rows
        ]
    )
    swept_values: dict[str, list[Cell]] = {}
    for name, _ in columns:
        key = name.removeprefix("param.")
        if key in swept:
            swept_values[key] = list(dict.fromkeys(r[name] for r in rows))
    meta = SummaryMeta(
        sweep_dir=str(sweep_dir),
        llem_version=(plan.llem_version if plan else None) or __version__,
        created_at=plan.created_at if plan else None,
        updated_at=now_iso(),
        final=final,
        interrupted=interrupted,
        launcher=plan.launcher if plan else None,
        mode=plan.mode if plan else None,
        n_jobs=len(entries),
        counts=counts(entries),
        swept=swept_values,
        fixed=fixed,
        pareto_front=[str(rows[i]["job"]) for i in front],
        columns=[c for c, _ in columns],
    )
    return Summary(meta, entries, rows, columns)


def plots_wanted(jobs: list[JobEntry], sweep_dir: Path) -> bool:
    """False when the study's jobs were composed with ``plots=false`` (the first job's config)."""
    import yaml

    for job in jobs:
        config = sweep_dir / job.job / ".hydra" / "config.yaml"
        if config.is_file():
            try:
                data = yaml.safe_load(config.read_text())
            except (OSError, yaml.YAMLError):
                continue
            return not isinstance(data, dict) or data.get("plots") is not False
    return True


def _draw(sweep_dir: Path, summary: Summary) -> None:
    """The study's charts; a drawing failure costs the chart, not the tables."""
    from llem.study.plot import write_latency_plot, write_plot

    swept = list(summary.meta.swept)
    for name, draw in ((PARETO_PNG, write_plot), (LATENCY_PNG, write_latency_plot)):
        try:
            with writing(sweep_dir / name):
                drawn = draw(sweep_dir / name, summary.rows, swept)
        except OSError:
            raise  # the disk: said as one line by the caller, like the tables
        except Exception:
            log.exception("llem: could not draw %s (the tables are written)", sweep_dir / name)
            continue
        if drawn and name == PARETO_PNG:
            summary.meta.plot = name
        elif drawn:
            summary.meta.latency_plot = name


def write_summary(
    sweep_dir: Path, *, final: bool = False, interrupted: bool = False, plot: bool = True
) -> Summary:
    """Rebuild every summary file of ``sweep_dir`` (under the study lock) and return the summary.

    ``final``: the sweep has ended (a job folder with no outcome is then ``incomplete``, not
    ``running``); ``interrupted``: it was stopped early (the same, and the header says so);
    ``plot=False`` (or jobs composed with ``plots=false``) skips the pngs.
    """
    sweep_dir = Path(sweep_dir).resolve()
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep folder {sweep_dir} does not exist")
    with study_lock(sweep_dir):
        summary = build_summary(
            sweep_dir, final=final, interrupted=interrupted, previous=_previous(sweep_dir)
        )
        meta, rows, columns = summary.meta, summary.rows, summary.columns
        with writing(sweep_dir / SUMMARY_PARQUET):
            write_parquet(sweep_dir / SUMMARY_PARQUET, rows, columns, meta)
        with writing(sweep_dir / SUMMARY_CSV):
            write_atomic(sweep_dir / SUMMARY_CSV, csv_text(rows, columns))
        with writing(sweep_dir / SUMMARY_MD):
            write_atomic(sweep_dir / SUMMARY_MD, md_text(meta, rows, columns))
        if plot and plots_wanted(summary.jobs, sweep_dir):
            _draw(sweep_dir, summary)
        # written last: its presence with these counts means every other file is at least this
        # recent
        with writing(sweep_dir / SUMMARY_JSON):
            write_atomic(sweep_dir / SUMMARY_JSON, json_text(meta, summary.jobs))
    return summary


def keep_summary(
    sweep_dir: Path, *, final: bool = False, interrupted: bool = False, plot: bool = True
) -> bool:
    """:func:`write_summary` for llem's launcher: whether it was written. A file the disk refuses
    is one line naming it and why, never a traceback: a warning after a job (the study goes on),
    an ``Error:`` line for the final summary (the study then exits 1, :mod:`llem.study.studyfiles`).
    """
    try:
        summary = write_summary(sweep_dir, final=final, interrupted=interrupted, plot=plot)
    except OSError as exc:
        message = unwritten(exc, Path(sweep_dir) / SUMMARY_JSON)
        if not final:
            warn(f"{message}; the study goes on, the next job rebuilds it")
            return False
        sys.stderr.write(f"Error: {message}; the job results are kept: {REBUILD}\n")
        return False
    if final:
        print(f"[llem] summary: {Path(sweep_dir).resolve() / SUMMARY_MD}", flush=True)
        if line := contention_line(summary.rows):
            print(line, flush=True)
    return True
