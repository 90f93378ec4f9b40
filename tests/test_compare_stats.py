"""The statistics and words of ``llem compare`` (:mod:`llem.compare.difference`, ``verdict``)."""

from __future__ import annotations

import math
import random
import re

import pytest

from llem.compare.difference import bootstrap_median_ratio, log_welch
from llem.compare.verdict import METRICS, span, words

BY_NAME = {c.metric.name: c for c in METRICS}


def _lognormal(rng: random.Random, n: int, scale: float, sigma: float = 0.1) -> list[float]:
    return [scale * math.exp(rng.gauss(0, sigma)) for _ in range(n)]


def test_the_welch_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    rng = random.Random(1)
    covered = 0
    trials = 400
    for _ in range(trials):
        iv = log_welch(_lognormal(rng, 5, 100.0), _lognormal(rng, 4, 80.0, sigma=0.2))
        assert iv.low is not None and iv.high is not None and 0 < iv.low < iv.high
        covered += iv.low <= 0.8 <= iv.high
    assert 0.91 <= covered / trials <= 0.99


def test_a_clear_difference_is_significant_and_in_the_right_direction():
    rng = random.Random(2)
    iv = log_welch(_lognormal(rng, 10, 1.0, 0.05), _lognormal(rng, 10, 0.77, 0.05))
    assert iv.significant and iv.high is not None and iv.high < 1
    outcome, text = words(BY_NAME["energy_per_output_token_j"], "B", iv)
    assert outcome == "better"
    assert re.fullmatch(
        r"B uses 2\d% less energy per output token \(95% CI \d+–\d+%\): better", text
    )
    outcome, text = words(BY_NAME["output_tokens_per_s"], "B", iv)
    assert outcome == "worse" and text.startswith("B has 2") and "% less output throughput" in text
    outcome, text = words(BY_NAME["ttft_p50_ms"], "B", iv)
    assert outcome == "better" and text.startswith("B's TTFT p50 is 2") and "% lower" in text


def test_identical_samples_are_no_significant_difference():
    values = [10.0, 12.0, 11.0]
    iv = log_welch(values, list(values))
    assert iv.ratio == pytest.approx(1.0) and not iv.significant
    assert span(iv).startswith("-") and " to +" in span(iv)
    same = log_welch([5.0, 5.0], [5.0, 5.0])  # no spread at all: a point, and no difference
    assert same.low == same.high == pytest.approx(1.0) and not same.significant


def test_too_few_or_impossible_values_give_a_reason_not_a_number():
    assert log_welch([1.0], [1.0, 2.0]).reason == "fewer than 2 repeats on a side"
    assert log_welch([1.0, 0.0], [1.0, 2.0]).reason is not None
    assert (
        bootstrap_median_ratio([1.0] * 5, [2.0] * 20).reason == "fewer than 10 requests on a side"
    )


def test_the_bootstrap_is_seeded_and_covers_the_median_ratio():
    rng = random.Random(3)
    a, b = _lognormal(rng, 40, 50.0, 0.3), _lognormal(rng, 40, 100.0, 0.3)
    first, again = bootstrap_median_ratio(a, b), bootstrap_median_ratio(a, b)
    assert first == again and first.low is not None and first.high is not None
    assert first.low < 2.0 < first.high and first.significant
