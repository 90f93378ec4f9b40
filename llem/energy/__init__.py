"""Energy meters. This release has none: energy is reported as null with the reason, never as 0 J.

``energy=auto`` probes what the machine offers (NVML for NVIDIA GPUs, RAPL powercap for CPUs) so the
reason tells the user what is missing.
"""

from __future__ import annotations

from pathlib import Path

from llem.config import EnergyConfig
from llem.environment import nvml_info
from llem.result import EnergyMetrics

POWERCAP = Path("/sys/class/powercap")


def rapl_status() -> str | None:
    """None when a RAPL energy counter is readable, else why not."""
    zones = sorted(POWERCAP.glob("intel-rapl:*/energy_uj")) if POWERCAP.is_dir() else []
    if not zones:
        return f"no RAPL zones under {POWERCAP}"
    try:
        zones[0].read_text()
        return None
    except OSError as exc:
        return f"RAPL counters unreadable ({exc.strerror}; root-only since CVE-2020-8694)"


def unmeasured(cfg: EnergyConfig) -> EnergyMetrics:
    """Energy fields for a run that no meter measured, with the reason."""
    if cfg.meter == "none":
        reason = "disabled (energy=none)"
    else:
        nvml = nvml_info()
        gpu = ("NVML sees a GPU but this llem build has no NVML meter yet" if nvml["status"] == "ok"
               else f"no GPU meter ({nvml['reason']})")
        cpu = rapl_status() or "RAPL is readable but this llem build has no RAPL meter yet"
        reason = f"energy=auto found no usable meter: {gpu}; {cpu}"
    return EnergyMetrics(meter=None, covers=None, method=None, total_j=None, per_output_token_j=None,
                         per_request_j=None, wh_per_1k_requests=None, average_power_w=None,
                         output_tokens_per_j=None, window_s=None, reason=reason)
