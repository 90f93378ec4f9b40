"""A study's own files (``study.json``, ``study_summary.*``, the study charts) on a disk that
fails: full, read-only or gone.

Job results are never touched here. A study file that cannot be written is one line naming the
file and the OS reason, never a traceback: ``study.json`` at the start stops the study before any
job (exit 1); a summary rebuilt after a job is a warning and the study goes on (the next rebuild
may succeed); the final summary is an ``Error:`` line and the study exits 1 once its jobs are done.
Rerunning the same command rebuilds the files: its jobs with a result are skipped (resume).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn, Protocol

from llem.records import STUDY_FILE, PlannedJob, StudyPlan, write_plan

EXIT_UNSAVED = 1  # the study's final summary (or its study.json at the start) was not written
REBUILD = "free space or make it writable, then rerun the same command to rebuild it"


class PlanJob(Protocol):
    """What ``study.json`` records of a job."""

    num: int
    overrides: list[str]
    folder: Path
    config_hash: str
    process: str


def why(exc: OSError) -> str:
    """The OS reason of ``exc`` ("No space left on device"), also for pyarrow's errors."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0][:200]


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Re-raise an OSError of the block as one naming ``path`` (not its temp file)."""
    try:
        yield
    except OSError as exc:
        raise OSError(exc.errno or 0, why(exc), str(path)) from exc


def unwritten(exc: OSError, fallback: Path) -> str:
    """``cannot write <file> (<reason>)``."""
    return f"cannot write {exc.filename or fallback} ({why(exc)})"


def write_study_plan(
    sweep_dir: Path, jobs: Sequence[PlanJob], mode: str, launcher: str = "llem"
) -> None:
    """``study.json``: the planned jobs and how each starts (raises OSError naming the file)."""
    from llem import __version__
    from llem.clock import now_iso

    plan = StudyPlan(
        llem_version=__version__,
        created_at=now_iso(),
        sweep_dir=str(sweep_dir),
        launcher=launcher,
        mode=mode,
        jobs=[
            PlannedJob(
                num=j.num,
                subdir=j.folder.name,
                overrides=j.overrides,
                config_hash=j.config_hash,
                process=j.process or None,
            )
            for j in jobs
        ],
    )
    with writing(sweep_dir / STUDY_FILE):
        write_plan(sweep_dir, plan)


def plan_or_exit(sweep_dir: Path, jobs: Sequence[PlanJob], mode: str) -> None:
    """``study.json`` before any job starts; when it cannot be written, one line and exit 1."""
    try:
        write_study_plan(sweep_dir, jobs, mode)
    except OSError as exc:
        stop(f"{unwritten(exc, sweep_dir)}; no job was started: {REBUILD}")


def plan_or_warn(sweep_dir: Path, jobs: Sequence[PlanJob], mode: str) -> None:
    """``study.json`` rewritten mid-study; when it cannot be, a warning and the study goes on."""
    try:
        write_study_plan(sweep_dir, jobs, mode)
    except OSError as exc:
        warn(f"{unwritten(exc, sweep_dir)}; the study goes on")


def warn(message: str) -> None:
    print(f"[llem] warning: {message}", flush=True)


def stop(message: str) -> NoReturn:
    sys.stderr.write(f"Error: {message}\n")
    raise SystemExit(EXIT_UNSAVED)
