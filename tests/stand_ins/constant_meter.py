"""A stand-in meter registered from outside llem, as a plugin would be (``LLEM_PLUGINS``).

It "measures" a constant power of :data:`WATTS` over each window, so a window's energy is exactly
``WATTS x duration`` J. With ``LLEM_STANDIN_METER_OFF`` set, its status probe says it is unusable.
"""

from __future__ import annotations

import os
import time

from llem.energy.base import MeterContext, Reading
from llem.energy.registry import MeterSpec, register_meter

NAME = "constant"
WATTS = 42.0
COVERS = "stand-in constant power"
METHOD = "constant power x window time"
DEVICE_KEY = "stand-in-device-0"


class ConstantMeter:
    name = NAME

    def __init__(self) -> None:
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.time()

    def stop(self) -> list[Reading]:
        t1 = time.time()
        joules = WATTS * (t1 - self._t0)
        return [
            Reading(NAME, "stand-in device", COVERS, METHOD, joules, self._t0, t1, None, DEVICE_KEY)
        ]

    def poll(self) -> None:
        pass

    def baseline_keys(self) -> dict[str, str]:
        return {DEVICE_KEY: f"watts={WATTS}"}

    def close(self) -> None:
        pass


def _status() -> str | None:
    return (
        "switched off by LLEM_STANDIN_METER_OFF"
        if os.environ.get("LLEM_STANDIN_METER_OFF")
        else None
    )


def _open(ctx: MeterContext) -> ConstantMeter:
    return ConstantMeter()


register_meter(
    MeterSpec(
        name=NAME,
        label="Constant",
        devices="cpu",
        covers=(COVERS,),
        summary=f"a fake constant {WATTS:.0f} W (tests only)",
        status=_status,
        factory=_open,
        fix="Unset LLEM_STANDIN_METER_OFF",
        in_auto=lambda cfg: False,
    )
)
