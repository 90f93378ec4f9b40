"""The ``energy`` section of an experiment: which meters run, the sampler period, the idle baseline.

``meter`` is checked against :mod:`llem.energy.registry` (its names plus ``auto`` and ``none``), so
a meter registered by a plugin is as valid as a built-in one."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from llem.strict import MAX_GAP_S
from llem.strict import Strict as _Strict

MAX_SAMPLE_MS = 60_000  # a power sample at least once a minute
MAX_BASELINE_AGE_H = 8_760.0  # a year: an older idle baseline describes other hardware state


class BaselineConfig(_Strict):
    """Idle power, measured with the model loaded and no work queued; cached per device."""

    enabled: bool = True
    duration_s: float = Field(
        15.0, gt=0, le=MAX_GAP_S, description="idle measurement length (s); >= 10 s recommended"
    )
    max_age_h: float = Field(
        24.0,
        ge=0,
        le=MAX_BASELINE_AGE_H,
        description="reuse a cached baseline younger than this (h); 0 = never",
    )


class EnergyConfig(_Strict):
    meter: str = Field(
        "auto",
        description="auto = best hardware meters available (Zeus or NVML for GPUs, RAPL for CPUs); "
        "none = no meter; or one registered meter (see `llem config`)",
    )
    sample_interval_ms: int = Field(
        100, ge=10, le=MAX_SAMPLE_MS, description="power/utilisation time-series period (ms)"
    )
    codecarbon: bool = Field(
        True, description="with meter=auto: add CodeCarbon's CO2 estimate when installed"
    )
    country_iso_code: str = Field(
        "USA", description="CodeCarbon grid (ISO 3166 alpha-3: three capital letters)"
    )
    baseline: BaselineConfig = BaselineConfig()
    prefill_split: bool = Field(
        False,
        description="also measure a prefill-only pass (1 new token) to split prefill and decode "
        "energy",
    )

    @field_validator("country_iso_code")
    @classmethod
    def _alpha3(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(
                f"energy.country_iso_code={value!r} is not a country code: use three capital "
                "letters (ISO 3166 alpha-3, e.g. USA, FRA, DEU)"
            )
        return value

    @field_validator("meter")
    @classmethod
    def _known_meter(cls, value: str) -> str:
        from llem.energy.registry import choices

        known = choices()
        if value not in known:
            raise ValueError(
                f"energy.meter={value!r} is not a meter: use one of {', '.join(map(repr, known))}"
            )
        return value
