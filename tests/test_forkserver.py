"""Study jobs forked from the pre-imported fork server: same results as a fresh interpreter, own
process group, recorded fallback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, alive, gone_within, run_llem

pytestmark = pytest.mark.e2e
APP = REPO / "tests" / "apps" / "trivial_app.py"

# what may differ between two runs of the same job: clocks, ids, durations and rates
_VARIABLE = {
    "experiment_id",
    "started_at",
    "ended_at",
    "timing",
    "environment",
    "host_cpu",
    "cpu_contention",  # what other processes did meanwhile
}
_TIMED = ("_s", "_ms", "_per_s", "_per_s_per_w")
# warnings a window's length or the other processes decide (a loaded CI machine flags contention)
_TIMED_WARNINGS = ("CPU contention", "fewer than", "measured window is short")


def _stable(value: object, key: str = "") -> object:
    """``value`` without the fields a timing decides (durations, rates, timestamps)."""
    if isinstance(value, dict):
        return {
            k: _stable(v, k)
            for k, v in value.items()
            if k not in _VARIABLE and not k.endswith(_TIMED) and "ci95" not in k
        }
    if isinstance(value, list):
        if key == "warnings":
            value = [w for w in value if not str(w).startswith(_TIMED_WARNINGS)]
        return [_stable(v, key) for v in value]
    if key == "warnings" and isinstance(value, str):  # e.g. "measured window is short (0.05 s"
        return re.sub(r"[0-9.]+", "#", value)
    return value


def _plan(sweep: Path) -> list[dict]:
    return json.loads((sweep / "study.json").read_text())["jobs"]


@pytest.mark.slow
def test_forked_and_fresh_jobs_give_the_same_results(tmp_path, tiny_model_dir):
    args = ["-m", "batch=1,2", "n=3", "max_new_tokens=4", "quiet=true", "energy=none"]
    results = {}
    for fork in ("true", "false"):
        sweep = tmp_path / fork
        proc = run_llem(
            *args, f"hydra.sweep.dir={sweep}", f"hydra.launcher.fork={fork}", cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        processes = {j["process"] for j in _plan(sweep)}
        assert processes == (
            {"fork server"} if fork == "true" else {"fresh interpreter (hydra.launcher.fork=false)"}
        )
        results[fork] = [
            json.loads((sweep / j["subdir"] / "result.json").read_text()) for j in _plan(sweep)
        ]
    forked, fresh = results["true"], results["false"]
    for a, b in zip(forked, fresh, strict=True):
        assert a["flops"]["counted"] is not None and a["flops"]["counted"] > 0
        assert a["tokens"] == b["tokens"] and a["flops"] == b["flops"]
        # peak RSS on a CPU counts library pages a process has touched: a forked job has not
        # touched those its server imported, so it reads lower (device memory is unaffected)
        assert a["memory"]["measured"] == b["memory"]["measured"]
        assert _stable(a) | {"memory": None} == _stable(b) | {"memory": None}
        assert a["timing"].keys() == b["timing"].keys()
        assert a["timing"]["startup_s"] is not None and a["timing"]["job_s"] > 0


def test_forked_jobs_are_own_process_groups_with_the_job_environment(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(APP), "-m", "x=1,2", "hydra.launcher.max_parallel=1"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "SWEEP_DIR": str(tmp_path), "HF_TOKEN": "x"},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert {j["process"] for j in _plan(tmp_path)} == {"fork server"}
    jobs = [json.loads((tmp_path / str(i) / "job.json").read_text()) for i in range(2)]
    assert len({j["pid"] for j in jobs}) == 2 and all(j["token_in_env"] for j in jobs)


def test_a_server_that_is_unsafe_to_fork_says_why(tmp_path):
    """A module that starts a thread at import makes forking unsafe: the launcher falls back."""
    from llem.study.forkserver import ForkServer

    server = ForkServer(["tests.apps.starts_thread"], tmp_path / "forkserver.log")
    try:
        assert server.problem() == "threads run in the fork server (started-at-import)"
    finally:
        server.close()
    assert server.proc.returncode == 0


def test_backends_that_spawn_their_own_workers_are_never_forked():
    from llem.backends.registry import get_backend

    assert get_backend("pytorch").forkable
    assert not get_backend("vllm").forkable and not get_backend("tensorrt").forkable


def _start_study(sweep: Path) -> tuple[subprocess.Popen[str], int]:
    """A one-job sleeping study; returns the launcher and the forked job's pid once it runs."""
    proc = subprocess.Popen(
        [sys.executable, str(APP), "-m", "sleep_s=60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SWEEP_DIR": str(sweep)},
        stdin=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (sweep / "0" / "job.json").exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    return proc, int(json.loads((sweep / "0" / "job.json").read_text())["pid"])


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[1])


def test_the_fork_server_and_its_jobs_die_with_the_launcher(tmp_path):
    proc, job = _start_study(tmp_path)
    server = _parent(job)
    assert server != proc.pid and _parent(server) == proc.pid
    proc.kill()  # SIGKILL: no handler runs in the launcher
    proc.communicate(timeout=60)
    assert gone_within(server) and gone_within(job)


def test_a_job_whose_fork_server_dies_ends_and_is_recorded_at_once(tmp_path):
    proc, job = _start_study(tmp_path)
    started = time.time()
    os.kill(_parent(job), signal.SIGKILL)
    proc.communicate(timeout=60)
    assert time.time() - started < 30  # not the job's 60 s sleep, nor its timeout
    assert proc.returncode == 1 and not alive(job)
    error = json.loads((tmp_path / "0" / "error.json").read_text())
    assert "SIGTERM" in error["error"], error


def test_the_launcher_claims_the_server_the_preflight_started(tmp_path):
    from llem.study import forkserver

    forkserver.start_early(["json"])
    early = forkserver._EARLY[-1]
    try:
        assert forkserver.claim(["json"], tmp_path / "a.log") is early and not forkserver._EARLY
        assert early.problem() is None
    finally:
        early.close()
    forkserver.start_early(["json"])
    other = forkserver._EARLY[-1]
    fresh = forkserver.claim(["csv"], tmp_path / "b.log")
    try:
        assert fresh is not other and fresh.modules == ["csv"] and other.proc.poll() is not None
        assert fresh.problem() is None
    finally:
        fresh.close()
    assert (tmp_path / "b.log").exists()


def test_a_study_job_preloads_its_engine_meters_and_plotting():
    from llem.harness import preload
    from llem.preflight import experiment

    default = preload(experiment())
    assert "llem.backends.pytorch.backend" in default
    assert "llem.energy.codecarbon:prewarm" in default and "matplotlib.figure" in default
    bare = preload(experiment("energy=none", "plots=false"))
    assert "llem.energy.codecarbon:prewarm" not in bare and "matplotlib.figure" not in bare
    assert "llem.backends.pytorch.backend" in bare


def test_the_preflight_names_the_task_the_launcher_receives():
    from llem.app import hydra_app
    from llem.preflight import APP_TASK
    from llem.study.launcher import task_path

    assert task_path(hydra_app) == APP_TASK
