"""Where a study's jobs run: engines cannot share a process or, reliably, an environment, so a study
over several backends runs each job in its backend's container image.

``hydra.launcher.mode``: ``auto`` (default) picks ``docker`` for a multi-backend study and
``subprocess`` otherwise; an explicit ``subprocess`` or ``docker`` wins. When a multi-backend study
cannot be isolated, or ``docker`` is asked for and no engine answers, the message (the design's two
lines, then where the compose file is) says what exactly is missing on this machine.
"""

from __future__ import annotations

from collections.abc import Callable

from llem.docker.compose import compose_line, pull_command
from llem.docker.engine import Engine, EngineState
from llem.errors import UsageError

NEEDS_DOCKER = "Multi-backend studies require Docker."
MODE_NEEDS_DOCKER = "hydra.launcher.mode=docker requires Docker."


def launch_mode(requested: str, backends: set[str], engine: Callable[[], Engine]) -> str:
    """``subprocess`` or ``docker`` for ``requested`` (auto | subprocess | docker | other, i.e. not
    llem's launcher); raises :class:`UsageError` when several backends cannot be isolated, or
    ``docker`` is asked for and no engine answers."""
    if len(backends) < 2:
        if requested == "docker":
            _require_engine(MODE_NEEDS_DOCKER, backends, engine)
        return "subprocess" if requested == "auto" else requested
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
    _require_engine(NEEDS_DOCKER, backends, engine)
    return "docker"


def _require_engine(headline: str, backends: set[str], engine: Callable[[], Engine]) -> None:
    """Raise :class:`UsageError` (``headline``, what is missing, the compose line) unless a Docker
    engine answers."""
    found = engine()
    pull = pull_command(backends)
    if found.state is EngineState.NO_CLIENT:
        raise UsageError(f"{headline}\nInstall Docker, then: {pull}\n{compose_line(backends)}")
    if found.state is EngineState.NO_ENGINE:
        raise UsageError(
            f"{headline}\nThe docker client is installed but no engine answers "
            f"({found.detail}): start the engine (or set hydra.launcher.docker.host), then: {pull}"
            f"\n{compose_line(backends)}"
        )
