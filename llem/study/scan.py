"""Scanning a sweep folder: one :class:`JobEntry` per job, from the files its jobs left.

Jobs come from ``study.json`` (llem's launcher writes it at study start: a planned job without a
folder is ``pending``; other folders are not jobs of this study) or, without it, from the
sub-folders holding ``.hydra/overrides.yaml``. Dot folders (``.jobs/`` and the earlier outcomes
the launcher moved to ``.jobs/replaced/``) are never read. A job
is ``ok`` (its ``result.json``), failed/timeout/killed/interrupted (its ``error.json``), ``running``
(a folder without an outcome yet) or ``incomplete`` (the same once the study has ended).

An entry of the previous summary is reused for every ``result.json`` whose (mtime_ns, size) did not
change, so a rebuild reads only new results.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from llem.keymetrics import Value, key_metrics
from llem.records import (
    ERROR_STATUSES,
    HYDRA_FILE,
    OVERRIDES_FILE,
    RESULT_FILE,
    JobStatus,
    PlannedJob,
    StudyPlan,
    read_error,
    read_plan,
)
from llem.result import ResultMetrics

_NUM_PREFIX = re.compile(r"(\d+)(?:_|$)")
# statuses whose overrides are final (the job's .hydra/overrides.yaml no longer changes)
_SETTLED = frozenset({JobStatus.OK, *ERROR_STATUSES})


class JobEntry(BaseModel):
    """One job of ``study_summary.json``."""

    model_config = ConfigDict(extra="ignore")

    num: int | None = None
    job: str  # folder, relative to the sweep folder
    status: JobStatus = JobStatus.PENDING
    overrides: list[str] | None = None
    config_hash: str | None = None
    result: str | None = None  # result.json, relative to the sweep folder
    result_stat: tuple[int, int] | None = None  # (mtime_ns, size) of result.json when it was read
    error: str | None = None
    exit_code: int | None = None
    metrics: dict[str, Value] | None = None


def read_result(path: str | Path) -> ResultMetrics | None:
    """The measured sections of a ``result.json``; None if it is missing or not a valid result."""
    try:
        with open(path, "rb") as fh:
            return ResultMetrics.model_validate_json(fh.read())
    except (OSError, ValidationError):
        return None


def read_overrides(folder: Path) -> list[str] | None:
    """A job's ``.hydra/overrides.yaml`` (a YAML list of strings), None if absent or not such a
    list."""
    try:
        data = yaml.load((folder / OVERRIDES_FILE).read_bytes(), Loader=_LOADER)
    except (OSError, yaml.YAMLError):
        return None
    return [str(o) for o in data] if isinstance(data, list) else None


_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _job_num(folder: Path) -> int | None:
    """The job number: the folder's numeric prefix, else ``hydra.job.num`` in
    ``.hydra/hydra.yaml``."""
    m = _NUM_PREFIX.match(folder.name)
    if m:
        return int(m.group(1))
    with contextlib.suppress(OSError, yaml.YAMLError, AttributeError, TypeError):
        num = yaml.load((folder / HYDRA_FILE).read_bytes(), Loader=_LOADER)["hydra"]["job"]["num"]
        return num if isinstance(num, int) else None
    return None


def _read_outcome(entry: JobEntry, folder: Path, previous: JobEntry | None, settled: bool) -> None:
    """Fill status, result, error and metrics of ``entry`` from ``folder``."""
    result_path = os.path.join(folder, RESULT_FILE)  # str paths: this runs once per job
    try:
        st = os.stat(result_path)
    except OSError:
        st = None
    if st is not None:
        stat = (st.st_mtime_ns, st.st_size)
        entry.result, entry.result_stat = f"{entry.job}/{RESULT_FILE}", stat
        if previous is not None and previous.result_stat == stat and previous.metrics is not None:
            # unchanged result.json: reuse what the last rebuild read from it
            entry.status, entry.error, entry.metrics = (
                previous.status,
                previous.error,
                previous.metrics,
            )
            entry.config_hash = previous.config_hash
            entry.overrides = entry.overrides or previous.overrides
            return
        result = read_result(result_path)
        if result is None:
            entry.status = JobStatus.FAILED
            entry.error = f"{RESULT_FILE} is unreadable or not a valid result"
            return
        entry.status = JobStatus.OK if result.status == "ok" else JobStatus.FAILED
        entry.error = None if result.status == "ok" else f"result status {result.status!r}"
        entry.config_hash = result.config_hash or entry.config_hash
        entry.overrides = entry.overrides if entry.overrides is not None else result.overrides
        entry.metrics = key_metrics(result)
        return
    error = read_error(folder)
    if error is None:
        entry.status = JobStatus.INCOMPLETE if settled else JobStatus.RUNNING
        return
    entry.status = error.status if error.status in ERROR_STATUSES else JobStatus.FAILED
    entry.error, entry.exit_code = error.error, error.exit_code
    if entry.overrides is None:
        entry.overrides = error.overrides


def _job_entry(
    sweep_dir: Path,
    name: str,
    planned: PlannedJob | None,
    previous: JobEntry | None,
    exists: bool,
    settled: bool,
) -> JobEntry:
    """One job's entry: overrides from study.json, else its result or error, else its
    overrides.yaml."""
    folder = sweep_dir / name
    entry = JobEntry(job=name)
    if planned is not None:
        entry.num, entry.overrides = planned.num, planned.overrides
        entry.config_hash = planned.config_hash or None
    if not exists:
        return entry
    if entry.num is None and previous is not None:
        entry.num = previous.num
    if entry.overrides is None and previous is not None and previous.status in _SETTLED:
        entry.overrides = previous.overrides
    _read_outcome(entry, folder, previous, settled)
    if entry.overrides is None:
        entry.overrides = read_overrides(folder)
    if entry.num is None:
        entry.num = _job_num(folder)
    return entry


def _relative(sweep_dir: Path, subdir: str) -> str:
    """A job folder relative to the sweep folder, as a posix path ('0_tiny-llama_pytorch')."""
    path = Path(subdir)
    if path.is_absolute():
        with contextlib.suppress(ValueError):
            path = path.resolve().relative_to(sweep_dir)
    return path.as_posix().strip("/")


def scan(
    sweep_dir: Path, *, settled: bool = False, previous: dict[str, JobEntry] | None = None
) -> tuple[StudyPlan | None, list[JobEntry]]:
    """``(study.json or None, job entries sorted by job number)`` of a sweep folder.

    ``settled``: the study has ended (a folder without an outcome is ``incomplete``, not
    ``running``); ``previous``: the last summary's entries by job folder (see the module docstring).
    """
    plan = read_plan(sweep_dir)
    previous = previous or {}
    try:
        with os.scandir(sweep_dir) as it:
            folders = {e.name for e in it if not e.name.startswith(".") and e.is_dir()}
    except OSError:
        folders = set()
    entries: list[JobEntry] = []
    seen: set[str] = set()
    for job in plan.jobs if plan else []:
        name = _relative(sweep_dir, job.subdir)
        if not name or name in seen:
            continue
        seen.add(name)
        exists = name in folders if "/" not in name else (sweep_dir / name).is_dir()
        entries.append(_job_entry(sweep_dir, name, job, previous.get(name), exists, settled))
    for name in sorted(folders - seen) if plan is None else ():  # a plan lists every job
        if (sweep_dir / name / OVERRIDES_FILE).is_file():
            entries.append(_job_entry(sweep_dir, name, None, previous.get(name), True, settled))
    entries.sort(key=lambda e: (e.num is None, e.num or 0, e.job))
    return plan, entries
