"""The compose file shipped inside the package (one service per backend image), and the design's
commands that pull or build a study's images with it."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path

# where users look (llem config, README): no image is published on a registry yet
IMAGES_NOTE = "images not yet published on a registry: build them from a checkout (docker/README)"


def compose_path() -> Path:
    """Where the installed package keeps its compose file (``llem config --compose-path``)."""
    return Path(__file__).with_name("compose.yaml")


def pull_command(backends: Iterable[str]) -> str:
    """The design's ``docker compose pull <backend> ...`` (run with the packaged compose file)."""
    return f"docker compose pull {' '.join(sorted(backends))}"


def compose_line(backends: Iterable[str]) -> str:
    """One line after :func:`pull_command`: where the packaged compose file is, and, while the
    images are not published, the command that builds them (from a checkout: the build context is
    the repository)."""
    path = shlex.quote(str(compose_path()))
    names = " ".join(sorted(backends))
    return (
        f"(compose file: docker compose -f {path} ...; the images are not published yet: "
        f"build them in a checkout with docker compose -f llem/docker/compose.yaml build {names})"
    )
