"""Statistics over repeats: mean, sample standard deviation, 95% interval (Student's t)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel

# two-sided 95% critical values of Student's t by degrees of freedom
_T95 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    21: 2.080,
    22: 2.074,
    23: 2.069,
    24: 2.064,
    25: 2.060,
    26: 2.056,
    27: 2.052,
    28: 2.048,
    29: 2.045,
    30: 2.042,
    40: 2.021,
    60: 2.000,
    120: 1.980,
}


def t_critical_95(df: int) -> float:
    """Two-sided 95% t value; between rows interpolated linearly in 1/df (exact to 3 decimals)."""
    if df < 1:
        raise ValueError("need at least 2 values")
    if df in _T95:
        return _T95[df]
    rows = sorted(_T95)
    lo = max(r for r in rows if r < df)
    hi = next((r for r in rows if r > df), None)  # None: past the table, towards df = infinity
    t_hi, x_hi = (1.960, 0.0) if hi is None else (_T95[hi], 1 / hi)
    x, x_lo = 1 / df, 1 / lo
    return t_hi + (_T95[lo] - t_hi) * (x - x_hi) / (x_lo - x_hi)


class Interval(BaseModel):
    n: int
    mean: float
    std: float | None  # sample standard deviation (n - 1)
    ci95_low: float | None
    ci95_high: float | None


def summarize(values: Sequence[float]) -> Interval | None:
    """None for no values; std and interval None for a single value."""
    vals = [float(v) for v in values]
    if not vals:
        return None
    n, mean = len(vals), sum(vals) / len(vals)
    if n < 2:
        return Interval(n=n, mean=mean, std=None, ci95_low=None, ci95_high=None)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = t_critical_95(n - 1) * std / math.sqrt(n)
    return Interval(n=n, mean=mean, std=std, ci95_low=mean - half, ci95_high=mean + half)
