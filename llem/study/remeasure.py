"""Contention in a study: the job line's note, the study's closing count, and re-measuring a job
whose measured windows were contended (``hydra.launcher.max_attempts``).

A re-measured job runs again in the same folder; the earlier attempt's files are moved aside first,
to ``<job>/.attempts/<n>/`` (with the job's log), where the summary never looks: the study counts
the job once, from its last attempt.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from llem.hostcpu import is_contended, threshold_of
from llem.keymetrics import Measured, contended
from llem.study.table import Row

ATTEMPTS_DIR = ".attempts"  # <job>/.attempts/<n>/: the files of an earlier attempt of the job
ATTEMPT_LOG = "job.log"  # the launcher's log of that attempt, kept beside its files


def contention_note(result: Measured) -> str:
    """``', CPU contended: other processes used 0.97 cores (> 0.25)'`` for a contended result (the
    busiest contended window); empty otherwise."""
    windows = [c for c in result.cpu_contention if is_contended(c) and c.other_cores is not None]
    if not windows:
        return ""
    worst = max(windows, key=lambda c: c.other_cores or 0.0)
    return (
        f", CPU contended: other processes used {worst.other_cores:.2f} cores "
        f"(> {threshold_of(worst):g})"
    )


def should_remeasure(result: Measured | None, attempt: int, max_attempts: int) -> bool:
    """Whether a finished attempt (1-based) is contended and another one is allowed."""
    return result is not None and attempt < max_attempts and contended(result) is True


def keep_attempt(folder: Path, log: Path | None, attempt: int) -> Path:
    """Move the job folder's files (all but earlier attempts) and its log to
    ``<folder>/.attempts/<attempt>/``; that folder. Raises OSError when the disk refuses."""
    kept = folder / ATTEMPTS_DIR / str(attempt)
    kept.mkdir(parents=True, exist_ok=False)
    for entry in sorted(folder.iterdir()):
        if entry.name != ATTEMPTS_DIR:
            shutil.move(entry, kept / entry.name)
    if log is not None and log.is_file():
        shutil.copyfile(log, kept / ATTEMPT_LOG)
    return kept


def contention_line(rows: list[Row]) -> str | None:
    """The study's closing line on contention: how many measured jobs were contended (None when
    no job's contention was measured)."""
    measured = [r for r in rows if isinstance(r.get("contended"), bool)]
    flagged = [r for r in measured if r.get("contended") is True]
    if not measured:
        return None
    if not flagged:
        return f"[llem] no CPU contention: none of {len(measured)} measured jobs was contended"
    cores = [c for r in flagged if isinstance(c := r.get("other_cpu_cores"), float)]
    worst = f"up to {max(cores):.2f} cores, " if cores else ""
    return (
        f"[llem] {len(flagged)} of {len(measured)} jobs ran with CPU contention (other processes "
        f"used {worst}above contention.threshold_cores): their figures are not comparable; see "
        'docs/studies.md, "Contention"'
    )
