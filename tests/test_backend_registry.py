"""The backend registry: everything that names a backend derives from it, and a backend living only
in tests/stand_ins/llem_echo (loaded with LLEM_PLUGINS) shows up everywhere and runs a real
study."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llem.backends.registry import backends, get_backend, install_lines
from llem.config import validate
from llem.errors import ConfigError
from tests.helpers import REPO, config_with, run_llem

PLUGIN = {"LLEM_PLUGINS": "llem_echo", "PYTHONPATH": str(REPO / "tests" / "stand_ins")}

NO_BACKEND = """\
Error: No inference backend installed.
  pytorch:   pip install llenergymeasure[pytorch]   (PyTorch + HF Transformers)
  vllm:      pip install llenergymeasure[vllm]      (vLLM, high throughput)
  tensorrt:  pip install llenergymeasure[tensorrt]  (TensorRT-LLM, NVIDIA-optimised)
"""  # the design's four lines: backend=openai measures a server, it is no engine to install


def test_builtins_are_registered_in_order_with_their_extras():
    assert [e.name for e in backends()][:3] == ["pytorch", "vllm", "tensorrt"]
    assert get_backend("vllm").install_command == "pip install llenergymeasure[vllm]"
    assert "Error: No inference backend installed.\n" + install_lines() + "\n" == NO_BACKEND


def test_no_backend_installed_is_the_designed_message(tmp_path):
    """Every engine hidden from this interpreter: the pre-flight lists the extras, exit 2."""
    engines = ["torch", "transformers", "vllm", "tensorrt_llm"]
    code = f"import sys; sys.modules.update(dict.fromkeys({engines})); "
    code += "from llem.cli import main; main(['n=2'])"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert (proc.returncode, proc.stderr) == (2, NO_BACKEND)
    assert list(tmp_path.iterdir()) == []


def test_unknown_backend_name_lists_the_registered_ones():
    with pytest.raises(
        ConfigError, match=r"backend.name='nope' is not a backend: use one of 'pytorch'"
    ):
        validate(config_with(**{"backend": {"name": "nope"}}))


def test_backend_keys_are_typed_by_their_own_config():
    with pytest.raises(ConfigError, match=r"unknown key 'backend.engine_dir'"):
        validate(config_with(**{"backend.engine_dir": "/x"}))  # a tensorrt key on pytorch
    with pytest.raises(ConfigError, match=r"backend.num_threads=0 is out of range"):
        validate(config_with(**{"backend.num_threads": 0}))


def test_hydra_options_hold_the_schema_defaults():
    from tests.helpers import compose_config as _compose

    for entry in backends():
        composed = _compose(f"backend={entry.name}").backend
        assert dict(composed) == entry.defaults().model_dump(mode="json")


def test_launcher_images_come_from_the_registry():
    from hydra_plugins.llem_plugins.llem_launcher import DockerConf

    assert DockerConf().images == {e.name: e.image for e in backends() if e.image}
    assert set(DockerConf().images) >= {"pytorch", "vllm", "tensorrt"}


def test_environment_records_each_backends_packages():
    from llem.environment import package_versions

    versions = package_versions()
    for entry in backends():
        assert set(entry.packages) <= set(versions)
    assert "tensorrt-llm" in versions and "torch" in versions


# --------------------------------------------------------------------------- a plugin backend


@pytest.mark.e2e
def test_plugin_backend_appears_in_help_and_config(tmp_path):
    proc = run_llem("--help", cwd=tmp_path, env=PLUGIN)
    assert proc.returncode == 0
    assert "backend: echo, echo_missing, openai, pytorch, tensorrt, vllm" in proc.stdout
    proc = run_llem("config", cwd=tmp_path, env={**PLUGIN, "COLUMNS": "200"})
    assert proc.returncode == 0
    assert "backend echo " in proc.stdout and "installed: echo stand-in" in proc.stdout
    assert "not installed (pip install llem-missing-engine): needs a missing module" in proc.stdout


@pytest.mark.e2e
def test_plugin_found_through_an_entry_point(tmp_path):
    """An installed distribution declaring ``[llem.plugins]`` is loaded without LLEM_PLUGINS."""
    site = tmp_path / "site"
    dist = site / "llem_echo-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: llem-echo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[llem.plugins]\necho = llem_echo\n")
    path = f"{site}:{REPO / 'tests' / 'stand_ins'}"
    proc = run_llem("--help", cwd=tmp_path, env={"PYTHONPATH": path, "LLEM_PLUGINS": ""})
    assert proc.returncode == 0, proc.stderr
    assert "backend: echo, echo_missing, openai, pytorch, tensorrt, vllm" in proc.stdout


@pytest.mark.e2e
def test_plugin_backend_missing_module_gets_its_install_hint(tmp_path):
    proc = run_llem("backend=echo_missing", cwd=tmp_path, env=PLUGIN)
    assert (proc.returncode, proc.stderr) == (
        2,
        "Error: backend 'echo_missing' is not installed: pip install llem-missing-engine  "
        "(needs a missing module)\n",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.e2e
def test_unimportable_plugin_is_one_error_line(tmp_path):
    for args in (["n=2"], ["--help"], ["config"]):
        proc = run_llem(*args, cwd=tmp_path, env={"LLEM_PLUGINS": "llem_no_such_plugin"})
        assert (proc.returncode, proc.stderr) == (
            2,
            "Error: LLEM_PLUGINS: cannot import plugin module 'llem_no_such_plugin': "
            "No module named 'llem_no_such_plugin'\n",
        )


@pytest.mark.e2e
def test_plugin_backend_runs_a_study_with_its_typed_keys(tmp_path):
    proc = run_llem(
        "-m",
        "backend=echo",
        "backend.step_ms=1,3",
        "n=4",
        "batch=2",
        "max_new_tokens=5",
        "warmup_batches=0",
        "energy=none",
        "quiet=true",
        cwd=tmp_path,
        env=PLUGIN,
    )
    assert proc.returncode == 0, proc.stderr
    results = sorted((tmp_path / "results").glob("study_*/*/result.json"))
    assert len(results) == 2
    data = [json.loads(p.read_text()) for p in results]
    assert [d["config"]["backend"] for d in data] == [
        {"name": "echo", "step_ms": 1.0},
        {"name": "echo", "step_ms": 3.0},
    ]
    for d in data:
        assert d["model"]["architecture"] == "Echo"
        assert d["tokens"]["output"] == 4 * 5 and d["tokens"]["requests"] == 4
    slow, fast = data[1]["latency"]["e2e_ms"]["min"], data[0]["latency"]["e2e_ms"]["min"]
    assert slow >= 5 * 3 and fast >= 5 * 1  # each token really waited step_ms
