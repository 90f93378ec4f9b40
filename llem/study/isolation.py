"""Where a study's jobs run: engines cannot share a process or, reliably, an environment, so a study
over several backends runs each job in its backend's container image.

``hydra.launcher.mode``: ``auto`` (default) picks ``docker`` for a multi-backend study and
``subprocess`` otherwise; an explicit ``subprocess`` or ``docker`` wins. When a multi-backend study
cannot be isolated, the message says what exactly is missing on this machine.
"""

from __future__ import annotations

from collections.abc import Callable

from llem.docker.compose import pull_command
from llem.docker.engine import Engine, EngineState
from llem.errors import UsageError

NEEDS_DOCKER = "Multi-backend studies require Docker."


def launch_mode(requested: str, backends: set[str], engine: Callable[[], Engine]) -> str:
    """``subprocess`` or ``docker`` for ``requested`` (auto | subprocess | docker | other, i.e. not
    llem's launcher); raises :class:`UsageError` when several backends cannot be isolated."""
    if len(backends) < 2:
        return "subprocess" if requested == "auto" else requested
    pull = pull_command(backends)
    if requested == "subprocess":
        raise UsageError(
            f"{NEEDS_DOCKER}\nhydra.launcher.mode=subprocess runs every job on this host: drop it "
            "(mode=auto runs each job in its backend's image)"
        )
    if requested not in ("auto", "docker"):
        raise UsageError(
            f"{NEEDS_DOCKER}\nOnly llem's launcher (hydra/launcher=llem, the default) runs jobs in "
            "containers: drop the hydra/launcher override, or study one backend at a time"
        )
    found = engine()
    if found.state is EngineState.NO_CLIENT:
        raise UsageError(f"{NEEDS_DOCKER}\nInstall Docker, then: {pull}")
    if found.state is EngineState.NO_ENGINE:
        raise UsageError(
            f"{NEEDS_DOCKER}\nThe docker client is installed but no engine answers "
            f"({found.detail}): start the engine (or set hydra.launcher.docker.host), then: {pull}"
        )
    return "docker"
