"""``hydra/launcher=llem_slurm``: each study job a SLURM array task, watched like llem's launcher.

On the submitting machine: the cluster is checked (tools, controller, partition) and every job
composed and validated before anything is submitted; jobs whose ``result.json`` has the same config
hash are skipped (resume); the rest go to ``sbatch`` as one array through submitit. Then llem polls
SLURM, prints each job's start and outcome, maps SLURM's final state onto the job's status
(:mod:`llem.study.slurm`), rebuilds the summary, and never waits without bound: a job SLURM no
longer reports, or one running past its time limit plus ``grace_min``, is given up; a study whose
jobs all stay pending for ``pending_timeout_min`` is cancelled. Ctrl-C / SIGTERM / SIGHUP cancel
its jobs.

In the SLURM job: the job's pre-composed config runs through Hydra's ``run_job``. SIGTERM (time
limit, ``scancel``, preemption) stops it cleanly: no result, an ``error.json`` naming SLURM's state.
A requeued job (submitit's preemption handling, ``--requeue``) runs again from the start.

The Hydra plugin class and its config are in ``hydra_plugins/llem_plugins/llem_slurm_launcher.py``.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Protocol

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, run_job, setup_globals
from hydra.core.utils import JobStatus as HydraJobStatus
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import DictConfig, OmegaConf

from llem.errors import EXIT_USAGE, UsageError
from llem.keymetrics import PROGRESS
from llem.records import RESULT_FILE, SUMMARY_MD, JobStatus, read_error
from llem.study import slurm
from llem.study.launcher import (
    Job,
    StudyFailed,
    _job_return,
    _resume,
    _tail,
    above_maxima,
    prepare_jobs,
    task_path,
)
from llem.study.scan import read_result
from llem.study.studyfiles import write_study_plan

LLEM_KEYS = ("resume", "poll_s", "pending_timeout_min", "grace_min", "lost_after_s")
# the highest value of each option llem waits on, and its unit (beyond: a wait without end)
MAXIMA: dict[str, tuple[float, str]] = {
    "poll_s": (600.0, "s"),
    "timeout_min": (43_200.0, "min (30 days)"),
    "grace_min": (1_440.0, "min (1 day)"),
    "pending_timeout_min": (43_200.0, "min (30 days)"),
    "lost_after_s": (86_400.0, "s (1 day)"),
    "array_parallelism": (100_000.0, "jobs"),
}


class SlurmLauncherLike(Protocol):
    """What is used here of the Hydra launcher object (a subclass of submitit's SlurmLauncher)."""

    params: dict[str, object]
    config: DictConfig | None
    hydra_context: HydraContext | None
    task_function: TaskFunction | None


@dataclass
class _Tracked:
    """A submitted job as the submitting process follows it."""

    job: Job
    slurm_id: str
    submitted: float
    last_seen: float
    started: bool = False


# --------------------------------------------------------------------------- in the SLURM job


def run_in_job(
    launcher: SlurmLauncherLike, job: object, singleton_state: dict[type, Singleton]
) -> JobReturn:
    """Run one study job in its SLURM allocation (``job.config``: composed, sweep dir frozen)."""
    from llem import resolvers
    from llem.signals import Stopped, ignore_signals, stop_on_signals

    assert isinstance(job, Job)
    assert launcher.hydra_context is not None and launcher.task_function is not None
    Singleton.set_state(singleton_state)
    setup_globals()
    resolvers.register()
    (job.folder / "error.json").unlink(missing_ok=True)  # a requeued job starts afresh
    try:
        with stop_on_signals():
            ret: JobReturn = run_job(
                hydra_context=launcher.hydra_context,
                task_function=launcher.task_function,
                config=job.config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
    except Stopped as exc:
        ignore_signals()
        own = slurm.own_job()
        if own is not None and own.finished:
            job.status, job.error = _outcome(own)
        else:
            job.status = JobStatus.INTERRUPTED
            job.error = f"stopped by {exc.description} from SLURM (scancel --signal, preemption)"
        job.record_error()
        raise SystemExit(exc.exit_code) from None
    if (
        ret.status == HydraJobStatus.FAILED
        and type(ret._return_value).__name__ == "UncompletedJobError"
    ):
        # submitit's handler of the pre-time-limit signal (USR2) ended the task
        job.status = JobStatus.TIMEOUT
        job.error = "SLURM time limit near (submitit's USR2): job stopped"
        job.record_error()
    return ret


# --------------------------------------------------------------------------- on the submitting host


@dataclass(frozen=True)
class Watch:
    """llem's bounds on waiting for SLURM, from the launcher options (seconds)."""

    poll_s: float
    bound_s: float  # a running job is given up this long after it started (time limit + grace)
    pending_s: float | None
    lost_s: float
    parallel: int

    @classmethod
    def of(cls, params: dict[str, object]) -> Watch:
        def number(key: str) -> float:
            value = params.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise UsageError(f"hydra.launcher.{key}={value} must be a positive number")
            return float(value)

        problems = above_maxima(params, MAXIMA)
        if problems:
            raise UsageError("; ".join(problems))
        pending = params.get("pending_timeout_min")
        return cls(
            poll_s=number("poll_s"),
            bound_s=(number("timeout_min") + number("grace_min")) * 60,
            pending_s=None if pending is None else number("pending_timeout_min") * 60,
            lost_s=number("lost_after_s"),
            parallel=int(number("array_parallelism")),
        )


def launch(
    launcher: SlurmLauncherLike, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> Sequence[JobReturn]:
    """Check, validate, resume, submit, follow every job to its outcome, write the summary."""
    from llem.signals import Stopped, ignore_signals, stop_on_signals
    from llem.study.summary import write_summary

    setup_globals()
    assert launcher.config is not None and launcher.task_function is not None
    assert launcher.hydra_context is not None
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir)).resolve()
    partition = launcher.params.get("partition")
    try:
        watch = Watch.of(launcher.params)
        slurm.check_cluster(None if partition is None else str(partition))
    except UsageError as exc:
        _discard(sweep_dir)
        _fail(str(exc))
    task = task_path(launcher.task_function)
    jobs = prepare_jobs(
        launcher.hydra_context,
        launcher.config,
        job_overrides,
        initial_job_idx,
        sweep_dir,
        llem_task=task.startswith("llem."),
    )
    _resume(jobs, bool(launcher.params.get("resume", True)))
    todo = [j for j in jobs if j.status is JobStatus.PENDING]
    if len(todo) < len(jobs):
        _say(
            f"resuming: {len(jobs) - len(todo)} of {len(jobs)} jobs already have a result with "
            "the same config; skipped (hydra.launcher.resume=false to rerun)"
        )
    write_study_plan(sweep_dir, jobs, "slurm", launcher="llem_slurm")
    tracked = _submit(launcher, todo, sweep_dir) if todo else []
    array = f" as array {tracked[0].slurm_id.split('_')[0]}" if tracked else ""
    _say(
        f"study of {len(jobs)} jobs in {sweep_dir} (SLURM partition {partition or '(default)'}, "
        f"{len(tracked)} submitted{array})"
    )
    try:
        with stop_on_signals():
            waits = _watch(watch, tracked, jobs, sweep_dir)
    except Stopped as exc:
        ignore_signals()
        _say(f"{exc.description}: cancelling the study's SLURM jobs; finished results are kept")
        still = [t for t in tracked if t.job.status is JobStatus.RUNNING]
        slurm.cancel([t.slurm_id for t in still])
        for t in still:
            t.job.status = JobStatus.INTERRUPTED
            t.job.error = f"study stopped by {exc.description}"
            t.job.record_error()
        write_summary(sweep_dir, final=True, interrupted=True)
        _say(f"summary: {sweep_dir / SUMMARY_MD}")
        raise SystemExit(exc.exit_code) from None
    write_summary(sweep_dir, final=True)
    if waits:
        _say(
            f"SLURM queue wait (submission -> start): min {min(waits):.2f} s, median "
            f"{statistics.median(waits):.2f} s, max {max(waits):.2f} s over {len(waits)} job starts"
        )
    _say(f"summary: {sweep_dir / SUMMARY_MD}")
    failed = [j for j in jobs if j.status not in (JobStatus.OK, JobStatus.SKIPPED)]
    if failed:
        raise StudyFailed(f"{len(failed)}/{len(jobs)} jobs failed (see {sweep_dir / SUMMARY_MD})")
    return [_job_return(j) for j in jobs]


def _submit(launcher: SlurmLauncherLike, todo: list[Job], sweep_dir: Path) -> list[_Tracked]:
    """One ``sbatch`` array for the jobs; a refusal: one ``Error:`` line, exit 2, no folder left."""
    import submitit

    params = {k: v for k, v in launcher.params.items() if k not in LLEM_KEYS}
    executor = submitit.AutoExecutor(
        folder=str(params.pop("submitit_folder")),
        cluster="slurm",
        slurm_max_num_timeout=params.pop("max_num_timeout"),
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    for job in todo:
        job.status = JobStatus.RUNNING  # submitted: pending or running on SLURM
    try:  # submitit echoes sbatch's refusal on stderr: keep it for the one Error: line
        with contextlib.redirect_stderr(io.StringIO()):
            submitted: list[submitit.Job[JobReturn]] = executor.map_array(
                launcher,  # type: ignore[arg-type]  # called in the job as launcher(job, state)
                todo,
                [Singleton.get_state()] * len(todo),
            )
    except Exception as exc:  # sbatch's refusal, whatever submitit wraps it in
        _discard(sweep_dir)
        _fail(f"sbatch refused the study: {_sbatch_error(str(exc))}")
    now = time.time()
    tracked = []
    for job, sub in zip(todo, submitted, strict=True):
        job.log = Path(sub.paths.stdout)
        tracked.append(_Tracked(job, str(sub.job_id), now, now))
    return tracked


def _watch(watch: Watch, tracked: list[_Tracked], jobs: list[Job], sweep_dir: Path) -> list[float]:
    """Poll SLURM until every submitted job has an outcome; the queue waits (s) of job starts."""
    from llem.study.summary import write_summary

    waits: list[float] = []
    durations: list[float] = []
    t0 = progress = time.time()
    arrays = sorted({t.slurm_id.split("_")[0] for t in tracked})
    open_jobs = list(tracked)
    states: dict[str, slurm.SlurmJob] = {}
    while open_jobs:
        time.sleep(watch.poll_s)
        now = time.time()
        states = {s.job_id: s for a in arrays for s in slurm.query(a)}
        for t in list(open_jobs):
            state = states.get(t.slurm_id)
            if state is not None:
                t.last_seen = now
                running = state.started_unix_s is not None and state.state != "PENDING"
                if running and not t.started:
                    t.started, t.job.started, progress = True, now, now
                    waits.append(now - t.submitted)
                    _say(
                        f"job {jobs.index(t.job) + 1}/{len(jobs)} started: {t.job.label} "
                        f"(SLURM job {t.slurm_id} on {state.node})"
                    )
                elif state.state == "PENDING" and t.started:  # requeued: it starts again
                    t.started, t.submitted = False, now
            if _settle(t, state, now, watch):
                open_jobs.remove(t)
                progress = now
                t.job.duration_s = now - (t.job.started or now)
                durations.append(t.job.duration_s)
                remaining = sum(1 for o in open_jobs if not o.started)
                _report(t.job, jobs, durations, remaining, watch.parallel, t0)
                write_summary(sweep_dir)
        stalled = (
            watch.pending_s is not None
            and open_jobs
            and not any(t.started for t in open_jobs)
            and now - progress > watch.pending_s
        )
        if stalled:
            _give_up(open_jobs, states, sweep_dir, watch)
    return waits


def _give_up(
    open_jobs: list[_Tracked], states: dict[str, slurm.SlurmJob], sweep_dir: Path, watch: Watch
) -> None:
    """Jobs pending past ``pending_timeout_min``: cancel them; one ``Error:`` line, exit 2."""
    from llem.study.summary import write_summary

    slurm.cancel([t.slurm_id for t in open_jobs])
    first = states.get(open_jobs[0].slurm_id)
    why = f" (SLURM reason: {first.reason})" if first is not None and first.reason else ""
    minutes = f"{(watch.pending_s or 0) / 60:g}"
    if _ran_nothing(sweep_dir):
        _discard(sweep_dir)
    else:
        for t in open_jobs:
            t.job.status = JobStatus.FAILED
            t.job.error = f"still pending after {minutes} min{why}"
            t.job.record_error()
        write_summary(sweep_dir, final=True)
    _fail(
        f"{len(open_jobs)} SLURM job(s) still pending after hydra.launcher.pending_timeout_min="
        f"{minutes}{why}: cancelled"
    )


def _settle(t: _Tracked, state: slurm.SlurmJob | None, now: float, watch: Watch) -> bool:
    """Give the job its outcome once SLURM ended it (or llem stops waiting); True when settled."""
    job = t.job
    if state is None and now - t.last_seen < watch.lost_s:
        return False
    if state is not None and not state.finished:
        if not (t.started and now - job.started > watch.bound_s):
            return False
        slurm.cancel([t.slurm_id])
        job.status = JobStatus.TIMEOUT
        job.error = (
            f"SLURM job {t.slurm_id} still running {watch.bound_s / 60:.0f} min after its start "
            "(time limit + grace_min): cancelled by llem"
        )
        job.record_error()
        return True
    if (job.folder / RESULT_FILE).exists():
        job.status = JobStatus.OK
        return True
    own = read_error(job.folder)  # the job's own error.json says more than SLURM's exit code
    if state is None:
        job.status = JobStatus.FAILED
        job.error = f"SLURM stopped reporting job {t.slurm_id} for {watch.lost_s:.0f} s"
    elif own is not None and state.state in ("COMPLETED", "FAILED"):
        job.status, job.error = own.status, own.error
        return True
    else:
        job.status, job.error = _outcome(state)
    code = state.exit_code.split(":")[0] if state is not None else ""
    job.exit_code = int(code) if code.isdigit() else None
    job.record_error()
    return True


def _outcome(state: slurm.SlurmJob) -> tuple[JobStatus, str]:
    status, reason = slurm.outcome(state)
    return JobStatus(status), reason


def _report(
    job: Job, jobs: list[Job], durations: list[float], remaining: int, parallel: int, t0: float
) -> None:
    """The job's progress line, as llem's local launcher prints it."""
    eta = sum(durations) / len(durations) * remaining / parallel if durations else 0.0
    result = read_result(job.folder / RESULT_FILE) if job.status is JobStatus.OK else None
    if result is not None:
        detail = ", ".join(m.format(m.of(result)) for m in PROGRESS if m.of(result) is not None)
    else:
        detail = job.error or ""
        tail = _tail(job.log)
        if tail and job.status is JobStatus.FAILED:
            sys.stderr.write(f"--- last lines of {job.log}:\n{tail}\n---\n")
    _say(
        f"job {jobs.index(job) + 1}/{len(jobs)} {job.status} in {job.duration_s:.1f} s: "
        f"{job.label} -> {detail} (elapsed {time.time() - t0:.0f} s, ETA {eta:.0f} s)"
    )


def _sbatch_error(text: str) -> str:
    """sbatch's own complaint out of submitit's exception text."""
    lines = [line.strip() for line in text.splitlines() if "error" in line.lower()]
    return (lines or [text.strip().splitlines()[0] if text.strip() else "no reason given"])[-1]


def _ran_nothing(sweep_dir: Path) -> bool:
    """No job folder in the sweep folder (only Hydra's multirun.yaml and llem's own files)."""
    return not any(p.is_dir() and not p.name.startswith(".") for p in sweep_dir.iterdir())


def _discard(sweep_dir: Path) -> None:
    """Remove a sweep folder no job ran in (Hydra made it for multirun.yaml) and emptied parents."""
    if sweep_dir.is_dir() and _ran_nothing(sweep_dir):
        shutil.rmtree(sweep_dir, ignore_errors=True)
        parent = sweep_dir.parent
        while parent != Path.cwd() and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"Error: {message}\n")
    raise SystemExit(EXIT_USAGE)


def _say(message: str) -> None:
    print(f"[llem] {message}", flush=True)
