"""pyproject.toml declares every third-party package llem imports (the wheel's own files:
tests/test_wheel.py)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.helpers import REPO

OWN = {"llem", "hydra_plugins.llem_plugins"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported() -> dict[str, set[str]]:
    """Top-level module (``hydra_plugins.<plugin>`` for Hydra plugins) -> files importing it, from
    every absolute import in llem/ and hydra_plugins/ (imports inside functions included)."""
    found: dict[str, set[str]] = {}
    for root in ("llem", "hydra_plugins"):
        for path in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    parts = name.split(".")
                    top = ".".join(parts[:2]) if parts[0] == "hydra_plugins" else parts[0]
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def _distribution(module: str) -> str:
    """The distribution providing ``module`` (installed: its metadata; else its own name, as for
    vllm, tensorrt_llm; a Hydra plugin by its folder name)."""
    if module.startswith("hydra_plugins."):
        return _norm(module.split(".")[1])
    dists = importlib.metadata.packages_distributions().get(module)
    return _norm(dists[0]) if dists else _norm(module)


def test_every_imported_third_party_package_is_declared() -> None:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = {k: v for k, v in project["optional-dependencies"].items() if k != "dev"}
    declared = {
        _norm(Requirement(r).name)
        for r in project["dependencies"] + [r for reqs in extras.values() for r in reqs]
    }
    third_party = {
        module: files
        for module, files in _imported().items()
        if module not in OWN and module not in sys.stdlib_module_names and module != "__future__"
    }
    assert {"typing_extensions", "torch", "vllm"} <= set(third_party)  # the scan sees them
    missing = {
        f"{_distribution(m)} (imported by {sorted(files)[0]})"
        for m, files in third_party.items()
        if _distribution(m) not in declared
    }
    assert not missing, f"imported but not in pyproject.toml: {sorted(missing)}"


def test_the_license_is_the_apache_2_0_text() -> None:
    text = (REPO / "LICENSE").read_text()
    assert text.splitlines()[1].strip() == "Apache License"
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert text.rstrip().endswith("limitations under the License.")
    assert Path(REPO / "llem" / "py.typed").is_file()


@pytest.mark.parametrize("dockerfile", sorted((REPO / "docker").glob("Dockerfile.*")), ids=str)
def test_each_dockerfile_copies_what_the_build_reads(dockerfile: Path) -> None:
    """``pip install .`` in an image needs pyproject.toml, the readme, the license file and every
    package's folder: a file left out of COPY fails the image build."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    toml = tomllib.loads((REPO / "pyproject.toml").read_text())
    setup = toml["tool"]["setuptools"]
    folders = {
        setup.get("package-dir", {}).get(p, p.replace(".", "/")).split("/")[0]
        for p in setup["packages"]
    }
    needed = {"pyproject.toml", toml["project"]["readme"], *toml["project"]["license-files"]}
    copied = {
        src.rstrip("/")
        for line in dockerfile.read_text().splitlines()
        if line.startswith("COPY ")
        for src in line.split()[1:-1]
    }
    assert needed | folders <= copied
