"""Every install or next-step line llem prints is true: following it gets past the error.

Real ``llem`` processes. Engines are hidden from an interpreter the way a base install lacks them
(``sys.modules[name] = None``: not importable); the base wheel itself is checked byte for byte in
tests/test_wheel.py. "No docker client" is a PATH without one; "SLURM controller down" is a PATH
whose SLURM client tools answer as the real ones do when slurmctld is not running (the real cluster
case: tests/test_slurm.py, SLURM_CONF pointing at a port nobody serves).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llem.backends.registry import get_backend
from llem.docker.compose import compose_line, compose_path
from llem.study.isolation import MODE_NEEDS_DOCKER
from tests.fake_openai_server import Program, fake_server
from tests.helpers import REPO, run_llem

PLUGIN = {"LLEM_PLUGINS": "llem_echo", "PYTHONPATH": str(REPO / "tests" / "stand_ins")}
NO_DOCKER_PATH = os.pathsep.join([str(Path(sys.executable).parent), "/nonexistent"])
SMALL = ("n=2", "max_new_tokens=2", "energy=none", "quiet=true")


def _llem_without(modules: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``llem args`` in an interpreter where ``modules`` cannot be imported."""
    code = f"import sys; sys.modules.update(dict.fromkeys({modules!r})); "
    code += f"from llem.cli import main; main({args!r})"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_the_serving_extra_is_what_backend_openai_needs(tmp_path: Path, tiny_model_dir) -> None:
    """What [serving] installs (aiohttp, prometheus-client, transformers) runs backend=openai
    against a running server with no engine importable; llem starting vLLM names [vllm]. (The
    built-in model is built beforehand, by the fixture: building it needs PyTorch.)"""
    entry = get_backend("openai")
    assert entry.install_command == "pip install llenergymeasure[serving]"
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    serving = {d.split(">")[0].split("=")[0].replace("-", "_") for d in extras["serving"]}
    assert set(entry.requires) <= serving  # the extra installs what is checked
    engines = ["torch", "accelerate", "vllm", "tensorrt_llm"]
    with fake_server(Program(ttft_ms=1, chunk_gap_ms=1)) as url:
        args = ["backend=openai", *SMALL, "warmup_batches=1", "load=concurrency"]
        served = [*args, "backend.launch=none", f"backend.url={url}"]
        proc = _llem_without(engines, served, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list(tmp_path.glob("results/*/result.json"))) == 1
    # on a base install (nothing of [serving]) backend=openai names its own extra
    client = ["aiohttp", "prometheus_client", "transformers"]
    proc = _llem_without([*engines, *client], served, tmp_path / "results")
    hint = f"{entry.install_command}  ({entry.description})"
    assert (proc.returncode, proc.stderr) == (
        2,
        f"Error: backend 'openai' is not installed: {hint}\n",
    ), proc.stderr
    proc = _llem_without(engines, args, tmp_path / "results")
    assert (proc.returncode, proc.stderr.splitlines()) == (
        2,
        [
            "Error: backend=openai with backend.launch=vllm needs vLLM: pip install "
            "llenergymeasure[vllm] (or backend.launch=none backend.url=<running server>)"
        ],
    )


def test_without_docker_a_multi_backend_study_prints_the_designs_two_lines(tmp_path: Path) -> None:
    proc = run_llem(
        "-m", "backend=pytorch,echo", *SMALL, cwd=tmp_path, env={**PLUGIN, "PATH": NO_DOCKER_PATH}
    )
    assert proc.returncode == 2 and not list(tmp_path.iterdir())
    first, second, *rest = proc.stderr.splitlines()
    assert first == "Error: Multi-backend studies require Docker."
    assert second == "Install Docker, then: docker compose pull echo pytorch"
    assert rest == [compose_line({"echo", "pytorch"})]
    assert "-f " in rest[0] and "build echo pytorch" in rest[0]


def test_mode_docker_without_an_engine_stops_in_preflight(tmp_path: Path) -> None:
    """Explicit hydra.launcher.mode=docker, one backend, no docker client: exit 2 before any job,
    nothing written (it used to start every job and fail each)."""
    docker, env = "hydra.launcher.mode=docker", {"PATH": NO_DOCKER_PATH}
    proc = run_llem("-m", "batch=1,2", *SMALL, docker, cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines() == [
        f"Error: {MODE_NEEDS_DOCKER}",
        "Install Docker, then: docker compose pull pytorch",
        compose_line({"pytorch"}),
    ]
    assert not list(tmp_path.iterdir())
    # a single run goes through no launcher: it runs here, as before
    proc = run_llem(*SMALL, docker, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.glob("results/*/result.json"))) == 1


# what slurm-wlm 22.05's sinfo prints, exit 1, when slurmctld does not run
SINFO_DOWN = "slurm_load_partitions: Unable to contact slurm controller (connect failure)"


def test_slurm_controller_down_says_what_to_start_and_how_to_try_locally(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "srun", "scontrol", "sinfo", "squeue"):
        (bin_dir / tool).write_text(f"#!/bin/sh\necho '{SINFO_DOWN}' >&2\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    path = os.pathsep.join([str(bin_dir), os.environ["PATH"]])
    proc = run_llem(
        "-m", "batch=1,2", *SMALL, "hydra/launcher=llem_slurm", cwd=work, env={"PATH": path}
    )
    assert proc.returncode == 2 and not list(work.iterdir()), proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"Error: the SLURM controller does not answer ({SINFO_DOWN}): ")
    assert "start slurmctld" in line and "administrators" in line
    assert line.endswith("scripts/slurm_local.sh up (in a checkout of llenergymeasure)")
    assert (REPO / "scripts" / "slurm_local.sh").is_file()


def test_docs_errors_quotes_the_messages_as_printed() -> None:
    from llem.backends.registry import install_lines

    text = (REPO / "docs" / "errors.md").read_text()
    assert "Error: No inference backend installed.\n" + install_lines() + "\n```" in text
    assert "Install Docker, then: docker compose pull pytorch vllm\n(compose file: " in text
    line = compose_line({"pytorch", "vllm"})  # the path of an installed package, shortened
    assert line.replace(str(compose_path().parents[2]), "/…/site-packages") in text
    assert SINFO_DOWN in text
    assert "scripts/slurm_local.sh up (in a checkout of llenergymeasure)" in text
