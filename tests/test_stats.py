"""Repeat intervals (llem.stats): bounds a positive quantity can have, coverage, too few repeats."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llem.stats import LOG_T, MIN_REPEATS, PLAIN_T, Interval, summarize
from llem.summary import interval_text


def _samples(rng: np.random.Generator) -> list[list[float]]:
    """Random repeat samples of a positive quantity: lognormal, heavy-tailed, tiny n, huge spread,
    values near 0 and near float's limits."""
    out: list[list[float]] = []
    for _ in range(400):
        n = int(rng.integers(1, 12))
        out.append(list(rng.lognormal(rng.normal(0, 5), rng.uniform(0, 4), n)))
        out.append(list(rng.pareto(0.7, n) + 1e-9))  # heavy tail, infinite mean
        out.append(list(rng.uniform(0, 1e-12, n) + 5e-324))  # near 0, down to the smallest float
        out.append(list(10.0 ** rng.uniform(-300, 300, n)))  # huge spread
        out.append(list(np.full(n, rng.uniform(1, 1e4))))  # identical repeats
    return out


def test_no_bound_of_a_positive_quantity_is_impossible():
    rng = np.random.default_rng(20261206)
    bounded = reasons = 0
    for values in _samples(rng):
        iv = summarize(values)
        assert iv is not None and iv.n == len(values) and iv.point > 0
        if iv.ci95_low is None or iv.ci95_high is None:
            assert iv.reason and iv.method is None and iv.ci95_low is iv.ci95_high is None
            reasons += 1
            continue
        bounded += 1
        assert 0 < iv.ci95_low <= iv.point <= iv.ci95_high < math.inf, values
        assert min(values) * (1 - 1e-12) <= iv.point <= max(values) * (1 + 1e-12)
        assert iv.method == LOG_T and iv.estimate == "geometric mean" and iv.reason is None
    assert bounded > 1000 and reasons > 100  # both paths exercised


def test_intervals_cover_the_true_geometric_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    hits = 0
    trials = 2000
    for i in range(trials):
        n = 3 + i % 6  # 3..8 repeats, as studies run them
        values = rng.lognormal(mean=math.log(500.0), sigma=0.4, size=n)  # true geometric mean 500
        iv = summarize(list(values))
        assert iv is not None and iv.ci95_low is not None and iv.ci95_high is not None
        hits += iv.ci95_low <= 500.0 <= iv.ci95_high
    assert 0.93 <= hits / trials <= 0.97  # exact for lognormal data; binomial sd ~0.005


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_than_three_repeats_give_a_reason_not_a_number(n):
    iv = summarize([100.0, 300.0][:n])
    assert iv is not None and iv.ci95_low is None and iv.ci95_high is None and iv.method is None
    assert iv.reason == f"too few repeats for an interval ({n} < {MIN_REPEATS})"
    assert iv.point == pytest.approx([100.0, math.sqrt(3e4)][n - 1])
    assert iv.estimate == "geometric mean"


def test_a_positive_quantity_with_a_zero_gets_no_log_interval():
    iv = summarize([0.0, 2.0, 4.0])  # e.g. a meter that did not tick in one window
    assert iv is not None and iv.ci95_low is None and iv.reason == "a repeat's value is 0 (<= 0)"
    assert (iv.point, iv.estimate) == (2.0, "arithmetic mean")
    assert summarize([1.0, math.nan, 2.0]).reason == "a repeat's value is nan"


def test_a_quantity_that_can_be_negative_gets_the_plain_t_interval():
    iv = summarize([-1.0, 1.0, 3.0], positive=False)  # mean 1, s 2, t(2) 4.303
    assert iv is not None and iv.method == PLAIN_T and iv.estimate == "arithmetic mean"
    half = 4.3027 * 2 / math.sqrt(3)
    assert iv.ci95_low == pytest.approx(1 - half, abs=1e-3) and iv.ci95_low < 0
    assert iv.ci95_high == pytest.approx(1 + half, abs=1e-3) and iv.point == 1.0
    few = summarize([-1.0, 1.0], positive=False)
    assert few.reason == "too few repeats for an interval (2 < 3)"


def test_a_spread_beyond_floating_point_is_a_reason():
    iv = summarize([1e-300, 1.0, 1e300])
    assert iv is not None and iv.ci95_low is None
    assert iv.reason == "spread too large for a floating-point interval"


def test_the_terminal_table_names_the_estimate_and_the_reason():
    assert interval_text(summarize([10.0, 12.0, 14.0])) == (
        "11.89 geometric mean (95% CI 7.823 .. 18.06, t on log scale)"
    )
    assert interval_text(summarize([10.0, 12.0])) == (
        "10.95 geometric mean; too few repeats for an interval (2 < 3)"
    )


def test_a_record_written_before_point_existed_still_loads() -> None:
    """An earlier llem's result.json (mean and t bounds only) is read as what it was."""
    old = Interval.model_validate(
        {"n": 3, "mean": 2.0, "std": 1.0, "ci95_low": 0.5, "ci95_high": 3.5}
    )
    assert (old.point, old.estimate, old.method) == (2.0, "arithmetic mean", PLAIN_T)
    single = Interval.model_validate(
        {"n": 1, "mean": 2.0, "std": None, "ci95_low": None, "ci95_high": None}
    )
    assert single.method is None and single.reason == "no interval recorded"
