"""The compose file shipped inside the package (one service per backend image), and the command
that pulls a study's images with it."""

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
    """``docker compose -f <packaged file> pull <backend> ...``, ready to paste into a shell."""
    return f"docker compose -f {shlex.quote(str(compose_path()))} pull {' '.join(sorted(backends))}"
