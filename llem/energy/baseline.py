"""Idle baseline: power drawn with the model loaded and nothing running, cached on disk per device.

The cache key is the device's identity (GPU UUID or RAPL zone), plus the driver version and power
limit for GPUs, so a driver update or a new power cap invalidates it. Entries older than
``max_age_h`` are measured again."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass

from llem.paths import cache_dir, write_json_atomic


@dataclass
class IdlePower:
    device: str
    device_key: str
    covers: str
    meter: str
    idle_power_w: float
    duration_s: float
    measured_at_unix_s: float
    source: str = "measured"  # measured | cache

    def age_s(self, now: float | None = None) -> float:
        return (now or time.time()) - self.measured_at_unix_s


def cache_key(device_key: str, identity: str) -> str:
    return hashlib.sha256(f"{device_key}|{identity}".encode()).hexdigest()[:24]


def load(key: str, max_age_s: float) -> IdlePower | None:
    path = cache_dir("baselines") / f"{key}.json"
    try:
        entry = IdlePower(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if max_age_s <= 0 or entry.age_s() > max_age_s:
        return None
    entry.source = "cache"
    return entry


def store(key: str, entry: IdlePower) -> None:
    write_json_atomic(
        cache_dir("baselines") / f"{key}.json", asdict(entry) | {"source": "measured"}
    )
