"""The files of a run and of a study: their names, the job status vocabulary, the typed records.

A run folder holds ``result.json`` (:mod:`llem.result`) and ``timeseries.parquet``; a failed study
job's folder holds ``error.json`` (:class:`ErrorRecord`, written only by :func:`write_error`). A
study's sweep folder holds ``study.json`` (:class:`StudyPlan`, the launcher's plan), ``.jobs/``
(each job's spec and console log) and the ``study_summary.*`` files (:mod:`llem.study.summary`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from llem.clock import now_iso
from llem.paths import cache_dir, claim_unique_dir, write_atomic

RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
TIMESERIES_FILE = "timeseries.parquet"
TIMESERIES_PNG = "timeseries.png"
OVERRIDES_FILE = ".hydra/overrides.yaml"
HYDRA_FILE = ".hydra/hydra.yaml"
STUDY_FILE = "study.json"
JOBS_DIR = ".jobs"
SUMMARY_JSON = "study_summary.json"
SUMMARY_CSV = "study_summary.csv"
SUMMARY_PARQUET = "study_summary.parquet"
SUMMARY_MD = "study_summary.md"
PARETO_PNG = "study_pareto.png"
LATENCY_PNG = "study_latency.png"
SUMMARY_LOCK = ".study_summary.lock"


def write_optional(name: str, write: Callable[[], str | None]) -> tuple[str | None, str | None]:
    """Run ``write``, which writes the optional file ``name`` of a run (the time series, its plot)
    and returns its file name. A full or vanished disk costs that file, never the run's result:
    ``(None, warning)`` instead of the OSError (atomic writes leave no partial file)."""
    try:
        return write(), None
    except OSError as exc:
        why = exc.strerror or str(exc)
        return None, f"{name} was not written ({why}): the result is kept without it"


def fallbacks(run_name: str) -> list[Callable[[], Path]]:
    """Where a result goes when its run folder cannot take it, in order: a new folder
    ``<llem cache>/unsaved/<run>[-N]``, then ``<temp dir>/llem-unsaved/<run>[-N]``. Each is made
    (:func:`llem.paths.claim_unique_dir`) only when called; making one may raise OSError."""
    return [
        lambda: Path(claim_unique_dir(str(cache_dir("unsaved") / run_name))),
        lambda: Path(claim_unique_dir(str(Path(tempfile.gettempdir(), "llem-unsaved", run_name)))),
    ]


def discard_run(
    run_dir: Path,
    output_root: Path,
    log_name: str = "llem.log",
    hydra_subdir: str | None = ".hydra",
) -> bool:
    """Remove what a run that ends without a result (bad input found inside the job, a stop)
    wrote into ``run_dir``, then ``run_dir`` and ``output_root`` once empty. Only llem's and
    Hydra's own files: a folder given as ``hydra.run.dir`` (even ``.``) may hold the user's, and
    the working folder itself stays. False when ``run_dir`` holds a result (nothing is removed)."""
    import contextlib
    import shutil

    from llem.lock import LOCK_FILE

    if (run_dir / RESULT_FILE).exists():
        return False
    if hydra_subdir:  # Hydra's saved config
        shutil.rmtree(run_dir / hydra_subdir, ignore_errors=True)
    for name in (log_name, LOCK_FILE, TIMESERIES_FILE, TIMESERIES_PNG):
        for path in (run_dir / name, *run_dir.glob(f".{name}.*tmp")):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
    for folder in (run_dir, run_dir.parent, output_root):
        if folder.absolute() != Path.cwd():
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
    return True


class JobStatus(str, Enum):
    """Where a study job stands; the values are the strings written in the study's files."""

    OK = "ok"  # result.json written
    FAILED = "failed"  # the task raised or the process exited non-zero
    TIMEOUT = "timeout"  # stopped after hydra.launcher.timeout_s
    KILLED = "killed"  # ended by a signal (SIGKILL: out of memory?)
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C
    INCOMPLETE = "incomplete"  # a folder without an outcome once the study has ended
    RUNNING = "running"  # a folder without an outcome yet
    PENDING = "pending"  # planned, not started
    SKIPPED = "skipped"  # resumed: its result exists with the same config hash

    def __str__(self) -> str:
        return self.value


ERROR_STATUSES = frozenset(
    {JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.KILLED, JobStatus.INTERRUPTED}
)


class ErrorRecord(BaseModel):
    """``error.json``: why a study job has no result."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: JobStatus = JobStatus.FAILED
    error: str | None
    exit_code: int | None = None
    overrides: list[str] = []
    ended_at: str = ""
    log: str | None = None


def write_error(folder: Path, record: ErrorRecord, *, keep_existing: bool = False) -> None:
    """Write ``folder/error.json`` (stamped now); with ``keep_existing``, a present one wins."""
    path = folder / ERROR_FILE
    if keep_existing and path.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    stamped = record.model_copy(update={"ended_at": now_iso()})
    write_atomic(path, stamped.model_dump_json(indent=2) + "\n")


def read_error(folder: Path) -> ErrorRecord | None:
    """``folder/error.json``, or None when absent or unreadable."""
    try:
        return ErrorRecord.model_validate_json((folder / ERROR_FILE).read_bytes())
    except (OSError, ValidationError):
        return None


class PlannedJob(BaseModel):
    model_config = ConfigDict(extra="ignore")

    num: int
    subdir: str
    overrides: list[str]
    config_hash: str = ""
    # how the job's process starts: "fork server" or "fresh interpreter (<why not forked>)"
    process: str | None = None


class StudyPlan(BaseModel):
    """``study.json``: the jobs the launcher planned, written before the first one starts."""

    model_config = ConfigDict(extra="ignore")

    llem_version: str | None = None
    created_at: str | None = None
    sweep_dir: str = ""
    launcher: str | None = None
    mode: str | None = None
    jobs: list[PlannedJob] = []


def write_plan(sweep_dir: Path, plan: StudyPlan) -> None:
    write_atomic(sweep_dir / STUDY_FILE, plan.model_dump_json(indent=2) + "\n")


def read_plan(sweep_dir: Path) -> StudyPlan | None:
    """``sweep_dir/study.json``, or None when absent or unreadable."""
    try:
        return StudyPlan.model_validate_json((sweep_dir / STUDY_FILE).read_bytes())
    except (OSError, ValidationError):
        return None
