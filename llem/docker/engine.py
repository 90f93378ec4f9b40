"""Is a Docker engine usable? The client is looked up on PATH and asked ``docker info``: no client,
a client whose engine does not answer, or an engine (its version)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from enum import Enum

PROBE_TIMEOUT_S = 10.0


class EngineState(Enum):
    NO_CLIENT = "no client"
    NO_ENGINE = "no engine"
    AVAILABLE = "available"


@dataclass(frozen=True)
class Engine:
    """What ``probe`` found: the state and its detail (engine version, or why none answered)."""

    state: EngineState
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.state is EngineState.AVAILABLE

    def describe(self) -> str:
        """One line for ``llem config``."""
        if self.state is EngineState.NO_CLIENT:
            return "not installed"
        if self.state is EngineState.NO_ENGINE:
            return f"client installed, no engine answers ({self.detail})"
        return f"available (engine {self.detail})"


def probe(executable: str = "docker", host: str | None = None) -> Engine:
    """Ask ``executable info`` (with ``DOCKER_HOST=host`` when given) whether an engine answers."""
    client = shutil.which(executable)
    if client is None:
        return Engine(EngineState.NO_CLIENT)
    env = dict(os.environ) | ({"DOCKER_HOST": host} if host else {})
    try:
        out = subprocess.run(
            [client, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Engine(EngineState.NO_ENGINE, f"docker info timed out after {PROBE_TIMEOUT_S:.0f} s")
    except OSError as exc:
        return Engine(EngineState.NO_ENGINE, str(exc))
    version = out.stdout.strip()
    if out.returncode == 0 and version:
        return Engine(EngineState.AVAILABLE, version)
    lines = [line.strip() for line in out.stderr.splitlines() if line.strip()]
    return Engine(
        EngineState.NO_ENGINE, lines[-1] if lines else f"docker info exit {out.returncode}"
    )
