"""What ``hydra/launcher=llem`` does: validate every job, then run each in a fresh process, one per GPU slot.

- Every job is composed and validated before any starts: one bad job rejects the sweep (exit 2).
- A job runs as ``python -m llem.study.worker <spec.pkl> <task>`` (or the same inside a container), so
  GPU memory, NVML state and CUDA contexts never leak between jobs and engines never share a process.
- With several GPUs, up to one job per GPU group runs at once, pinned with ``CUDA_VISIBLE_DEVICES``
  (GPU UUIDs); without GPUs jobs run one at a time.
- A failed job (exception, non-zero exit, SIGKILL/OOM, timeout) gets an ``error.json`` and the study goes
  on (``on_failure=continue``); the study then ends with ``N/M jobs failed`` and a non-zero exit code.
- Ctrl-C stops the running job(s), keeps finished results, writes the summary marked interrupted, exit 130.
- Resume: a job whose ``result.json`` exists with the same config hash is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus, setup_globals
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from llem import __version__
from llem.errors import EXIT_USAGE, UsageError
from llem.paths import write_json_atomic

JOBS_DIR = ".jobs"  # job specs and logs, inside the sweep folder
KILL_GRACE_S = 10.0


class StudyFailed(CompactHydraException):
    """Some jobs failed; the summary is written. Printed as one line by Hydra (exit code 1)."""


@dataclass
class Job:
    num: int
    overrides: list[str]
    config: DictConfig  # the job's full config (hydra node included), sweep dirs frozen
    folder: Path
    config_hash: str
    backend: str
    status: str = (
        "pending"  # pending | skipped | running | ok | failed | timeout | killed | interrupted
    )
    started: float = 0.0
    duration_s: float = 0.0
    proc: subprocess.Popen | None = None
    slot: str | None = None
    log: Path | None = None
    error: str | None = None
    exit_code: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return " ".join(self.overrides) or "(defaults)"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _print(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------- preparing the jobs


def prepare_jobs(
    launcher, job_overrides, initial_job_idx: int, sweep_dir: Path, llem_task: bool = True
) -> list[Job]:
    """Compose and validate every job; exit 2 listing each bad one before anything runs.

    Jobs of llem's own task are validated against the experiment schema; other Hydra apps run as they are.
    """
    from llem.config import validate

    jobs, problems = [], []
    for offset, overrides in enumerate(job_overrides):
        num = initial_job_idx + offset
        cfg = launcher.hydra_context.config_loader.load_sweep_config(
            launcher.config, list(overrides)
        )
        with open_dict(cfg):
            cfg.hydra.job.id = f"{cfg.hydra.job.name}_{num}"
            cfg.hydra.job.num = num
            cfg.hydra.sweep.dir = str(
                sweep_dir
            )  # frozen: ${now:} must not be re-evaluated in the child
            cfg.hydra.sweep.subdir = str(cfg.hydra.sweep.subdir)
        folder = sweep_dir / str(cfg.hydra.sweep.subdir)
        if not llem_task:
            jobs.append(Job(num, list(overrides), cfg, folder, "", "n/a"))
            continue
        try:
            exp = validate(cfg)
        except UsageError as exc:
            problems.append(f"  [{' '.join(overrides)}] {exc}")
            continue
        jobs.append(Job(num, list(overrides), cfg, folder, exp.config_hash(), exp.backend.name))
    if problems:
        sys.stderr.write(
            f"Error: {len(problems)} of {len(job_overrides)} jobs are invalid; nothing was run:\n"
            + "\n".join(problems)
            + "\n"
        )
        raise SystemExit(EXIT_USAGE)
    return jobs


def check_backends(jobs: list[Job], mode: str, docker_usable) -> None:
    """A sweep over several backends needs isolated containers: refuse it before any job otherwise."""
    from llem.preflight import check_isolation

    try:
        check_isolation({j.backend for j in jobs}, mode, docker_usable)
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(EXIT_USAGE) from None


def gpu_slots(gpus_per_job: int, max_parallel: int | None) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES values, one per concurrent job: groups of GPU UUIDs, or [None] without GPUs."""
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
    slots = [",".join(g.uuid for g in group) for group in groups] or [
        ",".join(g.uuid for g in gpus)
    ]
    return slots[:max_parallel] if max_parallel else slots


# ---------------------------------------------------------------------------- running one job


def task_path(task_function) -> str:
    """'module:name' (or '/path/app.py:name' for a script run as __main__) of the task function."""
    module = task_function.__module__
    if module == "__main__":
        module = str(Path(sys.modules["__main__"].__file__).resolve())
    return f"{module}:{task_function.__name__}"


def write_spec(job: Job, sweep_dir: Path) -> Path:
    """The job's composed config, pickled (keeps Hydra's typed nodes; read by the same llem version)."""
    import pickle

    spec = sweep_dir / JOBS_DIR / f"{job.num}.pkl"
    spec.parent.mkdir(parents=True, exist_ok=True)
    tmp = spec.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(job.config))
    os.replace(tmp, spec)
    return spec


def command(job: Job, spec: Path, task: str, params, sweep_dir: Path) -> tuple[list[str], dict]:
    """argv and environment of the job's process."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if job.slot is not None:
        env["CUDA_VISIBLE_DEVICES"] = job.slot
    if params.mode == "subprocess":
        return [sys.executable, "-m", "llem.study.worker", str(spec), task], env
    d = params.docker
    if d.host:
        env["DOCKER_HOST"] = d.host
    return docker_argv(job, spec, task, d, sweep_dir), env


def docker_argv(job: Job, spec: Path, task: str, d, sweep_dir: Path) -> list[str]:
    """``docker run`` for one job: the sweep folder is mounted at its own path (results come back through
    it); secrets are passed by name only (``-e HF_TOKEN``), so their values never reach argv or a file."""
    image = d.image or d.images[job.backend]
    # no --rm: with it, Podman's Docker API can lose the exit code; the launcher removes the container
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


def container_name(sweep_dir: Path, job: Job) -> str:
    import hashlib

    return f"llem-{hashlib.sha256(str(sweep_dir).encode()).hexdigest()[:10]}-{job.num}"


def write_error(job: Job) -> None:
    job.folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        job.folder / "error.json",
        {
            "status": job.status,
            "error": job.error,
            "exit_code": job.exit_code,
            "overrides": job.overrides,
            "ended_at": _now(),
            "log": str(job.log) if job.log else None,
        },
    )


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _error_line(job: Job) -> str:
    """The most telling line of a failed job's output: its last 'Error:' line, else its last line."""
    tail = _tail(job.log, 40).splitlines()
    errors = [line for line in tail if line.startswith("Error: ") or "Error" in line.split(":")[0]]
    return (errors or tail or ["(no output)"])[-1].strip()


# ---------------------------------------------------------------------------- the scheduler


def launch(launcher, job_overrides, initial_job_idx: int) -> list[JobReturn]:
    from llem.study.summary import write_summary

    setup_globals()
    params = (
        OmegaConf.create(launcher.params)
        if not isinstance(launcher.params, DictConfig)
        else launcher.params
    )
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir)).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    task = task_path(launcher.task_function)
    jobs = prepare_jobs(
        launcher, job_overrides, initial_job_idx, sweep_dir, llem_task=task.startswith("llem.")
    )
    check_backends(jobs, params.mode, docker_usable)
    _resume(jobs, params.resume)
    _write_manifest(sweep_dir, jobs, params.mode)

    slots = gpu_slots(params.gpus_per_job, params.max_parallel)
    todo = deque(j for j in jobs if j.status == "pending")
    skipped = len(jobs) - len(todo)
    if skipped:
        _print(
            f"[llem] resuming: {skipped} of {len(jobs)} jobs already have a result with the same config; "
            "skipped (hydra.launcher.resume=false to rerun)"
        )
    where = f"{len(slots)} GPU slot(s)" if slots[0] is not None else "no GPU: one job at a time"
    _print(f"[llem] study of {len(jobs)} jobs in {sweep_dir} ({params.mode}, {where})")
    free: list[tuple[str | None, float]] = [(s, 0.0) for s in slots]  # (slot, time it becomes free)
    running: list[Job] = []
    t_start, done_durations, interrupted, stop = time.time(), [], False, False
    try:
        while (todo and not stop) or running:
            now = time.time()
            ready = [f for f in free if f[1] <= now]
            while todo and ready and not stop:
                slot_entry = ready.pop(0)
                free.remove(slot_entry)
                job = todo.popleft()
                job.slot = slot_entry[0]
                _start(job, task, params, sweep_dir)
                running.append(job)
                _print(
                    f"[llem] job {_position(job, jobs)} started: {job.label}"
                    + (f" on {job.slot}" if job.slot else "")
                )
            time.sleep(0.05)
            for job in list(running):
                if _finished(job, params.timeout_s):
                    running.remove(job)
                    free.append((job.slot, time.time() + params.cooldown_s))
                    done_durations.append(job.duration_s)
                    _report(job, jobs, done_durations, len(todo), len(slots), t_start)
                    write_summary(sweep_dir)
                    if job.status != "ok" and params.on_failure == "stop":
                        stop = True
    except KeyboardInterrupt:
        interrupted = True
        _print("\n[llem] interrupted: stopping the running job(s); finished results are kept")
        for job in running:
            _stop(job, params, sweep_dir, signal.SIGINT)
            job.status, job.error = "interrupted", "stopped by Ctrl-C"
            write_error(job)
    write_summary(sweep_dir, final=True, interrupted=interrupted)
    _print(f"[llem] summary: {sweep_dir / 'study_summary.md'}")
    if interrupted:
        raise SystemExit(130)
    failed = [j for j in jobs if j.status not in ("ok", "skipped")]
    if failed:
        raise StudyFailed(
            f"{len(failed)}/{len(jobs)} jobs failed (see {sweep_dir / 'study_summary.md'})"
        )
    return [_job_return(j) for j in jobs]


def _position(job: Job, jobs: list[Job]) -> str:
    return f"{jobs.index(job) + 1}/{len(jobs)}"


def _start(job: Job, task: str, params, sweep_dir: Path) -> None:
    (job.folder / "error.json").unlink(missing_ok=True)  # a previous attempt's failure record
    if params.mode == "docker":
        _remove_container(job, params, sweep_dir)
    spec = write_spec(job, sweep_dir)
    argv, env = command(job, spec, task, params, sweep_dir)
    job.log = sweep_dir / JOBS_DIR / f"{job.num}.log"
    job.started, job.status = time.time(), "running"
    with job.log.open("w") as log:
        job.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    job.extra["params"] = params
    job.extra["sweep_dir"] = sweep_dir


def _finished(job: Job, timeout_s: float | None) -> bool:
    assert job.proc is not None
    code = job.proc.poll()
    elapsed = time.time() - job.started
    if code is None:
        if timeout_s and elapsed > timeout_s:
            _stop(job, job.extra["params"], job.extra["sweep_dir"], signal.SIGTERM)
            job.duration_s, job.status = elapsed, "timeout"
            job.error = f"timed out after {timeout_s:.0f} s (hydra.launcher.timeout_s)"
            write_error(job)
            return True
        return False
    job.duration_s, job.exit_code = elapsed, code
    if job.extra["params"].mode == "docker":
        _remove_container(job, job.extra["params"], job.extra["sweep_dir"])
    error_file = job.folder / "error.json"
    if code == 0 and error_file.exists():  # the job recorded its own failure
        job.status = "failed"
        job.error = json.loads(error_file.read_text()).get("error")
    elif code == 0:
        job.status = "ok"
    elif code < 0:
        job.status = "killed"
        name = signal.Signals(-code).name
        job.error = f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    else:
        job.status, job.error = "failed", _error_line(job)
    if job.status != "ok" and not (job.folder / "error.json").exists():
        write_error(job)
    return True


def _stop(job: Job, params, sweep_dir: Path, sig: int) -> None:
    """Signal the job's process group; SIGKILL after a grace period; remove its container in docker mode."""
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
    if params.mode == "docker":
        _remove_container(job, params, sweep_dir)


def _remove_container(job: Job, params, sweep_dir: Path) -> None:
    env = dict(os.environ) | ({"DOCKER_HOST": params.docker.host} if params.docker.host else {})
    subprocess.run(
        [params.docker.executable, "rm", "-f", container_name(sweep_dir, job)],
        capture_output=True,
        timeout=60,
        check=False,
        env=env,
    )


def _report(
    job: Job, jobs: list[Job], durations: list[float], remaining: int, slots: int, t0: float
) -> None:
    eta = sum(durations) / len(durations) * remaining / slots if durations else 0.0
    detail = ""
    if job.status == "ok" and (job.folder / "result.json").exists():
        result = json.loads((job.folder / "result.json").read_text())
        detail = f"{result['throughput']['output_tokens_per_s']:.1f} output tok/s"
        if result["energy"]["per_output_token_j"] is not None:
            detail += f", {result['energy']['per_output_token_j'] * 1e3:.3g} mJ/token"
    else:
        detail = job.error or ""
        tail = _tail(job.log)
        if tail and job.status == "failed":
            sys.stderr.write(f"--- last lines of {job.log}:\n{tail}\n---\n")
    _print(
        f"[llem] job {_position(job, jobs)} {job.status} in {job.duration_s:.1f} s: {job.label} -> {detail} "
        f"(elapsed {time.time() - t0:.0f} s, ETA {eta:.0f} s)"
    )


def _resume(jobs: list[Job], resume: bool) -> None:
    """Skip jobs with a matching result; move a stale job folder aside instead of overwriting it."""
    for job in jobs:
        result = job.folder / "result.json"
        if not result.exists():
            continue
        try:
            old_hash = json.loads(result.read_text()).get("config_hash")
        except (OSError, ValueError):
            old_hash = None
        if resume and job.config_hash and old_hash == job.config_hash:
            job.status = "skipped"
            continue
        stale = job.folder.with_name(f"{job.folder.name}.replaced-{int(time.time())}")
        shutil.move(job.folder, stale)


def _write_manifest(sweep_dir: Path, jobs: list[Job], mode: str, launcher: str = "llem") -> None:
    write_json_atomic(
        sweep_dir / "study.json",
        {
            "llem_version": __version__,
            "created_at": _now(),
            "sweep_dir": str(sweep_dir),
            "launcher": launcher,
            "mode": mode,
            "jobs": [
                {
                    "num": j.num,
                    "subdir": j.folder.name,
                    "overrides": j.overrides,
                    "config_hash": j.config_hash,
                }
                for j in jobs
            ],
        },
    )


def _job_return(job: Job) -> JobReturn:
    cfg = job.config
    ret = JobReturn()
    ret.overrides = job.overrides
    ret.hydra_cfg = cfg
    task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    ret.cfg = task_cfg
    ret.working_dir = str(job.folder)
    ret.task_name = str(cfg.hydra.job.name)
    ret.status = JobStatus.COMPLETED
    ret.return_value = {"result": str(job.folder / "result.json"), "status": job.status}
    return ret


def docker_usable() -> bool:
    from llem.envreport import docker_status

    return docker_status().startswith("available")
