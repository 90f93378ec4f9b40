"""Seeded arrival schedules for open-loop load: the same seed offers the same schedule."""

from __future__ import annotations

import random
from collections.abc import Iterator

from llem.load.config import PoissonLoad


def gaps(rate: float, burstiness: float, seed: int) -> Iterator[float]:
    """Inter-arrival gaps (s): gamma with shape ``burstiness`` and mean ``1 / rate`` (shape 1 =
    exponential, i.e. Poisson arrivals). Endless; the same seed gives the same gaps."""
    rng = random.Random(seed)
    scale = 1.0 / (rate * burstiness)
    while True:
        yield rng.gammavariate(burstiness, scale)


def arrival_times(load: PoissonLoad, seed: int, n: int) -> list[float]:
    """Scheduled send offsets (s after the run starts; the first request at 0): ``n`` requests, or
    with ``load.duration_s`` every arrival before that offset."""
    times, t = [0.0], 0.0
    for gap in gaps(load.rate, load.burstiness, seed):
        t += gap
        if (load.duration_s is None and len(times) >= n) or (
            load.duration_s is not None and t >= load.duration_s
        ):
            return times
        times.append(t)
    raise AssertionError("unreachable: gaps() is endless")
