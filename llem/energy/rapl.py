"""CPU energy from the Linux powercap RAPL interface (Intel and AMD expose the same ``intel-rapl``
tree).

Zones: ``intel-rapl:N`` (a CPU package) and its sub-zones ``intel-rapl:N:M`` (``dram`` is reported;
core and uncore are inside the package figure and are skipped). ``energy_uj`` wraps at
``max_energy_range_uj``: the sampler reads the counters every period, and each negative step adds
the range, so a window survives any number of wraps as long as one period is shorter than a wrap
(minutes even at full load). Readable only by root on most systems since CVE-2020-8694."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from llem.energy.base import COUNTER, CPU_PACKAGE, DRAM, MeterContext, MeterUnavailable, Reading

POWERCAP = Path("/sys/class/powercap")


@dataclass
class Zone:
    path: Path
    label: str  # package-0, dram-0
    covers: str
    max_range_uj: int
    last_uj: int = 0
    total_uj: int = 0  # accumulated since the meter started (wrap-corrected)
    wraps: int = 0

    def read(self) -> int:
        return int((self.path / "energy_uj").read_text())


def find_zones(root: Path = POWERCAP) -> tuple[list[Zone], str | None]:
    """Readable package and DRAM zones, or ([], why not)."""
    if not root.is_dir():
        return [], f"no powercap interface at {root}"
    zones: list[Zone] = []
    for d in sorted(root.glob("intel-rapl:*")):
        try:
            name = (d / "name").read_text().strip()
        except OSError:
            continue
        parts = d.name.split(":")
        if len(parts) == 2 and name.startswith("package"):
            covers, label = CPU_PACKAGE, f"package-{parts[1]}"
        elif len(parts) == 3 and name == "dram":
            covers, label = DRAM, f"dram-{parts[1]}"
        else:
            continue
        try:
            zone = Zone(d, label, covers, int((d / "max_energy_range_uj").read_text()))
            zone.read()
        except PermissionError:
            return (
                [],
                f"RAPL counters under {root} are not readable (root-only since CVE-2020-8694)",
            )
        except OSError as exc:
            return [], f"RAPL counter {d}/energy_uj unreadable ({exc.strerror})"
        zones.append(zone)
    if not zones:
        return [], f"no RAPL package zones under {root}"
    return zones, None


class RaplMeter:
    """Package (and DRAM) energy of every CPU socket, wrap-corrected."""

    name = "rapl"

    def __init__(self, zones: list[Zone]) -> None:
        self.zones = zones
        self._t0 = 0.0
        self._lock = (
            threading.Lock()
        )  # poll() runs in the sampler thread, start/stop in the main one

    def start(self) -> None:
        with self._lock:
            self._t0 = time.time()
            for z in self.zones:
                z.last_uj, z.total_uj, z.wraps = z.read(), 0, 0

    def poll(self) -> None:
        with self._lock:
            for z in self.zones:
                now = z.read()
                step = now - z.last_uj
                if step < 0:  # wrapped past max_energy_range_uj
                    step += z.max_range_uj
                    z.wraps += 1
                z.total_uj += step
                z.last_uj = now

    def stop(self) -> list[Reading]:
        self.poll()
        t1 = time.time()
        return [
            Reading(
                self.name,
                z.label,
                z.covers,
                COUNTER,
                z.total_uj / 1e6 if z.total_uj > 0 else None,
                self._t0,
                t1,
                None if z.total_uj > 0 else "RAPL counter did not advance",
                device_key=str(z.path),
            )
            for z in self.zones
        ]

    def baseline_keys(self) -> dict[str, str]:
        return {str(z.path): "" for z in self.zones}

    def close(self) -> None:
        pass


def rapl_status(root: Path = POWERCAP) -> str | None:
    """None when RAPL counters are readable, else why not."""
    return find_zones(root)[1]


def open_meter(ctx: MeterContext) -> RaplMeter:
    zones, why = find_zones(ctx.powercap_root)
    if not zones:
        raise MeterUnavailable(why or "no RAPL")
    return RaplMeter(zones)
