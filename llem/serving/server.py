"""An inference server llem starts and stops: its own process group on a free loopback port, its
log in the run folder, a health wait that quotes the log's tail when it fails, and a stop that ends
every process of the group (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from llem.errors import UsageError

LOG_TAIL_LINES = 20


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``path`` (empty when there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class ServerFailed(UsageError):
    """The server could not start or stopped while in use: one line, then the log's tail (the job
    fails: ``Error:``, exit 2)."""


class ServerProcess:
    """``argv`` run in a new session (its own process group), stdout and stderr into ``log``."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.argv, self.log = list(argv), log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, **(self.env or {})},
                )
            except OSError as exc:
                raise UsageError(f"cannot start the server ({self.argv[0]}): {exc}") from None

    def _failure(self, what: str) -> ServerFailed:
        tail = log_tail(self.log)
        return ServerFailed(f"{what} (log: {self.log})" + (f"\n{tail}" if tail else ""))

    def wait_healthy(self, health_url: str, timeout_s: float) -> float:
        """Poll ``health_url`` until it answers 200; the seconds that took."""
        assert self.proc is not None, "start() first"
        t0 = time.monotonic()
        while True:
            code = self.proc.poll()
            if code is not None:
                raise self._failure(f"the server exited with status {code} while starting")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(health_url, timeout=2.0) as resp,
            ):
                if resp.status == 200:
                    return time.monotonic() - t0
            if time.monotonic() - t0 > timeout_s:
                raise self._failure(f"the server was not healthy after {timeout_s:g} s")
            time.sleep(0.2)

    def check_alive(self, grace_s: float = 0.0) -> None:
        """Raise :class:`ServerFailed` (with its exit status) when the server has stopped, or stops
        within ``grace_s`` (a server dying as its streams break)."""
        if self.proc is None:
            return
        try:
            code = self.proc.wait(grace_s) if grace_s > 0 else self.proc.poll()
        except subprocess.TimeoutExpired:
            return
        if code is not None:
            raise self._failure(f"the server exited with status {code} during the run")

    def stop(self, timeout_s: float) -> int | None:
        """SIGTERM to the group, SIGKILL after ``timeout_s``; the server's exit status."""
        if self.proc is None:
            return None
        pgid = self.proc.pid  # the session leader's pid is its group's id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError):  # children that outlived the leader
            os.killpg(pgid, signal.SIGKILL)
        return self.proc.wait()
