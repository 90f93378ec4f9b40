"""Wall-clock timestamps as llem writes them in its records."""

from __future__ import annotations

from datetime import datetime, timezone


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-01-01T12:00:00+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def process_started_s() -> float | None:
    """When this process started (fork or exec), Unix time in s (10 ms resolution); ``None`` where
    ``/proc`` does not say."""
    import os
    import time

    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as f:
            uptime_s = float(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    # field 22 of stat (starttime, clock ticks after boot) is the 20th after the command name
    return time.time() - uptime_s + int(fields[19]) / ticks
