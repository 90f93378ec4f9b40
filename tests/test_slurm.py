"""Studies on a real single-node SLURM cluster (``scripts/slurm_local.sh up``); SLURM's GPU mapping.

The cluster tests skip when ``scripts/slurm_local.sh status`` says the cluster is not up; CI starts
it before the tests. Every wait is bounded (subprocess timeouts, llem's ``pending_timeout_min``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llem.study.slurm import OUTCOMES, SlurmJob, outcome
from tests.helpers import LLEM, REPO, run_llem

STATUS = subprocess.run(
    ["bash", str(REPO / "scripts" / "slurm_local.sh"), "status"],
    capture_output=True,
    text=True,
    timeout=60,
    check=False,
)
CLUSTER = pytest.mark.skipif(
    STATUS.returncode != 0,
    reason=f"no SLURM cluster up (scripts/slurm_local.sh up): {STATUS.stderr.strip()}",
)
EXAMPLE = REPO / "multirun_examples" / "slurm.yaml"
# the example on this node: no GPU (no gres), small jobs
SMALL = (
    "hydra.launcher.gres=null",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.poll_s=0.3",
    "n=4",
    "max_new_tokens=4",
)


def _summary(sweep: Path) -> dict:
    return json.loads((sweep / "study_summary.json").read_text())


def _error(folder: Path) -> dict:
    return json.loads((folder / "error.json").read_text())


def _nothing_left(cwd: Path) -> bool:
    return not (cwd / "results").exists()


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """A study in the background, killed after 400 s whatever happens (every wait is bounded)."""
    proc = subprocess.Popen(
        [str(LLEM), *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    timer = threading.Timer(400, proc.kill)
    timer.daemon = True
    timer.start()
    return proc


def _wait_for(proc: subprocess.Popen[str], pattern: str, lines: list[str]) -> re.Match[str]:
    """Read the study's output until ``pattern`` appears (the process is killed after 400 s)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError("".join(lines) + (proc.stderr.read() if proc.stderr else ""))


# ---------------------------------------------------------------- SLURM states -> llem statuses


def _job(state: str, exit_code: str = "0:0") -> SlurmJob:
    return SlurmJob("7_1", state, "None", exit_code, "node1", 1.0, 2.0)


@pytest.mark.parametrize(
    ("state", "status", "words"),
    [
        ("TIMEOUT", "timeout", "time limit"),
        ("CANCELLED", "interrupted", "cancelled"),
        ("PREEMPTED", "interrupted", "preempted"),
        ("NODE_FAIL", "killed", "node failure"),
        ("OUT_OF_MEMORY", "killed", "out of memory"),
        ("FAILED", "failed", "exit code 1:0"),
        ("COMPLETED", "failed", "without writing a result"),
        ("BOOT_FAIL", "failed", "boot"),
        ("SPECIAL_EXIT", "failed", "SPECIAL_EXIT"),
    ],
)
def test_slurm_states_map_to_llem_statuses_with_the_reason(state, status, words):
    job = _job(state, "1:0")
    assert job.finished
    got, reason = outcome(job)
    assert got == status and words in reason and "7_1" in reason
    assert got in {"failed", "timeout", "killed", "interrupted"}  # statuses error.json may hold


def test_signals_in_the_exit_code():
    assert outcome(_job("FAILED", "0:15"))[0] == "interrupted"
    assert "SIGTERM" in outcome(_job("FAILED", "0:15"))[1]
    killed = ("killed", "SLURM job 7_1 was killed by SIGKILL (out of memory?)")
    assert outcome(_job("FAILED", "0:9")) == outcome(_job("FAILED", "137:0")) == killed


def test_active_states_are_not_finished():
    assert not any(_job(s).finished for s in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED"))
    assert set(OUTCOMES) >= {"TIMEOUT", "CANCELLED", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY"}


# ---------------------------------------------------------------- one GPU per job by gres


def test_gres_gpu_is_the_jobs_only_measured_device(tmp_path, monkeypatch, tiny_model_dir):
    """SLURM gives a ``gres=gpu:1`` job ``CUDA_VISIBLE_DEVICES=<index>``: only that GPU counts."""
    from llem.config import validate
    from llem.harness import Harness
    from tests.fake_nvml import FakeGpu, make_nvml
    from tests.helpers import base

    watts = [100.0, 200.0, 300.0, 400.0]  # a 4-GPU node, each GPU at its own constant power
    uuids = [f"GPU-{i}{i}{i}{i}-node" for i in range(4)]
    fake = make_nvml([FakeGpu(u, trace=[(0.0, w)]) for u, w in zip(uuids, watts, strict=True)])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")  # as slurmd sets it for the job's one GPU
    monkeypatch.setenv("SLURM_JOB_GPUS", "2")
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    cfg = base() | {"n": 4, "batch": 2, "max_new_tokens": 4, "repeats": 2, "quiet": True}
    cfg["energy"] |= {"meter": "nvml", "sample_interval_ms": 20}
    cfg["energy"]["baseline"] = {"enabled": False, "duration_s": 1.0, "max_age_h": 24.0}
    e = Harness(validate(cfg), tmp_path).run().energy
    readings = [r for r in e.readings if r.window.startswith("repeat-")]
    assert len(readings) == 2 and all(uuids[2] in r.device for r in readings)
    assert not any(u in r.device for r in e.readings for u in uuids if u != uuids[2])
    for r in readings:  # GPU 2's 300 W only, never the node's 1,000 W (nor another GPU's)
        # the counter and the window's clock are read microseconds apart: a preempted read on a
        # loaded machine moves them by up to ~0.5%, far from the 33% another GPU would add
        assert r.energy_j == pytest.approx(300.0 * r.duration_s, rel=1e-2)
    assert e.total_j == pytest.approx(sum(r.energy_j for r in readings))


# ---------------------------------------------------------------- clean failures


@pytest.mark.e2e
def test_no_slurm_tools_is_one_error_line_and_no_folder(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "bash").symlink_to("/bin/bash")
    proc = run_llem("run", str(EXAMPLE), cwd=tmp_path, env={"PATH": str(bare)}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line, no traceback
    assert proc.stderr.startswith("Error: SLURM is not available here (sbatch, srun")
    assert _nothing_left(tmp_path)


@CLUSTER
@pytest.mark.e2e
def test_unknown_partition_and_controller_down(tmp_path):
    proc = run_llem("run", str(EXAMPLE), "hydra.launcher.partition=nope", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "SLURM partition 'nope' does not exist" in proc.stderr and "debug" in proc.stderr
    conf = tmp_path / "slurm.conf"  # the same cluster, its controller unreachable (wrong port)
    text = Path("/etc/slurm/slurm.conf").read_text()
    conf.write_text(text + "\nSlurmctldPort=6999\nMessageTimeout=2\n")
    proc = run_llem("run", str(EXAMPLE), cwd=tmp_path, env={"SLURM_CONF": str(conf)}, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Error: the SLURM controller does not answer" in proc.stderr
    assert "start slurmctld" in proc.stderr and "scripts/slurm_local.sh up" in proc.stderr
    assert _nothing_left(tmp_path)


@CLUSTER
@pytest.mark.e2e
def test_sbatch_refusal_and_pending_past_the_wait(tmp_path):
    # the example as written asks for a GPU (gres=gpu:1): this node has none, sbatch refuses
    proc = run_llem("run", str(EXAMPLE), cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "Error: sbatch refused the study: sbatch: error: Invalid generic resource (gres) "
        "specification"
    )
    # jobs that cannot start within pending_timeout_min (begin in an hour): cancelled, exit 2
    t0 = time.time()
    proc = run_llem(
        "run",
        str(EXAMPLE),
        *SMALL,
        "hydra.launcher.pending_timeout_min=0.1",
        "+hydra.launcher.additional_parameters.begin=now+1hour",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "Error: 2 SLURM job(s) still pending after hydra.launcher.pending_timeout_min=0.1 "
        "(SLURM reason: BeginTime): cancelled"
    ]
    assert time.time() - t0 < 60
    assert _nothing_left(tmp_path)
    # no job still waits for its begin time (other tests' jobs may pend for a moment meanwhile)
    pending = subprocess.run(
        ["squeue", "-h", "-t", "PENDING", "-o", "%r"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "BeginTime" not in pending


# ---------------------------------------------------------------- a real study through sbatch


@CLUSTER
@pytest.mark.e2e
def test_example_study_through_sbatch_cancel_and_resume(tmp_path):
    """The example runs as real SLURM jobs; one cancelled with SIGTERM is recorded as such; the
    rerun re-runs only that job."""
    sweep = tmp_path / "study"
    args = ("run", str(EXAMPLE), *SMALL, "batch=1,2,4", f"hydra.sweep.dir={sweep}")
    proc = _start(tmp_path, *args)
    lines: list[str] = []
    cancelled = _wait_for(proc, r"job 2/3 started: .*\(SLURM job (\d+_\d+) on", lines).group(1)
    subprocess.run(["scancel", "--full", "--signal=TERM", cancelled], timeout=30, check=True)
    rest, stderr = proc.communicate(timeout=400)
    out = "".join(lines) + rest
    assert proc.returncode == 1, out + stderr
    assert "1/3 jobs failed" in stderr and "Traceback" not in stderr
    assert re.search(r"job \d/3 ok in .* -> [\d.]+ output tok/s", out)
    assert f"summary: {sweep / 'study_summary.md'}" in out
    summary = _summary(sweep)
    assert summary["launcher"] == "llem_slurm" and summary["mode"] == "slurm"
    assert summary["created_at"] and summary["final"] is True
    assert summary["counts"]["ok"] == 2 and summary["counts"]["interrupted"] == 1
    (job,) = [j for j in summary["jobs"] if j["status"] == "interrupted"]
    assert "batch=2" in job["overrides"]
    assert "SIGTERM" in job["error"] == _error(sweep / job["job"])["error"]
    assert not (sweep / job["job"] / "result.json").exists()

    again = run_llem(*args, cwd=tmp_path, timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming: 2 of 3 jobs already have a result" in again.stdout
    assert re.search(r"job 2/3 ok in", again.stdout) and "job 1/3" not in again.stdout
    summary = _summary(sweep)
    assert summary["counts"]["ok"] == 3 and summary["final"] is True


@CLUSTER
@pytest.mark.e2e
def test_time_limit_is_recorded_as_timeout(tmp_path):
    sweep = tmp_path / "study"
    proc = run_llem(
        "-m",
        "batch=1",
        *SMALL,
        "repeats=2",
        "repeat_gap_s=300",  # idles past the one-minute limit
        "hydra/launcher=llem_slurm",
        "hydra.launcher.timeout_min=1",
        "hydra.launcher.signal_delay_s=15",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(r"job 1/1 timeout in [\d.]+ s: .* -> .*time limit", proc.stdout)
    summary = _summary(sweep)
    assert summary["counts"]["timeout"] == 1 and summary["final"] is True
    (job,) = summary["jobs"]
    assert "time limit" in job["error"] and not (sweep / job["job"] / "result.json").exists()


@CLUSTER
@pytest.mark.e2e
def test_requeued_job_runs_again_from_the_start(tmp_path):
    sweep = tmp_path / "study"
    proc = _start(
        tmp_path,
        "-m",
        *SMALL,
        "hydra/launcher=llem_slurm",
        "repeats=2",
        "repeat_gap_s=6",
        f"hydra.sweep.dir={sweep}",
    )
    lines: list[str] = []
    try:
        job_id = _wait_for(proc, r"started: .*\(SLURM job ([\d_]+) on", lines).group(1)
        time.sleep(2)
        subprocess.run(["scontrol", "requeue", job_id], timeout=30, check=True)
        out, err = proc.communicate(timeout=400)
    finally:
        proc.kill()
    out = "".join(lines) + out
    assert proc.returncode == 0, out + err
    assert len(re.findall(r"job 1/1 started", out)) == 2  # once, then again after the requeue
    assert "job 1/1 ok in" in out
    (job,) = _summary(sweep)["jobs"]
    assert job["status"] == "ok" and not (sweep / job["job"] / "error.json").exists()


@CLUSTER
@pytest.mark.e2e
def test_sigterm_to_the_submitting_llem_cancels_the_study(tmp_path):
    sweep = tmp_path / "study"
    proc = _start(
        tmp_path,
        "-m",
        *SMALL,
        "hydra/launcher=llem_slurm",
        "batch=1,2",
        "repeats=2",
        "repeat_gap_s=60",
        f"hydra.sweep.dir={sweep}",
    )
    lines: list[str] = []
    try:
        array = _wait_for(proc, r"started: .*\(SLURM job (\d+)_\d+ on", lines).group(1)
        proc.send_signal(15)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    out = "".join(lines) + out
    assert proc.returncode == 143, out + err
    assert "Traceback" not in err and "SIGTERM: cancelling the study's SLURM jobs" in out
    summary = _summary(sweep)
    assert summary["interrupted"] is True and summary["counts"]["interrupted"] == 2
    deadline = time.time() + 60
    ours: list[str] = []
    while time.time() < deadline:  # SLURM ends the cancelled jobs (KillWait 10 s here)
        queue = subprocess.run(
            ["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True, timeout=30, check=True
        )  # this study's jobs only: another test (another pytest-xdist worker) may queue its own
        ours = [line for line in queue.stdout.splitlines() if line.startswith(f"{array}_")]
        if not ours:
            break
        time.sleep(1)
    assert not ours


def _job_pids(sweep: Path) -> list[int]:
    """Pids of the SLURM jobs' Python processes (submitit's runner) of the study in ``sweep``."""
    pids = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmdline = path.read_bytes().decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if "submitit.core._submit" in cmdline and str(sweep) in cmdline:
            pids.append(int(path.parent.name))
    return pids


@CLUSTER
@pytest.mark.e2e
def test_sigkilled_job_is_recorded_and_the_study_ends(tmp_path):
    sweep = tmp_path / "study"
    proc = _start(
        tmp_path,
        "-m",
        *SMALL,
        "hydra/launcher=llem_slurm",
        "repeats=2",
        "repeat_gap_s=60",
        f"hydra.sweep.dir={sweep}",
    )
    lines: list[str] = []
    try:
        _wait_for(proc, r"job 1/1 started", lines)
        deadline = time.time() + 60
        while time.time() < deadline:  # the job's Python process, found by its sweep folder
            pids = _job_pids(sweep)
            if pids:
                break
            time.sleep(0.2)
        assert pids, "".join(lines)
        for pid in pids:
            os.kill(pid, 9)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    out = "".join(lines) + out
    assert proc.returncode == 1 and "Traceback" not in err, out + err
    (job,) = _summary(sweep)["jobs"]
    assert job["status"] == "killed" and "SIGKILL" in job["error"], job
