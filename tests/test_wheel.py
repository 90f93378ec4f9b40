"""The built wheel in a fresh venv outside the repository: base install, then [pytorch]."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _run(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    return subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=900,
        **kw,
    )


# what a build must not read from the working tree (setuptools builds in the source folder)
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    "results",
    "outputs",
    "multirun",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the source: parallel builds and the repository stay apart."""
    src = tmp_path_factory.mktemp("src") / "llenergymeasure"
    shutil.copytree(REPO, src, ignore=_NOT_SOURCE)
    out = tmp_path_factory.mktemp("dist")
    proc = _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(src)], cwd=out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("llenergymeasure-2.0.0-*.whl")
    return whl


def test_wheel_contents(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "llem/conf/llem.yaml",
        "llem/conf/model/tiny.yaml",
        "llem/conf/__init__.py",
        "llem/conf/hydra/callbacks/llem_summary.yaml",
        "hydra_plugins/llem_plugins/llem_launcher.py",
        "llem/datasets/builtin_prompts.jsonl",
        "llem/examples/experiment.yaml.example",
        "llem/docker/compose.yaml",
    ):
        assert name in names
    assert not any(n.startswith("tests/") for n in names)


def test_fresh_install_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path).returncode == 0
    pip, llem = venv / "bin" / "pip", venv / "bin" / "llem"
    proc = _run([str(pip), "install", "-q", str(wheel)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr

    work = tmp_path / "work"
    work.mkdir()
    proc = _run([str(llem)], cwd=work)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: No inference backend installed.\n")
    assert "pip install llenergymeasure[pytorch]" in proc.stderr and "[vllm]" in proc.stderr
    assert list(work.iterdir()) == []
    assert _run([str(llem), "config"], cwd=work).returncode == 0
    compose = Path(_run([str(llem), "config", "--compose-path"], cwd=work).stdout.strip())
    assert compose.is_file() and compose.is_relative_to(venv)  # a pip install has the compose file

    proc = _run([str(pip), "install", "-q", "torch==2.13.0", f"{wheel}[pytorch]"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = _run([str(llem), "n=4", "batch=2", "max_new_tokens=4", "quiet=true"], cwd=work)
    assert proc.returncode == 0, proc.stderr
    (result,) = work.glob("results/*/result.json")
    data = json.loads(result.read_text())
    assert data["tokens"]["output"] == 16 and data["llem_version"] == "2.0.0"
    proc = _run(
        [
            str(llem),
            "-m",
            "batch=1,2",
            "n=2",
            "max_new_tokens=2",
            "quiet=true",
            "hydra.sweep.dir=study",
        ],
        cwd=work,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "[llem] study of 2 jobs" in proc.stdout
        and len(list((work / "study").glob("*/result.json"))) == 2
    )
    assert (work / "study" / "study_summary.json").exists()
    code = "import llem.conf, os; print(os.path.dirname(llem.conf.__file__))"
    where = _run([str(venv / "bin" / "python"), "-c", code], cwd=work).stdout.strip()
    assert where.startswith(str(venv))


def test_examples_from_a_wheel_install(wheel, tmp_path):
    """``llem examples`` copies what ships in the wheel (no checkout needed), overwrites nothing,
    and the copied experiment and study files compose."""
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path).returncode == 0
    llem = venv / "bin" / "llem"
    proc = _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    work = tmp_path / "work"
    work.mkdir()
    proc = _run([str(llem), "examples"], cwd=work)
    assert proc.returncode == 0, proc.stderr
    copied = {p.relative_to(work / "llem-examples").as_posix() for p in work.rglob("*.*")}
    shipped = {p.name for p in (REPO / "llem" / "examples").glob("*.example")}
    shipped |= {f"multirun_examples/{p.name}" for p in (REPO / "multirun_examples").glob("*.yaml")}
    assert copied == shipped | {"multirun_examples/README.md"}
    assert "llem run llem-examples/experiment.yaml.example" in proc.stdout
    for rel in copied:
        assert (work / "llem-examples" / rel).read_bytes() == (
            REPO / ("" if "/" in rel else "llem/examples") / rel
        ).read_bytes()
    again = _run([str(llem), "examples"], cwd=work)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert again.stderr.startswith("Error: llem-examples/") and "overwrites nothing" in again.stderr
    ex = work / "llem-examples"
    for file in ("experiment.yaml.example", "multirun_examples/batch_sweep.yaml"):
        proc = _run([str(llem), "run", file, "n=4", "--cfg", "job"], cwd=ex)
        assert proc.returncode == 0, proc.stderr
        assert "'n': 4" in proc.stdout
