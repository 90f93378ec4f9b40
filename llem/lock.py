"""One llem process per folder: a lock file holding the owner's pid, host and start time.

The owner holds an exclusive ``flock`` on the file for its whole life, so the kernel decides who
owns the folder: of two processes racing for it (also for a stale lock) exactly one wins, and the
other stops with one line naming the owner (pid, host, start time). A lock file nobody holds,
left by a process that no longer exists on this host, is stale: it is taken over, with a warning.
Locks of another host are never taken over (``flock`` may not reach across hosts on a network file
system, and its process may be alive): the message says how to remove the file by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from llem.errors import UsageError

LOCK_FILE = ".llem.lock"
RECORD_WAIT_S = 2.0  # how long a loser waits for the winner to finish writing its record


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(owner: tuple[int, str, str]) -> bool:
    """Whether a lock record names a process of this host that no longer exists."""
    pid, host, _ = owner
    return host == socket.gethostname() and pid != os.getpid() and not _alive(pid)


def _owner(text: str) -> tuple[int, str, str] | None:
    """(pid, host, start time) of a lock record; None when it is not one (empty, half-written)."""
    try:
        record = json.loads(text)
        since = time.localtime(float(record["started_unix_s"]))
        return int(record["pid"]), str(record["host"]), time.strftime("%Y-%m-%d %H:%M:%S", since)
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        return None


class FolderLock:
    """Exclusive ownership of ``folder`` for this process (a context manager)."""

    def __init__(self, folder: Path, what: str = "study") -> None:
        self.path = folder / LOCK_FILE
        self.what = what
        self.warning: str | None = None
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):  # a lock released between our open and our flock: try its successor
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UsageError(self._in_use(self._held_record())) from None
            if os.fstat(fd).st_ino != _inode(self.path):
                os.close(fd)
                continue
            try:
                self._take(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return self
        raise UsageError(f"could not lock {self.path.parent}: its {LOCK_FILE} keeps changing")

    def _take(self, fd: int) -> None:
        """With the flock held: refuse a live or another host's owner, else write our record."""
        owner = _owner(os.pread(fd, 4096, 0).decode(errors="replace"))
        if owner is not None:
            pid, host, _ = owner
            if not _stale(owner) and (host, pid) != (socket.gethostname(), os.getpid()):
                raise UsageError(self._in_use(owner))
            self.warning = (
                f"took over a stale lock of {self.path.parent} (pid {pid}, since {owner[2]}, "
                "is gone)"
            )
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started_unix_s": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)

    def _held_record(self) -> tuple[int, str, str] | None:
        """The record of the process holding the lock. It may be writing it right now: until then
        the file is empty or still names the stale owner it is taking over (a process gone from
        this host), so those are read again for up to ``RECORD_WAIT_S``."""
        deadline = time.monotonic() + RECORD_WAIT_S
        owner = None
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                owner = _owner(self.path.read_text())
            if owner is not None and not _stale(owner):
                return owner
            time.sleep(0.02)
        return owner

    def _in_use(self, owner: tuple[int, str, str] | None) -> str:
        if owner is None:
            return f"{self.path.parent} is in use by another {self.what} (its {self.path} is empty)"
        pid, host, since = owner
        if host != socket.gethostname():
            return (
                f"{self.path.parent} is in use by another {self.what} (pid {pid} on {host}, since "
                f"{since}); if that process is gone, delete {self.path}"
            )
        return (
            f"{self.path.parent} is in use by another {self.what} (pid {pid} on {host}, since "
            f"{since}): wait for it or use another folder"
        )

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self.path.unlink(missing_ok=True)  # before the flock goes: no one takes a dead file
            os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None
