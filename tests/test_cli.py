"""The command line around the Hydra app: subcommands, help, and what must stay light."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llem.result import result_schema
from tests.helpers import REPO, run_llem

pytestmark = pytest.mark.e2e


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    [
        "import llem, llem.cli, llem.config, llem.result",
        "from llem.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
        "from llem.cli import main\nmain(['config'])",
        "from llem.cli import main\ntry:\n    main(['--cfg', 'job'])\nexcept SystemExit:\n    pass",
    ],
)
def test_light_commands_do_not_import_torch_or_transformers(code):
    loaded = _modules_after(code)
    assert "torch" not in loaded and "transformers" not in loaded


def test_help_lists_groups_and_examples(tmp_path):
    proc = run_llem("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for text in (
        "llem run experiment.yaml",
        "backend: openai, pytorch",
        "load: batch, concurrency, poisson",
        "model: gpt2, llama3",
        "dataset: aienergyscore",
    ):
        assert text in proc.stdout


# Hydra's own rendering of the app help (llem --help answers a plain --help without Hydra)
HYDRA_HELP = (
    "import sys\nfrom llem.app import hydra_app\nsys.argv = ['llem', '--help']\nhydra_app()"
)
PLUGINS = {
    "LLEM_PLUGINS": "llem_echo,tests.stand_ins.constant_meter",
    "PYTHONPATH": f"{REPO}:{REPO / 'tests' / 'stand_ins'}",
}


@pytest.mark.parametrize("env", [{}, PLUGINS], ids=["packaged", "plugin backend and meter"])
def test_help_without_hydra_is_hydras_help(tmp_path, env):
    hydra = subprocess.run(
        [sys.executable, "-c", HYDRA_HELP],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )
    assert hydra.returncode == 0, hydra.stderr
    if env:
        assert "backend: echo, echo_missing, openai" in hydra.stdout and "constant" in hydra.stdout
    for flag in ("--help", "-h"):
        proc = run_llem(flag, cwd=tmp_path, env=env)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, hydra.stdout, hydra.stderr)
    assert list(tmp_path.iterdir()) == []


def test_help_with_overrides_goes_through_hydra(tmp_path):
    proc = run_llem("backend=vllm", "n=8", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "backend:\n  name: vllm\n" in proc.stdout and "\n'n': 8\n" in proc.stdout


def test_config_reports_backends_nvml_and_docker(tmp_path):
    proc = run_llem("config", cwd=tmp_path)
    assert proc.returncode == 0
    for text in (
        "backend pytorch",
        "installed",
        "pip install llenergymeasure[vllm]",
        "NVML",
        "docker",
    ):
        assert text in proc.stdout


def test_schema_command_prints_the_result_schema(tmp_path):
    proc = run_llem("schema", cwd=tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout) == result_schema()


def test_cfg_job_shows_the_composed_experiment(tmp_path):
    proc = run_llem("--cfg", "job", "batch=4", cwd=tmp_path)
    assert (
        proc.returncode == 0
        and "batch: 4" in proc.stdout
        and "name_or_path: llem://tiny-llama" in proc.stdout
    )
    assert list(tmp_path.iterdir()) == []
