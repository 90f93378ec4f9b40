"""What ``hydra/launcher=llem`` does: validate every job, then run each in a fresh process, one per
GPU slot.

- The options (:class:`LlemLauncherConf`) are typed by OmegaConf and range-checked once, before any
  folder is made (:func:`launcher_options`).
- Every job is composed and validated before any starts — llem's pre-flight already validated them
  in the same process, so its configs are reused —; one bad job rejects the sweep (exit 2).
- A job runs as ``python -m llem.study.worker <spec.pkl> <task>``, or the same inside its backend's
  container image (``mode=docker``; ``mode=auto``, the default, when the study spans several
  backends: :mod:`llem.study.isolation`), so GPU memory, NVML state and CUDA contexts never leak
  between jobs and engines never share a process. In subprocess mode that process is forked from a
  pre-imported fork server (:mod:`llem.study.forkserver`) instead of started fresh, unless forking
  is unsafe (a backend that says so, CUDA initialised in the server, ``hydra.launcher.fork=false``):
  ``study.json`` records which, per job.
- With several GPUs, up to one job per GPU group runs at once, pinned with ``CUDA_VISIBLE_DEVICES``
  (GPU UUIDs); without GPUs jobs run one at a time (:class:`Scheduler`).
- A failed job (exception, non-zero exit, SIGKILL/OOM, timeout) gets an ``error.json`` and the study
  goes on (``on_failure=continue``); the study then ends with ``N/M jobs failed`` and a non-zero
  exit code.
- Ctrl-C, SIGTERM and SIGHUP (any number of them) stop the running job(s) and their process
  groups, keep finished results, write the summary marked interrupted, exit 128 + signal. Workers
  die with the launcher even when it is SIGKILLed (:func:`llem.signals.die_with_parent`).
- One study per sweep folder at a time (:class:`llem.lock.FolderLock`).
- Resume: a job whose ``result.json`` is a valid result with the same config hash (and whose
  ``timeseries.parquet`` opens) is skipped; any other previous outcome is moved to
  ``.jobs/replaced/``, where the summary never looks.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn, Protocol

from hydra.core.utils import JobReturn, setup_globals
from hydra.core.utils import JobStatus as HydraJobStatus
from hydra.errors import CompactHydraException
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from hydra_plugins.llem_plugins.llem_launcher import (
    DockerConf,
    LaunchMode,
    LlemLauncherConf,
    OnFailure,
)
from llem.docker.engine import Engine, probe
from llem.errors import EXIT_USAGE, UsageError
from llem.keymetrics import PROGRESS
from llem.lock import FolderLock
from llem.paths import write_atomic
from llem.records import (
    ERROR_FILE,
    JOBS_DIR,
    RESULT_FILE,
    SUMMARY_MD,
    TIMESERIES_FILE,
    ErrorRecord,
    JobStatus,
    read_error,
    write_error,
)
from llem.result import ResultMetrics
from llem.signals import Stopped, ignore_signals, stop_on_signals
from llem.study.forkserver import ForkServer, claim, server_modules
from llem.study.remeasure import contention_note, keep_attempt, should_remeasure
from llem.study.scan import read_result
from llem.study.studyfiles import EXIT_UNSAVED, plan_or_exit, plan_or_warn, why, writing

KILL_GRACE_S = 10.0
REPLOT_S = 30.0  # the study's charts are redrawn after a job at most this often (and at the end)
POLL_S = 0.05
REPLACED_DIR = f"{JOBS_DIR}/replaced"  # earlier outcomes of re-run jobs (never scanned)
FORKED = "fork server"
FORKSERVER_LOG = "forkserver.log"
KEPT = (JobStatus.OK, JobStatus.SKIPPED)  # the outcomes of a study that succeeded


class JobProcess(Protocol):
    """A running job's process: a fresh :class:`subprocess.Popen` or a fork-served job."""

    @property
    def pid(self) -> int: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...


class StudyFailed(CompactHydraException):
    """Some jobs failed; the summary is written. Printed as one line by Hydra (exit code 1)."""


def _usage_exit(message: str) -> NoReturn:
    from llem.cli import fail

    fail(UsageError(message))


# ---------------------------------------------------------------------------- options


# the highest value of each numeric launcher option, and its unit: beyond it a study would wait
# "forever" (cooldown_s=1e300 hangs after the first job) or ask for more than a host has
MAXIMA: dict[str, tuple[float, str]] = {
    "timeout_s": (604_800.0, "s (7 days)"),
    "cooldown_s": (3_600.0, "s (1 hour)"),
    "gpus_per_job": (256, "GPUs"),
    "max_parallel": (1024, "jobs"),
    "max_attempts": (10, "attempts"),
}


def above_maxima(
    values: Mapping[str, object], maxima: Mapping[str, tuple[float, str]]
) -> list[str]:
    """``hydra.launcher.<key>=<value> is out of range`` for each value above its maximum."""
    return [
        f"hydra.launcher.{key}={value:g} is out of range: at most {high:g} {unit}"
        for key, (high, unit) in maxima.items()
        if isinstance(value := values.get(key), (int, float)) and value > high
    ]


def option_problems(conf: LlemLauncherConf) -> list[str]:
    """What is out of range in the launcher's options (empty when all is well): the lower bounds
    here, the upper ones in :data:`MAXIMA`."""
    checks = (
        (conf.timeout_s is not None and not conf.timeout_s > 0, "timeout_s must be > 0 or null"),
        (not conf.cooldown_s >= 0, "cooldown_s must be >= 0"),
        (conf.gpus_per_job < 1, "gpus_per_job must be >= 1"),
        (
            conf.max_parallel is not None and conf.max_parallel < 1,
            "max_parallel must be >= 1 or null",
        ),
        (conf.max_attempts < 1, "max_attempts must be >= 1 (1 = no re-measuring)"),
    )
    values = {key: getattr(conf, key) for key in MAXIMA}
    return [f"hydra.launcher.{text}" for bad, text in checks if bad] + above_maxima(values, MAXIMA)


def launcher_options(params: Mapping[str, object]) -> LlemLauncherConf:
    """The launcher's options as their dataclass, checked: a bad one exits 2 with one ``Error:``
    line."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(LlemLauncherConf), dict(params))
        conf = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        _usage_exit(str(exc).splitlines()[0])
    assert isinstance(conf, LlemLauncherConf)
    problems = option_problems(conf)
    if problems:
        _usage_exit("; ".join(problems))
    return conf


# ---------------------------------------------------------------------------- jobs


@dataclass
class Job:
    num: int
    overrides: list[str]
    config: DictConfig  # the job's full config (hydra node included), sweep dirs frozen
    folder: Path
    config_hash: str
    backend: str
    preload: tuple[str, ...] = ()  # what the fork server imports for it (llem.harness.preload)
    status: JobStatus = JobStatus.PENDING
    started: float = 0.0  # time.time() at start, s
    duration_s: float = 0.0
    proc: JobProcess | None = None
    process: str = ""  # FORKED, or "fresh interpreter (<why not forked>)"
    slot: str | None = None  # CUDA_VISIBLE_DEVICES of the job (None: no GPU)
    log: Path | None = None
    error: str | None = None
    exit_code: int | None = None
    attempt: int = 1  # re-measured after contention: 2, 3, ... (hydra.launcher.max_attempts)

    @property
    def label(self) -> str:
        return " ".join(self.overrides) or "(defaults)"

    def record_error(self) -> None:
        """This job's ``error.json`` (a disk that refuses it: the summary says ``incomplete``)."""
        record = ErrorRecord(
            status=self.status,
            error=self.error,
            exit_code=self.exit_code,
            overrides=self.overrides,
            log=str(self.log) if self.log else None,
        )
        with contextlib.suppress(OSError):
            write_error(self.folder, record)


def prepare_jobs(
    hydra_context: HydraContext,
    config: DictConfig,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    sweep_dir: Path,
    llem_task: bool = True,
) -> list[Job]:
    """Compose every job; exit 2 listing each bad one before anything runs.

    Jobs of llem's own task get their validated experiment from the pre-flight (validated there), or
    are validated here when the study did not come through the ``llem`` command; other Hydra apps
    run as they are.
    """
    from llem.config import validate
    from llem.harness import preload
    from llem.preflight import validated

    jobs, problems = [], []
    for offset, overrides in enumerate(job_overrides):
        num = initial_job_idx + offset
        cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = f"{cfg.hydra.job.name}_{num}"
            cfg.hydra.job.num = num
            # frozen: ${now:} must not be re-evaluated in the child
            cfg.hydra.sweep.dir = str(sweep_dir)
            cfg.hydra.sweep.subdir = str(cfg.hydra.sweep.subdir)
        folder = sweep_dir / str(cfg.hydra.sweep.subdir)
        if not llem_task:
            jobs.append(Job(num, list(overrides), cfg, folder, "", "n/a"))
            continue
        try:
            exp = validated(overrides) or validate(cfg)
        except UsageError as exc:
            problems.append(f"  [{' '.join(overrides)}] {exc}")
            continue
        jobs.append(
            Job(
                num,
                list(overrides),
                cfg,
                folder,
                exp.config_hash(),
                exp.backend.name,
                tuple(preload(exp)),
            )
        )
    if problems:
        _usage_exit(
            f"{len(problems)} of {len(job_overrides)} jobs are invalid; nothing was run:\n"
            + "\n".join(problems)
        )
    return jobs


def check_backends(jobs: list[Job], mode: LaunchMode, engine: Callable[[], Engine]) -> LaunchMode:
    """The mode the jobs run in (``auto`` resolved); a sweep over several backends that cannot run
    in containers is refused before any job (exit 2)."""
    from llem.study.isolation import launch_mode

    try:
        return LaunchMode(launch_mode(mode.value, {j.backend for j in jobs}, engine))
    except UsageError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        raise SystemExit(EXIT_USAGE) from None


def gpu_slots(gpus_per_job: int, max_parallel: int | None) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES values, one per concurrent job: groups of GPU UUIDs, or [None] without
    GPUs."""
    from llem.energy.nvml import load_nvml, visible_gpus

    nvml, _ = load_nvml()
    if nvml is None:
        return [None]
    try:
        gpus, _ = visible_gpus(nvml)
    finally:
        nvml.nvmlShutdown()
    if not gpus:
        return [None]
    groups = [
        gpus[i : i + gpus_per_job] for i in range(0, len(gpus) - gpus_per_job + 1, gpus_per_job)
    ]
    slots: list[str | None] = [",".join(g.uuid for g in group) for group in groups] or [
        ",".join(g.uuid for g in gpus)
    ]
    return slots[:max_parallel] if max_parallel else slots


def task_path(task_function: TaskFunction) -> str:
    """'module:name' (or '/path/app.py:name' for a script run as __main__) of the task function."""
    module = task_function.__module__
    if module == "__main__":
        module = str(Path(str(sys.modules["__main__"].__file__)).resolve())
    return f"{module}:{task_function.__name__}"


def container_name(sweep_dir: Path, job: Job) -> str:
    return f"llem-{hashlib.sha256(str(sweep_dir).encode()).hexdigest()[:10]}-{job.num}"


def docker_argv(job: Job, spec: Path, task: str, d: DockerConf, sweep_dir: Path) -> list[str]:
    """``docker run`` for one job: the sweep folder is mounted at its own path (results come back
    through it); secrets are passed by name only (``-e HF_TOKEN``), so their values never reach argv
    or a file."""
    image = d.image or d.images[job.backend]
    # no --rm: with it, Podman's Docker API can lose the exit code; the launcher removes the
    # container
    argv = [
        d.executable,
        "run",
        "--name",
        container_name(sweep_dir, job),
        "--entrypoint",
        d.python,
        "-v",
        f"{sweep_dir}:{sweep_dir}",
        "-e",
        "PYTHONUNBUFFERED=1",
    ]
    if d.gpus and job.slot:
        argv += ["--gpus", f'"device={job.slot}"']
    if d.runtime:
        argv += ["--runtime", d.runtime]
    if d.network:
        argv += ["--network", d.network]
    for limit in d.ulimits:
        argv += ["--ulimit", limit]
    if d.hf_cache:
        argv += ["-v", f"{d.hf_cache}:/hf-cache", "-e", "HF_HOME=/hf-cache"]
    for mount in d.mounts:
        argv += ["-v", mount]
    for name in d.env:
        if name in os.environ:
            argv += ["-e", name]
    return [*argv, *d.extra_args, image, "-m", "llem.study.worker", str(spec), task]


def _print(msg: str) -> None:
    print(msg, flush=True)


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _error_line(job: Job) -> str:
    """The most telling line of a failed job's output: its last 'Error:' line, else its last
    line."""
    tail = _tail(job.log, 40).splitlines()
    errors = [line for line in tail if line.startswith("Error: ") or "Error" in line.split(":")[0]]
    return (errors or tail or ["(no output)"])[-1].strip()


# ---------------------------------------------------------------------------- the scheduler


class Scheduler:
    """Owns the GPU slots and the jobs: starts each pending job on a free slot, watches it to its
    end."""

    def __init__(
        self,
        conf: LlemLauncherConf,
        sweep_dir: Path,
        task: str,
        jobs: list[Job],
        server: ForkServer | None = None,
    ) -> None:
        self.conf, self.sweep_dir, self.task, self.jobs = conf, sweep_dir, task, jobs
        self.server = server
        self.slots = gpu_slots(conf.gpus_per_job, conf.max_parallel)
        self.free: list[tuple[str | None, float]] = [
            (s, 0.0) for s in self.slots
        ]  # (slot, free at)
        self.todo = deque(j for j in jobs if j.status is JobStatus.PENDING)
        self.running: list[Job] = []
        self.durations: list[float] = []
        self.t_start = time.time()
        self.plotted = time.monotonic()  # when the study's charts were last drawn

    @property
    def where(self) -> str:
        n = len(self.slots)
        return f"{n} GPU slot(s)" if self.slots[0] is not None else "no GPU: one job at a time"

    def run(self) -> Stopped | None:
        """Run every pending job; the :class:`Stopped` that ended the study early, else None.

        Call it inside :func:`llem.signals.stop_on_signals`: the first Ctrl-C/SIGTERM/SIGHUP stops
        the running jobs (their whole process groups, SIGKILL after the grace period); later
        signals are ignored until every job is down."""
        from llem.study.summary import keep_summary

        stop = False
        try:
            while (self.todo and not stop) or self.running:
                self._start_ready(stop)
                time.sleep(POLL_S)
                for job in list(self.running):
                    if self._finished(job):
                        self._settle(job, again=not stop)
                        plot = time.monotonic() >= self.plotted + REPLOT_S
                        keep_summary(self.sweep_dir, plot=plot)
                        self.plotted = time.monotonic() if plot else self.plotted
                        stop |= job.status is not JobStatus.OK and (
                            self.conf.on_failure is OnFailure["stop"]
                        )
        except Stopped as stopped:
            ignore_signals()
            _print(
                f"\n[llem] {stopped.description}: stopping the running job(s); finished results "
                "are kept"
            )
            if self.server is not None:  # every forked job, also one whose start was cut short
                self.server.stop_jobs(signal.SIGINT, KILL_GRACE_S)
            for job in list(self.running):
                self._stop(job, signal.SIGINT)
                if job.proc is not None and self._finished(job) and job.status is JobStatus.OK:
                    self._settle(job, again=False)  # it finished just before the signal: keep it
                    continue
                job.status, job.error = JobStatus.INTERRUPTED, f"stopped by {stopped.description}"
                (job.folder / ERROR_FILE).unlink(missing_ok=True)
                job.record_error()
            return stopped
        return None

    def _settle(self, job: Job, again: bool) -> None:
        """Book a job that has ended: free its slot, report it; ``again``: re-measure it when it
        was contended and attempts are left (never while the study stops)."""
        self.running.remove(job)
        self.free.append((job.slot, time.time() + self.conf.cooldown_s))
        self.durations.append(job.duration_s)
        result = self._report(job)
        if again and should_remeasure(result, job.attempt, self.conf.max_attempts):
            self._remeasure(job)

    def _remeasure(self, job: Job) -> None:
        """Keep the contended attempt aside and queue the job again, first in line."""
        try:
            kept = keep_attempt(job.folder, job.log, job.attempt)
        except OSError as exc:
            _print(f"[llem] job {self._position(job)} not re-measured: {why(exc)}")
            return
        job.attempt += 1
        job.status, job.proc = JobStatus.PENDING, None
        self.todo.appendleft(job)
        _print(
            f"[llem] job {self._position(job)} re-measuring (attempt {job.attempt}/"
            f"{self.conf.max_attempts}): contended; the earlier attempt is kept in {kept}"
        )

    def _start_ready(self, stop: bool) -> None:
        now = time.time()
        for entry in [f for f in self.free if f[1] <= now]:
            if not self.todo or stop:
                return
            self.free.remove(entry)
            job = self.todo.popleft()
            job.slot = entry[0]
            self.running.append(job)  # first: a stop during its start stops and records it
            try:
                self._start(job)
            except OSError as exc:  # e.g. its spec or log on a full or read-only disk
                spec = self.sweep_dir / JOBS_DIR / f"{job.num}.pkl"
                job.status, job.error = JobStatus.FAILED, f"not started: {exc.filename or spec}"
                job.error += f" ({why(exc)})"
                job.record_error()
                self._settle(job, again=False)
                continue
            _print(
                f"[llem] job {self._position(job)} started: {job.label}"
                + (f" on {job.slot}" if job.slot else "")
            )

    def _position(self, job: Job) -> str:
        return f"{self.jobs.index(job) + 1}/{len(self.jobs)}"

    def _spec(self, job: Job) -> Path:
        """The job's composed config, pickled (keeps Hydra's typed nodes; read by the same llem)."""
        spec = self.sweep_dir / JOBS_DIR / f"{job.num}.pkl"
        spec.parent.mkdir(parents=True, exist_ok=True)
        with writing(spec):  # a failure names the spec, not its temp file
            write_atomic(spec, pickle.dumps(job.config))
        return spec

    def _command(self, job: Job, spec: Path) -> tuple[list[str], dict[str, str]]:
        """argv and environment of the job's process."""
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if job.slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = job.slot
        if self.conf.mode is LaunchMode.subprocess:
            # the worker dies with this process, even if it is SIGKILLed
            argv = [sys.executable, "-m", "llem.study.worker", str(spec), self.task]
            return [*argv, str(os.getpid())], env
        if self.conf.docker.host:
            env["DOCKER_HOST"] = self.conf.docker.host
        return docker_argv(job, spec, self.task, self.conf.docker, self.sweep_dir), env

    def _start(self, job: Job) -> None:
        (job.folder / ERROR_FILE).unlink(missing_ok=True)  # a previous attempt's failure record
        if self.conf.mode is LaunchMode.docker:
            self._remove_container(job)
        spec = self._spec(job)
        argv, env = self._command(job, spec)
        job.log = self.sweep_dir / JOBS_DIR / f"{job.num}.log"
        job.started, job.status = time.time(), JobStatus.RUNNING
        if job.process == FORKED and self.server is not None:
            try:
                job.proc = self.server.start(spec, self.task, job.log, env)
                return
            except OSError as exc:  # the server is gone: this job and the next start fresh
                self.server = None
                for j in self.jobs:
                    if j.process == FORKED and j.status in (JobStatus.PENDING, JobStatus.RUNNING):
                        j.process = f"fresh interpreter ({exc})"
                plan_or_warn(self.sweep_dir, self.jobs, self.conf.mode.value)
        with job.log.open("w") as log:
            job.proc = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _finished(self, job: Job) -> bool:
        """Whether ``job`` has ended (then its status, error and error.json are set)."""
        assert job.proc is not None
        code = job.proc.poll()
        elapsed = time.time() - job.started
        timeout_s = self.conf.timeout_s
        if code is None:
            if timeout_s is not None and elapsed > timeout_s:
                self._stop(job, signal.SIGTERM)
                job.duration_s, job.status = elapsed, JobStatus.TIMEOUT
                job.error = f"timed out after {timeout_s:.0f} s (hydra.launcher.timeout_s)"
                job.record_error()
                return True
            return False
        job.duration_s, job.exit_code = elapsed, code
        if self.conf.mode is LaunchMode.docker:
            self._remove_container(job)
        recorded = read_error(job.folder)
        if code == 0 and recorded is not None:  # the job recorded its own failure
            job.status, job.error = JobStatus.FAILED, recorded.error
        elif code == 0 and job.config_hash and read_result(job.folder / RESULT_FILE) is None:
            job.status = JobStatus.FAILED  # llem's task always writes a result when it succeeds
            job.error = f"the job exited 0 without writing a valid {RESULT_FILE}"
        elif code == 0:
            job.status = JobStatus.OK
        elif code < 0:
            job.status = JobStatus.KILLED
            name = signal.Signals(-code).name
            job.error = f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        else:
            job.status, job.error = JobStatus.FAILED, _error_line(job)
        if job.status is not JobStatus.OK and recorded is None:
            job.record_error()
        return True

    def _stop(self, job: Job, sig: int) -> None:
        """Signal the job's process group; SIGKILL after a grace period; remove its container."""
        proc = job.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        if self.conf.mode is LaunchMode.docker:
            self._remove_container(job)

    def _remove_container(self, job: Job) -> None:
        d = self.conf.docker
        env = dict(os.environ) | ({"DOCKER_HOST": d.host} if d.host else {})
        subprocess.run(
            [d.executable, "rm", "-f", container_name(self.sweep_dir, job)],
            capture_output=True,
            timeout=60,
            check=False,
            env=env,
        )

    def _report(self, job: Job) -> ResultMetrics | None:
        """The job's progress line: its key metrics and contention (or its error), elapsed time
        and ETA; its result (None when it failed)."""
        remaining = len(self.todo)
        mean = sum(self.durations) / len(self.durations) if self.durations else 0.0
        eta = mean * remaining / len(self.slots)
        result = read_result(job.folder / RESULT_FILE) if job.status is JobStatus.OK else None
        if result is not None:
            detail = ", ".join(m.format(m.of(result)) for m in PROGRESS if m.of(result) is not None)
            detail += contention_note(result)
        else:
            detail = job.error or ""
            tail = _tail(job.log)
            if tail and job.status is JobStatus.FAILED:
                sys.stderr.write(f"--- last lines of {job.log}:\n{tail}\n---\n")
        _print(
            f"[llem] job {self._position(job)} {job.status} in {job.duration_s:.1f} s: {job.label}"
            f" -> {detail} (elapsed {time.time() - self.t_start:.0f} s, ETA {eta:.0f} s)"
        )
        return result


# ---------------------------------------------------------------------------- the study


class Study:
    """One sweep through llem's launcher: prepare and check every job, plan, schedule, summarise."""

    def __init__(
        self,
        conf: LlemLauncherConf,
        config: DictConfig,
        hydra_context: HydraContext,
        task_function: TaskFunction,
    ) -> None:
        self.conf, self.config = conf, config
        self.hydra_context, self.task = hydra_context, task_path(task_function)
        self.saved = False  # whether the final summary was written

    def run(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        setup_globals()
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        jobs = prepare_jobs(
            self.hydra_context,
            self.config,
            job_overrides,
            initial_job_idx,
            sweep_dir,
            llem_task=self.task.startswith("llem."),
        )
        docker = self.conf.docker
        mode = check_backends(jobs, self.conf.mode, lambda: probe(docker.executable, docker.host))
        self.conf = replace(self.conf, mode=mode)
        lock = FolderLock(sweep_dir)
        try:
            lock.acquire()
        except UsageError as exc:
            _usage_exit(str(exc))
        except OSError as exc:
            _usage_exit(f"cannot write the study folder {sweep_dir} ({exc.strerror})")
        if lock.warning:
            _print(f"[llem] warning: {lock.warning}")
        try:
            with stop_on_signals():
                stopped = self._run(jobs, sweep_dir)
        finally:
            lock.release()
        if stopped is None and not self.saved and all(j.status in KEPT for j in jobs):
            raise SystemExit(EXIT_UNSAVED)  # the final summary was not written (said in one line)
        return self._outcome(jobs, sweep_dir, stopped)

    def _run(self, jobs: list[Job], sweep_dir: Path) -> Stopped | None:
        """Plan and schedule the jobs; the summary is final when it returns (Stopped or not)."""
        from llem.study.summary import keep_summary

        stopped: Stopped | None = None
        server: ForkServer | None = None
        try:
            _resume(jobs, self.conf.resume)
            server = self._fork_server(jobs, sweep_dir)
            plan_or_exit(sweep_dir, jobs, self.conf.mode.value)
            scheduler = Scheduler(self.conf, sweep_dir, self.task, jobs, server)
            skipped = len(jobs) - len(scheduler.todo)
            if skipped:
                _print(
                    f"[llem] resuming: {skipped} of {len(jobs)} jobs already have a result with "
                    "the same config; skipped (hydra.launcher.resume=false to rerun)"
                )
            mode = self.conf.mode.value
            _print(f"[llem] study of {len(jobs)} jobs in {sweep_dir} ({mode}, {scheduler.where})")
            stopped = scheduler.run()
        except Stopped as exc:  # between jobs: nothing is running
            ignore_signals()
            stopped = exc
        finally:
            if server is not None:
                server.close()
        self.saved = keep_summary(sweep_dir, final=True, interrupted=stopped is not None)
        return stopped

    def _fork_server(self, jobs: list[Job], sweep_dir: Path) -> ForkServer | None:
        """Decide how each pending job starts (``job.process``); the fork server if any forks."""
        from llem.backends.registry import get_backend

        def why_fresh(job: Job) -> str | None:
            if self.conf.mode is not LaunchMode.subprocess:
                return f"{self.conf.mode.value} mode"
            if not self.conf.fork:
                return "hydra.launcher.fork=false"
            if job.backend != "n/a" and not get_backend(job.backend).forkable:
                return f"backend {job.backend} must not be forked"
            return None

        forkable = [j for j in jobs if why_fresh(j) is None]  # resumed ones too: as the pre-flight
        for job in jobs:
            if job.status is JobStatus.PENDING:
                why = why_fresh(job)
                job.process = FORKED if why is None else f"fresh interpreter ({why})"
        forked = [j for j in jobs if j.status is JobStatus.PENDING and j.process == FORKED]
        if not forked:
            return None
        modules = server_modules(self.task, (m for j in forkable for m in j.preload))
        (sweep_dir / JOBS_DIR).mkdir(parents=True, exist_ok=True)
        server = claim(modules, sweep_dir / JOBS_DIR / FORKSERVER_LOG)
        problem = server.problem()
        if problem is None:
            return server
        server.close()
        for job in forked:
            job.process = f"fresh interpreter ({problem})"
        return None

    def _outcome(
        self, jobs: list[Job], sweep_dir: Path, stopped: Stopped | None
    ) -> list[JobReturn]:
        """Exit 128 + signal when stopped; non-zero when any planned job is not ok; else the
        returns."""
        if stopped is not None:
            raise SystemExit(stopped.exit_code)
        failed = [j for j in jobs if j.status not in KEPT]
        if failed:
            not_run = sum(j.status is JobStatus.PENDING for j in failed)
            detail = f", {not_run} not run (on_failure=stop)" if not_run else ""
            raise StudyFailed(
                f"{len(failed) - not_run}/{len(jobs)} jobs failed{detail} "
                f"(see {sweep_dir / SUMMARY_MD if self.saved else 'the job folders'})"
            )
        return [_job_return(j) for j in jobs]


def _resume(jobs: list[Job], resume: bool) -> None:
    """Skip jobs with a sound matching result; move any other earlier outcome to
    ``.jobs/replaced/`` (the summary never reads it), saying why when the result was damaged."""
    for job in jobs:
        if not job.folder.exists():
            continue
        problem = _result_problem(job.folder) if (job.folder / RESULT_FILE).exists() else None
        if (job.folder / RESULT_FILE).exists() and problem is None:
            result = read_result(job.folder / RESULT_FILE)
            if resume and job.config_hash and result and result.config_hash == job.config_hash:
                job.status = JobStatus.SKIPPED
                continue
        elif problem is not None:
            _print(f"[llem] job {job.num} will run again: {problem}")
        replaced = job.folder.parent / REPLACED_DIR / f"{job.folder.name}-{time.time_ns()}"
        try:
            replaced.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(job.folder, replaced)
        except OSError as exc:  # permissions, a file in the way, a busy or read-only folder
            why = exc.strerror or str(exc).splitlines()[0][:200]
            _usage_exit(
                f"cannot move the earlier outcome of job {job.num} ({job.folder}) aside to "
                f"{replaced.parent} ({why}): make both writable, or use another hydra.sweep.dir"
            )


def _result_problem(folder: Path) -> str | None:
    """Why a job folder's result cannot be kept (None when ``result.json`` is a valid result and its
    time series, if any, opens)."""
    from pydantic import ValidationError

    from llem.result import Result

    try:
        result = Result.model_validate_json((folder / RESULT_FILE).read_bytes())
    except (OSError, ValidationError):
        return f"its {RESULT_FILE} is damaged"
    series = folder / (result.energy.timeseries or TIMESERIES_FILE)
    if result.energy.timeseries is None and not series.exists():
        return None
    import pyarrow.parquet

    try:
        pyarrow.parquet.read_metadata(series)
    except (OSError, ValueError) as exc:
        return f"its {series.name} is damaged ({str(exc).splitlines()[0][:80]})"
    return None


def _job_return(job: Job) -> JobReturn:
    cfg = job.config
    ret = JobReturn()
    ret.overrides = job.overrides
    ret.hydra_cfg = cfg
    ret.cfg = OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"])
    ret.working_dir = str(job.folder)
    ret.task_name = str(cfg.hydra.job.name)
    ret.status = HydraJobStatus.COMPLETED
    ret.return_value = {"result": str(job.folder / RESULT_FILE), "status": job.status.value}
    return ret
