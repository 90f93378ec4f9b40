"""The fake OpenAI server as llem starts it in the serving tests: its command line, the base
overrides of a served run, and which of its processes are still alive."""

from __future__ import annotations

import subprocess
import sys
import uuid

from tests.helpers import REPO

FAKE = REPO / "tests" / "fake_openai_server.py"
ENV = {"OMP_NUM_THREADS": "1"}
BASE = ["backend=openai", "energy=none", "quiet=true", "max_new_tokens=8", "warmup_batches=1"]


def command(*extra: str) -> tuple[str, str]:
    """A ``backend.command`` override starting the fake server, and a marker unique to it (found in
    ``ps`` output while any of its processes lives)."""
    marker = f"{10 + uuid.uuid4().int % 10**6 / 10**7:.7f}"
    return overrides_list(
        [sys.executable, str(FAKE), "--port", "{port}", "--ttft-ms", marker, *extra]
    ), marker


def overrides_list(args: list[str]) -> str:
    """``backend.command=[...]`` with every element quoted for Hydra's override grammar."""
    return "backend.command=[" + ",".join(f"'{a}'" for a in args) + "]"


def survivors(marker: str) -> list[str]:
    """Live processes of the server marked ``marker`` (not llem's own, whose overrides name it)."""
    ps = subprocess.run(
        ["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True
    )
    return [
        line
        for line in ps.stdout.splitlines()
        if marker in line and "backend.command" not in line and "ps -ww" not in line
    ]
