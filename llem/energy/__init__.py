"""Energy measurement for one job: meters (see :mod:`llem.energy.registry`), the time-series
sampler, the idle baseline, quality warnings. :class:`EnergySession` is what the harness drives;
:func:`check_meter` is the pre-flight check of an explicit meter."""

from __future__ import annotations

from llem.energy.registry import check_meter
from llem.energy.session import EnergySession, Window

__all__ = ["EnergySession", "Window", "check_meter"]
