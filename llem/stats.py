"""Statistics over repeats: mean, sample standard deviation and a 95% interval that respects the
quantity's sign.

Every quantity llem summarises over repeats (window length, throughput, energy, latency) is positive
and varies multiplicatively (a busy neighbour halves throughput, it does not subtract 500 tok/s), so
its interval is Student's t on the logs of the values, back-transformed: an interval for the
geometric mean, asymmetric, and never reaching 0 or below. A quantity that can be zero or negative
(``positive=False``) gets the plain t interval around the arithmetic mean. Fewer than
:data:`MIN_REPEATS` values, or a positive quantity with a value <= 0, give a reason instead of
bounds. The t quantile comes from SciPy (``scipy.special.stdtrit``, the inverse of Student's t CDF).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from scipy.special import stdtrit

MIN_REPEATS = 3  # fewest values an interval is given for
LEVEL = 0.95
LOG_T = "Student t on the log values, back-transformed: interval of the geometric mean, 95%"
PLAIN_T = "Student t: interval of the arithmetic mean, 95%"
_LOG_MAX = math.log(sys.float_info.max)  # exp() overflows above it
Estimate = Literal["geometric mean", "arithmetic mean"]


def t_quantile(df: int, level: float = LEVEL) -> float:
    """Two-sided critical value of Student's t with ``df`` degrees of freedom (2.776 at df 4)."""
    if df < 1:
        raise ValueError("need at least 2 values")
    return float(stdtrit(df, 0.5 + level / 2))


class Interval(BaseModel):
    """One quantity across repeats; ``ci95_low``..``ci95_high`` is an interval for ``point``."""

    n: int = Field(description="repeats summarised")
    mean: float = Field(description="arithmetic mean of the per-repeat values")
    std: float | None = Field(description="sample standard deviation (n - 1); null for one value")
    point: float = Field(
        description="the estimate the interval belongs to, named by `estimate` (the geometric mean "
        "for a positive quantity whose values are all > 0)"
    )
    estimate: Estimate = Field(description="what `point` is")
    method: str | None = Field(description="how the interval was computed; null without one")
    ci95_low: float | None
    ci95_high: float | None
    reason: str | None = Field(
        description="why there is no interval (too few repeats, a value <= 0 of a positive "
        "quantity, a spread beyond floating point); null with one"
    )

    @model_validator(mode="before")
    @classmethod
    def _earlier_record(cls, data: object) -> object:
        """A record written before ``point`` existed: a t interval around the arithmetic mean."""
        if isinstance(data, dict) and "point" not in data and "mean" in data:
            low = data.get("ci95_low")
            return {
                "point": data["mean"],
                "estimate": "arithmetic mean",
                "method": None if low is None else PLAIN_T,
                "reason": None if low is not None else "no interval recorded",
                **data,
            }
        return data


def _std(values: Sequence[float], mean: float) -> float:
    """Sample standard deviation, scaled by the largest deviation so squares cannot overflow."""
    scale = max(abs(v - mean) for v in values)
    if scale == 0 or not math.isfinite(scale):
        return scale
    squares = math.fsum(((v - mean) / scale) ** 2 for v in values)
    return scale * math.sqrt(squares / (len(values) - 1))


def _no_interval(vals: list[float], reason: str, geometric: float | None = None) -> Interval:
    n, mean = len(vals), math.fsum(vals) / len(vals)
    return Interval(
        n=n,
        mean=mean,
        std=_std(vals, mean) if n > 1 else None,
        point=mean if geometric is None else geometric,
        estimate="arithmetic mean" if geometric is None else "geometric mean",
        method=None,
        ci95_low=None,
        ci95_high=None,
        reason=reason,
    )


def _plain(vals: list[float]) -> Interval:
    n, mean = len(vals), math.fsum(vals) / len(vals)
    std = _std(vals, mean)
    half = t_quantile(n - 1) * std / math.sqrt(n)
    return Interval(
        n=n,
        mean=mean,
        std=std,
        point=mean,
        estimate="arithmetic mean",
        method=PLAIN_T,
        ci95_low=mean - half,
        ci95_high=mean + half,
        reason=None,
    )


def _log_mean(vals: list[float]) -> float:
    """Mean of the natural logs (every value > 0)."""
    return math.fsum(math.log(v) for v in vals) / len(vals)


def _log_scale(vals: list[float]) -> Interval:
    n, mean = len(vals), math.fsum(vals) / len(vals)
    centre = _log_mean(vals)
    half = t_quantile(n - 1) * _std([math.log(v) for v in vals], centre) / math.sqrt(n)
    geometric = math.exp(centre)
    low = math.exp(centre - half)  # 0.0 on underflow
    if low <= 0 or centre + half > _LOG_MAX:
        return _no_interval(vals, "spread too large for a floating-point interval", geometric)
    return Interval(
        n=n,
        mean=mean,
        std=_std(vals, mean),
        point=geometric,
        estimate="geometric mean",
        method=LOG_T,
        ci95_low=low,
        ci95_high=math.exp(centre + half),
        reason=None,
    )


def summarize(values: Sequence[float], positive: bool = True) -> Interval | None:
    """None for no values; a reason instead of bounds for fewer than :data:`MIN_REPEATS` values.

    ``positive``: the quantity cannot be <= 0 (throughput, energy, latency, power, durations); its
    interval is on the log scale, and a value <= 0 (a meter that did not tick) gives no interval.
    """
    vals = [float(v) for v in values]
    if not vals:
        return None
    bad = next((v for v in vals if not math.isfinite(v)), None)
    if bad is not None:
        return _no_interval(vals, f"a repeat's value is {bad}")
    few = f"too few repeats for an interval ({len(vals)} < {MIN_REPEATS})"
    if not positive:
        return _plain(vals) if len(vals) >= MIN_REPEATS else _no_interval(vals, few)
    if min(vals) <= 0:
        return _no_interval(
            vals, few if len(vals) < MIN_REPEATS else f"a repeat's value is {min(vals):g} (<= 0)"
        )
    if len(vals) < MIN_REPEATS:
        return _no_interval(vals, few, math.exp(_log_mean(vals)))
    return _log_scale(vals)
