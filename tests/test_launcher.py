"""The llem launcher: fresh process per job, failures, timeout, Ctrl-C, resume, GPU slots, docker
argv."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, run_llem

pytestmark = pytest.mark.e2e
APP = REPO / "tests" / "apps" / "trivial_app.py"


def run_app(
    sweep: Path, *args: str, env: dict | None = None, timeout: int = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(APP), "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "SWEEP_DIR": str(sweep), **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def _jobs(sweep: Path) -> list[dict]:
    return [
        json.loads((sweep / str(i) / "job.json").read_text())
        for i in range(len(list(sweep.glob("[0-9]*"))))
    ]


def test_each_job_runs_in_its_own_process(tmp_path):
    proc = run_app(tmp_path, "x=1,2,3")
    assert proc.returncode == 0, proc.stderr
    jobs = _jobs(tmp_path)
    assert [j["x"] for j in jobs] == [1, 2, 3]
    assert len({j["pid"] for j in jobs}) == 3 and os.getpid() not in {j["pid"] for j in jobs}
    manifest = json.loads((tmp_path / "study.json").read_text())
    assert [j["overrides"] for j in manifest["jobs"]] == [["x=1"], ["x=2"], ["x=3"]]
    assert "job 3/3 ok" in proc.stdout and (tmp_path / "0" / ".hydra" / "config.yaml").exists()


def test_failed_and_killed_jobs_are_recorded_and_the_study_goes_on(tmp_path):
    proc = run_app(tmp_path, "action=none,fail,kill,none")
    assert proc.returncode == 1 and "2/4 jobs failed" in proc.stderr
    assert "Traceback" not in proc.stderr.split("2/4 jobs failed")[1]
    err = {i: json.loads((tmp_path / str(i) / "error.json").read_text()) for i in (1, 2)}
    assert err[1]["status"] == "failed" and "failed on purpose" in err[1]["error"]
    assert err[2]["status"] == "killed" and "SIGKILL" in err[2]["error"]
    assert (tmp_path / "3" / "done.json").exists() and not (tmp_path / "0" / "error.json").exists()


def test_on_failure_stop(tmp_path):
    proc = run_app(tmp_path, "action=fail,none", "hydra.launcher.on_failure=stop")
    assert proc.returncode == 1 and not (tmp_path / "1").exists()


def test_timeout_kills_the_job(tmp_path):
    t0 = time.time()
    proc = run_app(tmp_path, "sleep_s=0,60", "hydra.launcher.timeout_s=2")
    assert proc.returncode == 1 and time.time() - t0 < 30
    err = json.loads((tmp_path / "1" / "error.json").read_text())
    assert err["status"] == "timeout" and "timed out after 2 s" in err["error"]
    pid = _jobs(tmp_path)[1]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_ctrl_c_stops_the_running_job_keeps_results_and_exits_130(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(APP), "-m", "sleep_s=0,60,0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SWEEP_DIR": str(tmp_path)},
    )
    deadline = time.time() + 60
    while not (tmp_path / "1" / "job.json").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert (tmp_path / "0" / "done.json").exists()
    assert json.loads((tmp_path / "1" / "error.json").read_text())["status"] == "interrupted"
    assert not (tmp_path / "2").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(json.loads((tmp_path / "1" / "job.json").read_text())["pid"], 0)


def test_secrets_reach_the_job_but_no_file(tmp_path):
    proc = run_app(tmp_path, "x=1,2", env={"HF_TOKEN": "hf_launcherSECRET99"})
    assert proc.returncode == 0, proc.stderr
    assert all(j["token_in_env"] for j in _jobs(tmp_path))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in files if b"hf_launcherSECRET99" in p.read_bytes()]


def test_one_job_per_gpu_slot(tmp_path):
    wrapper = tmp_path / "gpu_app.py"
    wrapper.write_text(
        "import sys\nimport llem.study.launcher as L\n"
        "L.gpu_slots = lambda per_job, max_parallel: ['GPU-aaaa', 'GPU-bbbb']\n"
        "import trivial_app\ntrivial_app.app()\n"
    )
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, str(wrapper), "-m", "x=1,2,3,4", "sleep_s=1.5"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SWEEP_DIR": str(sweep), "PYTHONPATH": str(APP.parent)},
    )
    assert proc.returncode == 0, proc.stderr
    jobs = _jobs(sweep)
    assert sorted(j["cuda"] for j in jobs) == ["GPU-aaaa", "GPU-aaaa", "GPU-bbbb", "GPU-bbbb"]
    starts = sorted(j["start"] for j in jobs)
    assert starts[1] - starts[0] < 1.0  # two jobs ran at once, one per GPU


def test_gpu_slots_from_nvml(monkeypatch):
    from llem.study.launcher import gpu_slots
    from tests.fake_nvml import FakeGpu, make_nvml

    monkeypatch.setitem(sys.modules, "pynvml", make_nvml([FakeGpu(f"GPU-{i}") for i in range(4)]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_slots(1, None) == ["GPU-0", "GPU-1", "GPU-2", "GPU-3"]
    assert gpu_slots(2, None) == ["GPU-0,GPU-1", "GPU-2,GPU-3"]
    assert gpu_slots(1, 2) == ["GPU-0", "GPU-1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert gpu_slots(1, None) == ["GPU-3", "GPU-1"]


def test_no_gpu_means_one_slot():
    from llem.study.launcher import gpu_slots

    assert gpu_slots(1, None) == [None]


def test_docker_argv_passes_secrets_by_name_and_mounts_the_sweep(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from hydra_plugins.llem_plugins.llem_launcher import DockerConf
    from llem.study.launcher import Job, docker_argv

    monkeypatch.setenv("HF_TOKEN", "hf_dockerSECRET")
    d = OmegaConf.merge(
        OmegaConf.structured(DockerConf),
        {
            "ulimits": ["nofile=1024:1024"],
            "runtime": "runc",
            "hf_cache": "/data/hf",
            "extra_args": ["--shm-size=8g"],
        },
    )
    job = Job(
        3, ["batch=8"], OmegaConf.create({}), tmp_path / "3_x", "h", "pytorch", slot="GPU-aaaa"
    )
    docker = OmegaConf.to_object(d)
    argv = docker_argv(job, tmp_path / ".jobs" / "3.pkl", "llem.app:hydra_app", docker, tmp_path)
    joined = " ".join(argv)
    assert argv[:2] == ["docker", "run"] and "hf_dockerSECRET" not in joined
    assert argv[argv.index("HF_TOKEN") - 1 : argv.index("HF_TOKEN") + 1] == ["-e", "HF_TOKEN"]
    assert f"{tmp_path}:{tmp_path}" in argv and '"device=GPU-aaaa"' in argv
    assert argv[argv.index("--ulimit") : argv.index("--ulimit") + 2] == [
        "--ulimit",
        "nofile=1024:1024",
    ]
    assert "/data/hf:/hf-cache" in argv and "--shm-size=8g" in argv
    image = argv.index("ghcr.io/llenergymeasure/pytorch:2.0.0-cuda12.4")
    assert argv[image + 1 :] == [
        "-m",
        "llem.study.worker",
        str(tmp_path / ".jobs" / "3.pkl"),
        "llem.app:hydra_app",
    ]


def test_multi_backend_needs_docker(capsys):
    from omegaconf import OmegaConf

    from hydra_plugins.llem_plugins.llem_launcher import LaunchMode
    from llem.docker.engine import Engine, EngineState
    from llem.study.launcher import Job, check_backends

    jobs = [
        Job(i, [], OmegaConf.create({}), Path("x"), "h", b)
        for i, b in enumerate(["pytorch", "vllm"])
    ]
    with pytest.raises(SystemExit) as exit_info:
        check_backends(jobs, LaunchMode.auto, lambda: Engine(EngineState.NO_CLIENT))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "Error: Multi-backend studies require Docker.\n"
        "Install Docker, then: docker compose pull pytorch vllm\n"
    )
    up = Engine(EngineState.AVAILABLE, "27.0")
    assert check_backends(jobs, LaunchMode.auto, lambda: up) is LaunchMode.docker
    one = check_backends(jobs[:1], LaunchMode.auto, lambda: Engine(EngineState.NO_CLIENT))
    assert one is LaunchMode.subprocess  # one backend: no container needed


def test_llem_study_resume(tmp_path):
    args = [
        "-m",
        "batch=1,2",
        "n=2",
        "max_new_tokens=2",
        "quiet=true",
        "energy=none",
        f"hydra.sweep.dir={tmp_path}/s",
    ]
    first = run_llem(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    results = sorted((tmp_path / "s").glob("*/result.json"))
    assert len(results) == 2
    mtimes = [p.stat().st_mtime_ns for p in results]
    second = run_llem(*args, cwd=tmp_path)
    assert second.returncode == 0 and "2 of 2 jobs already have a result" in second.stdout
    assert [p.stat().st_mtime_ns for p in results] == mtimes
    third = run_llem(*args, "hydra.launcher.resume=false", cwd=tmp_path)
    assert third.returncode == 0 and "already have a result" not in third.stdout
    assert [p.stat().st_mtime_ns for p in results] != mtimes


def test_cooldown_gap_between_jobs(tmp_path):
    proc = run_app(tmp_path, "x=1,2", "hydra.launcher.cooldown_s=1.5")
    assert proc.returncode == 0, proc.stderr
    first_end = json.loads((tmp_path / "0" / "done.json").read_text())["end"]
    assert _jobs(tmp_path)[1]["start"] - first_end >= 1.5


@pytest.mark.parametrize(
    "option, message",
    [
        ("mode=subproces", "Error merging override hydra.launcher.mode=subproces"),
        ("on_failure=halt", "Error merging override hydra.launcher.on_failure=halt"),
        ("timeout_s=-1", "hydra.launcher.timeout_s must be > 0 or null"),
        ("timeout_s=0", "hydra.launcher.timeout_s must be > 0 or null"),
        ("cooldown_s=-0.5", "hydra.launcher.cooldown_s must be >= 0"),
        ("gpus_per_job=0", "hydra.launcher.gpus_per_job must be >= 1"),
        ("max_parallel=0", "hydra.launcher.max_parallel must be >= 1 or null"),
    ],
)
def test_bad_launcher_option_is_one_error_line_and_nothing_is_made(tmp_path, option, message):
    proc = run_llem(
        "-m", "batch=1,2", "n=2", f"hydra.launcher.{option}", f"hydra.sweep.dir={tmp_path}/s",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"Error: {message}"]
    assert list(tmp_path.iterdir()) == []


def test_launcher_options_are_checked_when_the_launcher_is_made(tmp_path):
    """Outside the llem command (a plain Hydra app): the launcher itself refuses, before any job."""
    proc = run_app(tmp_path / "s", "x=1,2", "hydra.launcher.timeout_s=-5")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["Error: hydra.launcher.timeout_s must be > 0 or null"]
    assert not (tmp_path / "s").exists()


def test_launcher_options_are_typed():
    from hydra_plugins.llem_plugins.llem_launcher import LaunchMode, OnFailure
    from llem.study.launcher import launcher_options

    conf = launcher_options({"mode": "docker", "on_failure": "stop", "timeout_s": 30})
    assert conf.mode is LaunchMode.docker and conf.on_failure is OnFailure["stop"]
    assert conf.timeout_s == 30.0 and conf.docker.images["pytorch"].startswith("ghcr.io/")


def test_hydra_internal_is_used_once_for_a_pinned_hydra_range():
    """The worker's hydra_context() is the one use of hydra._internal in the study code; it was
    written for HYDRA_RANGE: a Hydra outside it fails here first."""
    import hydra

    from llem.study.worker import HYDRA_RANGE

    version = tuple(int(p) for p in hydra.__version__.split(".")[:3])
    assert HYDRA_RANGE[0] <= version < HYDRA_RANGE[1]
    users = [
        path.relative_to(REPO)
        for root in ("llem/study", "hydra_plugins")
        for path in (REPO / root).rglob("*.py")
        for line in path.read_text().splitlines()
        if line.lstrip().startswith(("from hydra._internal", "import hydra._internal"))
    ]
    assert users == [Path("llem/study/worker.py")], users
