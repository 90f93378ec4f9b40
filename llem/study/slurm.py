"""SLURM as llem sees it: pre-flight checks, job states from ``scontrol``, their llem statuses.

No accounting database is needed: states come from ``scontrol -o show job`` (SLURM keeps a finished
job there for ``MinJobAge``, 300 s by default), polled by the submitting process far more often.
SLURM states map onto llem's job statuses (:data:`OUTCOMES`), each with a reason naming the state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime

from llem.errors import UsageError

COMMAND_TIMEOUT_S = 20.0  # any one SLURM client command
# the next steps after "the SLURM controller does not answer (...)"
CONTROLLER_DOWN = (
    ": start slurmctld on the controller host (SLURM_CONF or /etc/slurm/slurm.conf names it; on a "
    "shared cluster ask its administrators), or try a local one-node cluster: "
    "scripts/slurm_local.sh up (in a checkout of llenergymeasure)"
)

# SLURM state -> (llem job status, why); "{job}" is the SLURM job id. COMPLETED maps to ok only when
# the job left a result.
OUTCOMES: dict[str, tuple[str, str]] = {
    "COMPLETED": ("failed", "SLURM job {job} completed without writing a result"),
    "FAILED": ("failed", "SLURM job {job} failed (exit code {exit_code})"),
    "TIMEOUT": ("timeout", "SLURM job {job} reached its time limit (hydra.launcher.timeout_min)"),
    "DEADLINE": ("timeout", "SLURM job {job} reached its deadline"),
    "CANCELLED": ("interrupted", "SLURM job {job} was cancelled (scancel)"),
    "PREEMPTED": ("interrupted", "SLURM job {job} was preempted"),
    "NODE_FAIL": ("killed", "SLURM job {job} was lost to a node failure"),
    "OUT_OF_MEMORY": (
        "killed",
        "SLURM job {job} ran out of memory (raise hydra.launcher.mem_gb)",
    ),
    "BOOT_FAIL": ("failed", "SLURM job {job} could not start: its node failed to boot"),
}
ACTIVE = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}
    | {"REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}
)


@dataclass(frozen=True)
class SlurmJob:
    """One SLURM job (or array task) as ``scontrol`` reports it; times in Unix seconds."""

    job_id: str  # "<array>_<task>" for array tasks
    state: str  # e.g. RUNNING, COMPLETED, TIMEOUT (a trailing "+" or " by <uid>" removed)
    reason: str  # SLURM's Reason field (why pending, or why it ended)
    exit_code: str  # "<code>:<signal>"
    node: str
    submitted_unix_s: float | None
    started_unix_s: float | None  # None while pending

    @property
    def finished(self) -> bool:
        return self.state not in ACTIVE


def outcome(job: SlurmJob) -> tuple[str, str]:
    """llem's status and the reason for a finished SLURM job that left no result."""
    code, _, signal = job.exit_code.partition(":")
    if job.state == "FAILED" and signal == "15":  # scancel --signal=TERM: srun ends the step
        return "interrupted", f"SLURM job {job.job_id} was stopped by SIGTERM (scancel --signal)"
    if job.state == "FAILED" and (signal == "9" or code == "137"):  # 137: srun's task killed
        return "killed", f"SLURM job {job.job_id} was killed by SIGKILL (out of memory?)"
    status, reason = OUTCOMES.get(
        job.state, ("failed", f"SLURM job {{job}} ended in state {job.state}")
    )
    return status, reason.format(job=job.job_id, exit_code=job.exit_code)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "(no output)"


def check_cluster(partition: str | None) -> None:
    """Raise :class:`UsageError` unless SLURM can take a study: tools, controller, partition."""
    missing = [
        tool for tool in ("sbatch", "srun", "scontrol", "sinfo") if shutil.which(tool) is None
    ]
    if missing:
        raise UsageError(
            f"SLURM is not available here ({', '.join(missing)} not on PATH): submit from the "
            "cluster's login node, or run the study on this machine with hydra/launcher=llem"
        )
    try:
        proc = _run(["sinfo", "-h", "-o", "%P|%a"])
    except subprocess.TimeoutExpired:
        why = f"sinfo took over {COMMAND_TIMEOUT_S:.0f} s"
        raise UsageError(f"the SLURM controller does not answer ({why}){CONTROLLER_DOWN}") from None
    if proc.returncode != 0:
        why = _first_line(proc.stderr + proc.stdout)
        raise UsageError(f"the SLURM controller does not answer ({why}){CONTROLLER_DOWN}")
    partitions = {}
    for line in proc.stdout.splitlines():
        name, _, avail = line.partition("|")
        partitions[name.rstrip("*")] = (name.endswith("*"), avail)
    if partition is None:
        if not any(default for default, _ in partitions.values()):
            raise UsageError(
                "this SLURM cluster has no default partition: set hydra.launcher.partition to one "
                "of " + ", ".join(sorted(partitions))
            )
        return
    if partition not in partitions:
        raise UsageError(
            f"SLURM partition '{partition}' does not exist: set hydra.launcher.partition to one of "
            + ", ".join(sorted(partitions))
        )
    if partitions[partition][1] != "up":
        raise UsageError(f"SLURM partition '{partition}' is {partitions[partition][1]}, not up")


def _time(value: str | None) -> float | None:
    """A SLURM timestamp (local time, ``2026-12-01T00:42:46``) in Unix seconds; None for Unknown."""
    if not value or not value[:1].isdigit():
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _record(line: str) -> dict[str, str]:
    pairs = (token.split("=", 1) for token in line.split() if "=" in token)
    return {key: value for key, value in pairs}


def _task_ids(task: str) -> list[str]:
    """Array task ids of an ``ArrayTaskId`` value: ``3``, or a pending range ``2-5,7%2``."""
    ids: list[str] = []
    for part in task.split("%", 1)[0].split(","):
        first, _, last = part.partition("-")
        if first.isdigit():
            ids += [str(i) for i in range(int(first), int(last or first) + 1)]
    return ids


def query(job_id: str) -> list[SlurmJob]:
    """Every job (or array task) of ``job_id`` SLURM still knows; [] when it does not answer."""
    try:
        proc = _run(["scontrol", "-o", "show", "job", job_id])
    except subprocess.TimeoutExpired:
        return []
    jobs: list[SlurmJob] = []
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        rec = _record(line)
        state = rec.get("JobState", "UNKNOWN").split("+")[0]
        array, task = rec.get("ArrayJobId"), rec.get("ArrayTaskId")
        ids = (
            [f"{array}_{t}" for t in _task_ids(task)] if array and task else [rec.get("JobId", "")]
        )
        started = None if state == "PENDING" else _time(rec.get("StartTime"))
        jobs += [
            SlurmJob(
                job_id=i,
                state=state,
                reason=rec.get("Reason", ""),
                exit_code=rec.get("ExitCode", ""),
                node=rec.get("NodeList", ""),
                submitted_unix_s=_time(rec.get("SubmitTime")),
                started_unix_s=started,
            )
            for i in ids
        ]
    return jobs


def own_job() -> SlurmJob | None:
    """The SLURM job this process runs in (``$SLURM_JOB_ID``), as SLURM reports it now."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    jobs = query(job_id)
    return jobs[0] if jobs else None


def cancel(job_ids: list[str]) -> None:
    """``scancel`` the given jobs (SLURM sends them SIGTERM, then SIGKILL after KillWait)."""
    if job_ids:
        _run(["scancel", *job_ids])
