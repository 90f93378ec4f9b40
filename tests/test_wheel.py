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

NO_BACKEND = """\
Error: No inference backend installed.
  pytorch:   pip install llenergymeasure[pytorch]   (PyTorch + HF Transformers)
  vllm:      pip install llenergymeasure[vllm]      (vLLM, high throughput)
  tensorrt:  pip install llenergymeasure[tensorrt]  (TensorRT-LLM, NVIDIA-optimised)
"""
JOBLIB_MISSING = (
    "Error: unknown hydra/launcher 'joblib': not installed: pip install llenergymeasure[joblib]\n"
)
SLURM_MISSING = (
    "Error: unknown hydra/launcher 'llem_slurm': not installed: "
    "pip install llenergymeasure[slurm]\n"
)


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
def dist(tmp_path_factory) -> Path:
    """The sdist, and the wheel built from it, from a copy of the source: parallel builds and the
    repository stay apart."""
    src = tmp_path_factory.mktemp("src") / "llenergymeasure"
    shutil.copytree(REPO, src, ignore=_NOT_SOURCE)
    out = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(src)]
    proc = _run(build, cwd=out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def wheel(dist) -> Path:
    (whl,) = dist.glob("llenergymeasure-2.0.0-*.whl")
    return whl


def _tracked() -> set[str]:
    ls = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return set(ls.stdout.splitlines())


def _shipped() -> dict[str, str]:
    """Installed path -> source path of every file the wheel must hold: the tracked modules of each
    package pyproject.toml lists, and the tracked files its package-data patterns match."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    tracked = _tracked()
    shipped = {}
    for package in conf["packages"]:
        src = conf.get("package-dir", {}).get(package, package.replace(".", "/"))
        dest = package.replace(".", "/")
        data = conf.get("package-data", {}).get(package, [])
        globbed = {str(p.relative_to(REPO)) for pattern in data for p in (REPO / src).glob(pattern)}
        for path in (p for p in tracked if p.startswith(f"{src}/")):
            rel = Path(path).relative_to(src)
            if (rel.suffix == ".py" and rel.parent == Path()) or path in globbed:
                shipped[f"{dest}/{rel}"] = path
    return shipped


def test_wheel_holds_exactly_the_tracked_package_files(wheel):
    """No stray file (tests, caches, results), none missing; every tracked module of llem and
    hydra_plugins is in a listed package; py.typed and the license ship."""
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    info = "llenergymeasure-2.0.0.dist-info/"
    meta = {"METADATA", "WHEEL", "entry_points.txt", "top_level.txt", "RECORD", "licenses/LICENSE"}
    shipped = _shipped()
    assert names == set(shipped) | {info + m for m in meta}
    sources = {p for p in _tracked() if p.startswith(("llem/", "hydra_plugins/", "conf/"))}
    assert {p for p in sources if p.endswith(".py")} <= set(shipped.values())
    assert {"llem/py.typed", "llem/conf/llem.yaml", "llem/docker/compose.yaml"} <= names
    license_text = zipfile.ZipFile(wheel).read(info + "licenses/LICENSE").decode()
    assert license_text == (REPO / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in license_text
    metadata = zipfile.ZipFile(wheel).read(info + "METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()


def test_sdist_holds_the_wheels_sources_and_the_project_files(dist):
    import tarfile

    (sdist,) = dist.glob("llenergymeasure-2.0.0.tar.gz")
    top = "llenergymeasure-2.0.0/"
    with tarfile.open(sdist) as tar:
        names = {m.name.removeprefix(top) for m in tar.getmembers() if m.isfile()}
    egg = "llenergymeasure.egg-info/"
    generated = {"PKG-INFO", "setup.cfg"} | {
        egg + f
        for f in (
            "PKG-INFO",
            "SOURCES.txt",
            "dependency_links.txt",
            "entry_points.txt",
            "requires.txt",
            "top_level.txt",
        )
    }
    project = {"README.md", "LICENSE", "pyproject.toml", "MANIFEST.in"}
    assert names == set(_shipped().values()) | project | generated


def test_fresh_install_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path).returncode == 0
    pip, llem = venv / "bin" / "pip", venv / "bin" / "llem"
    proc = _run([str(pip), "install", "-q", str(wheel)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr

    work = tmp_path / "work"
    work.mkdir()
    proc = _run([str(llem)], cwd=work)
    assert (proc.returncode, proc.stderr) == (2, NO_BACKEND)  # the design's four lines
    assert list(work.iterdir()) == []
    proc = _run([str(llem), "-m", "n=2", "hydra/launcher=joblib"], cwd=work)
    assert (proc.returncode, proc.stderr) == (2, JOBLIB_MISSING)
    proc = _run([str(llem), "-m", "n=2", "hydra/launcher=llem_slurm"], cwd=work)
    assert (proc.returncode, proc.stderr) == (2, SLURM_MISSING)
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
