"""One llem process per folder: a lock file holding the owner's pid, host and start time.

A second study (or run) on the same folder stops with one line naming the owner. A lock left by a
process that no longer exists on this host is stale: it is taken over, with a warning. Locks of
another host are never taken over (its process may be alive): the message says how to remove the
file by hand.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from llem.errors import UsageError

LOCK_FILE = ".llem.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """Exclusive ownership of ``folder`` for this process (a context manager)."""

    def __init__(self, folder: Path, what: str = "study") -> None:
        self.path = folder / LOCK_FILE
        self.what = what
        self.warning: str | None = None
        self._held = False

    def acquire(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started_unix_s": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._check_owner()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            self._held = True
            return self
        raise UsageError(f"could not lock {self.path.parent}: another llem keeps taking it")

    def _check_owner(self) -> None:
        """Raise when a live owner holds the lock; remove a stale one (and remember the warning)."""
        try:
            owner = json.loads(self.path.read_text())
            pid, host = int(owner["pid"]), str(owner["host"])
            since = time.strftime(
                "%Y-%m-%d %H:%M:%S", time.localtime(float(owner["started_unix_s"]))
            )
        except (OSError, ValueError, KeyError, TypeError):
            owner, pid, host, since = None, -1, socket.gethostname(), "?"
        if owner is None and self.path.exists() and time.time() - self.path.stat().st_mtime < 2:
            time.sleep(0.1)  # being written right now by its owner
            return
        if host != socket.gethostname():
            raise UsageError(
                f"{self.path.parent} is in use by another {self.what} (pid {pid} on {host}, since "
                f"{since}); if that process is gone, delete {self.path}"
            )
        if owner is not None and _alive(pid):
            raise UsageError(
                f"{self.path.parent} is in use by another {self.what} (pid {pid}, since {since}): "
                "wait for it or use another folder"
            )
        self.warning = f"took over a stale lock of {self.path.parent} (pid {pid} is gone)"
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self._held:
            self._held = False
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
