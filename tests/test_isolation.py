"""Where a study's jobs run (hydra.launcher.mode=auto): a study over several backends goes to
containers by itself, and when it cannot, the pre-flight says what is missing on this machine.

Real ``llem`` processes with the stand-in ``echo`` backend (tests/stand_ins, loaded as a plugin)
next to ``pytorch``; "no client" is a PATH without a docker client, "no engine" the real docker
client pointed at a socket nobody serves. The success case (a real engine):
tests/test_docker_mode.py.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from llem.docker.compose import compose_line, compose_path, pull_command
from llem.docker.engine import Engine, EngineState, probe
from llem.errors import UsageError
from llem.study.isolation import NEEDS_DOCKER, launch_mode
from tests.helpers import REPO, run_llem

PLUGIN = {"LLEM_PLUGINS": "llem_echo", "PYTHONPATH": str(REPO / "tests" / "stand_ins")}
STUDY = ("-m", "backend=pytorch,echo", "n=2", "max_new_tokens=2", "energy=none", "quiet=true")
TWO = {"pytorch", "echo"}


def _refused(proc, tmp_path: Path) -> list[str]:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written
    return proc.stderr.splitlines()


def test_no_docker_client_says_install_docker_and_pull_with_the_packaged_compose_file(tmp_path):
    path = os.pathsep.join([str(Path(sys.executable).parent), "/nonexistent"])
    proc = run_llem(*STUDY, cwd=tmp_path, env={**PLUGIN, "PATH": path})
    assert _refused(proc, tmp_path) == [
        f"Error: {NEEDS_DOCKER}",
        f"Install Docker, then: {pull_command(TWO)}",
        compose_line(TWO),
    ]
    assert compose_path().is_file() and "pull echo pytorch" in proc.stderr


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker client")
def test_client_without_engine_says_so_and_never_asks_for_mode_docker(tmp_path):
    host = f"unix://{tmp_path}/nobody.sock"
    proc = run_llem(*STUDY, f"hydra.launcher.docker.host={host}", cwd=tmp_path, env=PLUGIN)
    first, second, third = _refused(proc, tmp_path)
    assert first == f"Error: {NEEDS_DOCKER}" and third == compose_line(TWO)
    assert second.startswith("The docker client is installed but no engine answers (")
    assert second.endswith(f"then: {pull_command(TWO)}") and "Install Docker" not in second
    # the same with mode=docker given: the message does not ask for it
    proc = run_llem(
        *STUDY,
        "hydra.launcher.mode=docker",
        f"hydra.launcher.docker.host={host}",
        cwd=tmp_path,
        env=PLUGIN,
    )
    lines = _refused(proc, tmp_path)
    assert lines[1] == second and "mode=docker" not in proc.stderr


def test_explicit_subprocess_mode_is_refused_for_several_backends(tmp_path):
    proc = run_llem(*STUDY, "hydra.launcher.mode=subprocess", cwd=tmp_path, env=PLUGIN)
    first, second = _refused(proc, tmp_path)
    assert first == f"Error: {NEEDS_DOCKER}"
    assert second.startswith("hydra.launcher.mode=subprocess runs every job on this host")


def test_single_backend_study_stays_in_subprocesses(tmp_path):
    sweep = tmp_path / "study"
    proc = run_llem(
        "-m",
        "backend=echo",
        "batch=1,2",
        *STUDY[2:],
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env={**PLUGIN, "PATH": str(Path(sys.executable).parent)},  # no docker client needed
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"study of 2 jobs in {sweep} (subprocess," in proc.stdout
    assert len(list(sweep.glob("*/result.json"))) == 2


def test_launch_mode_resolves_auto_and_lets_an_explicit_mode_win():
    def engine(state: EngineState) -> Engine:
        return Engine(state, "27.0" if state is EngineState.AVAILABLE else "")

    up = lambda: engine(EngineState.AVAILABLE)  # noqa: E731
    assert launch_mode("auto", TWO, up) == "docker"
    assert launch_mode("auto", {"pytorch"}, up) == "subprocess"
    assert launch_mode("docker", {"pytorch"}, up) == "docker"
    assert launch_mode("subprocess", {"pytorch"}, up) == "subprocess"
    with pytest.raises(UsageError, match="Only llem's launcher"):
        launch_mode("other", TWO, up)
    assert probe("no-such-docker-client").state is EngineState.NO_CLIENT
