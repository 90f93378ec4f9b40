"""The ``load`` config group schema and its seeded arrival schedules (distribution-tested)."""

from __future__ import annotations

import itertools

import pytest
from pydantic import TypeAdapter, ValidationError
from scipy import stats  # type: ignore[import-untyped]

from llem.load.config import BatchLoad, ConcurrencyLoad, LoadConfig, PoissonLoad
from llem.load.schedule import arrival_times, gaps

LOAD = TypeAdapter(LoadConfig)


def test_schema_picks_the_load_by_name_and_rejects_bad_input() -> None:
    assert isinstance(LOAD.validate_python({"name": "batch"}), BatchLoad)
    poisson = LOAD.validate_python({"name": "poisson", "rate": 4.0, "max_concurrency": 8})
    assert isinstance(poisson, PoissonLoad)
    assert (poisson.rate, poisson.burstiness, poisson.max_concurrency) == (4.0, 1.0, 8)
    closed = LOAD.validate_python(
        {"name": "concurrency", "concurrency": 3, "slo": {"ttft_ms": 200.0}}
    )
    assert isinstance(closed, ConcurrencyLoad) and closed.slo.ttft_ms == 200.0
    for bad in (
        {"name": "poisson", "rate": 0.0},  # rate must be > 0
        {"name": "poisson", "rate": "4"},  # strict: no string -> float
        {"name": "poisson", "burstiness": -1.0},
        {"name": "concurrency", "concurrency": 0},
        {"name": "concurrency", "concurency": 4},  # misspelt key
        {"name": "batch", "rate": 1.0},  # batch has no rate
        {"name": "poisson", "slo": {"ttft_ms": 0.0}},
        {"name": "closed"},
    ):
        with pytest.raises(ValidationError):
            LOAD.validate_python(bad)


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    load = PoissonLoad(rate=10.0)
    a, b = arrival_times(load, 7, 50), arrival_times(load, 7, 50)
    assert a == b
    assert arrival_times(load, 8, 50) != a
    assert len(a) == 50 and a[0] == 0.0
    assert all(x < y for x, y in itertools.pairwise(a))


def test_duration_bounds_the_schedule_instead_of_n() -> None:
    load = PoissonLoad(rate=20.0, duration_s=5.0)
    times = arrival_times(load, 1, n=3)  # n is ignored when duration_s is set
    assert max(times) < 5.0
    assert 50 < len(times) < 150  # 100 expected; the Poisson sd is 10
    # the schedule is the prefix of the same gap sequence
    assert times[1:] == list(
        itertools.accumulate(itertools.islice(gaps(20.0, 1.0, 1), len(times) - 1))
    )


def test_poisson_gaps_are_exponential_with_the_rate() -> None:
    rate = 8.0
    load = PoissonLoad(rate=rate)
    times = arrival_times(load, 42, 2001)
    inter = [b - a for a, b in itertools.pairwise(times)]
    assert stats.kstest(inter, "expon", args=(0, 1 / rate)).pvalue > 0.01
    assert sum(inter) / len(inter) == pytest.approx(1 / rate, rel=0.1)
    # the test has power: a rate 30 % off, or bursty gaps of the same mean, are rejected
    assert stats.kstest(inter, "expon", args=(0, 1 / (rate * 1.3))).pvalue < 0.01
    bursty = [
        b - a
        for a, b in itertools.pairwise(
            arrival_times(load.model_copy(update={"burstiness": 0.3}), 42, 2001)
        )
    ]
    assert stats.kstest(bursty, "expon", args=(0, 1 / rate)).pvalue < 0.01


@pytest.mark.parametrize("shape", [0.5, 3.0])
def test_bursty_gaps_are_gamma_with_the_same_mean(shape: float) -> None:
    rate = 5.0
    times = arrival_times(PoissonLoad(rate=rate, burstiness=shape), 3, 2001)
    inter = [b - a for a, b in itertools.pairwise(times)]
    assert stats.kstest(inter, "gamma", args=(shape, 0, 1 / (rate * shape))).pvalue > 0.01
    assert sum(inter) / len(inter) == pytest.approx(1 / rate, rel=0.1)
    # and they are not exponential
    assert stats.kstest(inter, "expon", args=(0, 1 / rate)).pvalue < 0.01


def test_hydra_options_hold_the_schema_defaults() -> None:
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from llem import hydra_options

    hydra_options.store()
    names = {entry.split(".")[0] for entry in ConfigStore.instance().list("load")}
    assert names == {"batch", "poisson", "concurrency"}
    node = ConfigStore.instance().load("load/poisson.yaml").node
    data = OmegaConf.to_container(node)
    assert data == PoissonLoad().model_dump(mode="json")
    assert LOAD.validate_python(data) == PoissonLoad()
    closed = LOAD.validate_python(
        OmegaConf.to_container(ConfigStore.instance().load("load/concurrency.yaml").node)
    )
    assert closed == ConcurrencyLoad()
