"""The launcher's docker mode with a real container engine: Podman behind the docker CLI.

No registry is reachable here, so the image is an empty skeleton and the host's /usr, Python,
virtual environment and repository are bind-mounted read-only (../shared/notes/containers.md).
Skipped where podman or the docker client is missing (.ci/run installs podman); GPU passthrough
cannot be tested here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from tests.helpers import LLEM, REPO

pytestmark = [pytest.mark.e2e, pytest.mark.container]
IMAGE = "localhost/llem-hostusr:test"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    if not (shutil.which("podman") and shutil.which("docker")) or os.geteuid() != 0:
        pytest.skip("needs root, podman and the docker client")
    root = tmp_path_factory.mktemp("podman")
    conf = root / "containers.conf"
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
        '[engine]\nruntime = "runc"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    # this engine's own storage: it lists only its own containers (parallel workers, earlier runs)
    podman = ["podman", "--root", str(root / "storage"), "--runroot", str(root / "run")]
    img = root / "img"
    for d in ("usr", "tmp", "etc", "proc", "dev", "sys", "root"):
        (img / d).mkdir(parents=True)
    for d in ("bin", "lib", "lib64", "sbin"):
        (img / d).symlink_to(f"usr/{d}")
    tar = subprocess.run(["tar", "-C", str(img), "-c", "."], capture_output=True, check=True).stdout
    subprocess.run(
        [*podman, "import", "-q", "-", IMAGE], input=tar, capture_output=True, check=True, env=env
    )
    sock = root / "podman.sock"
    service = subprocess.Popen(
        [*podman, "system", "service", "--time=0", f"unix://{sock}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.1)
    yield f"unix://{sock}"
    service.terminate()
    service.wait(30)


def _docker_overrides(engine: str, cache: Path) -> list[str]:
    mounts = [
        "/usr:/usr:ro",
        f"{sys.base_prefix}:{sys.base_prefix}:ro",
        f"{sys.prefix}:{sys.prefix}:ro",
        f"{REPO}:{REPO}:ro",
        f"{cache}:{cache}",
    ]
    return [
        "hydra.launcher.mode=docker",
        f"hydra.launcher.docker.image={IMAGE}",
        f"hydra.launcher.docker.host={engine}",
        f"hydra.launcher.docker.python={sys.executable}",
        "hydra.launcher.docker.network=none",
        "hydra.launcher.docker.hf_cache=null",
        f"hydra.launcher.docker.mounts=[{','.join(mounts)}]",
    ]


def test_jobs_run_in_containers_failures_are_reported_and_secrets_stay_off_disk(engine, tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests/apps/trivial_app.py"),
            "-m",
            "action=none,fail",
            *_docker_overrides(engine, tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SWEEP_DIR": str(sweep), "HF_TOKEN": "hf_containerSECRET7"},
    )
    assert proc.returncode == 1 and "1/2 jobs failed" in proc.stderr, proc.stdout + proc.stderr
    job = json.loads((sweep / "0" / "job.json").read_text())
    assert (
        job["pid"] == 1 and job["token_in_env"]
    )  # PID 1: the task ran as the container's first process
    assert json.loads((sweep / "1" / "error.json").read_text())["status"] == "failed"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and not [p for p in files if b"hf_containerSECRET7" in p.read_bytes()]
    listed = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": engine},
    )
    from llem.study.launcher import container_name

    # this study's containers only: another test (another pytest-xdist worker) may run its own
    ours = container_name(sweep.resolve(), types.SimpleNamespace(num=0)).removesuffix("-0")
    assert not [n for n in listed.stdout.split() if n.startswith(ours)]  # the launcher removed them


def test_llem_study_job_in_a_container(engine, tmp_path):
    cache = Path(os.environ["LLEM_CACHE_DIR"])
    proc = subprocess.run(
        [
            str(LLEM),
            "-m",
            "batch=1,2",
            "n=2",
            "max_new_tokens=2",
            "quiet=true",
            "energy=none",
            "flops.enabled=false",
            f"hydra.sweep.dir={tmp_path}/study",
            *_docker_overrides(engine, cache),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = sorted((tmp_path / "study").glob("*/result.json"))
    assert len(results) == 2
    assert [json.loads(p.read_text())["tokens"]["output"] for p in results] == [4, 4]
    summary = json.loads((tmp_path / "study" / "study_summary.json").read_text())
    assert summary["final"] and [j["status"] for j in summary["jobs"]] == ["ok", "ok"]


def test_multi_backend_study_goes_to_containers_without_mode_docker(engine, tmp_path):
    """``backend=pytorch,echo`` with the default ``mode=auto``: the pre-flight finds the engine,
    every job runs in a container, nothing asks for ``hydra.launcher.mode=docker``."""
    cache = Path(os.environ["LLEM_CACHE_DIR"])
    overrides = [o for o in _docker_overrides(engine, cache) if "launcher.mode=" not in o]
    env_names = "[HF_HUB_OFFLINE,LLEM_CACHE_DIR,LLEM_PLUGINS,PYTHONPATH,OMP_NUM_THREADS]"
    proc = subprocess.run(
        [
            str(LLEM),
            "-m",
            "backend=pytorch,echo",
            "n=2",
            "max_new_tokens=2",
            "quiet=true",
            "energy=none",
            "flops.enabled=false",
            f"hydra.sweep.dir={tmp_path}/study",
            f"hydra.launcher.docker.env={env_names}",
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        env={
            **os.environ,
            "LLEM_PLUGINS": "llem_echo",
            "PYTHONPATH": str(REPO / "tests" / "stand_ins"),
        },
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"study of 2 jobs in {tmp_path}/study (docker," in proc.stdout
    results = sorted((tmp_path / "study").glob("*/result.json"))
    assert [json.loads(p.read_text())["config"]["backend"]["name"] for p in results] == [
        "pytorch",
        "echo",
    ]
    plan = json.loads((tmp_path / "study" / "study.json").read_text())
    assert plan["mode"] == "docker"
