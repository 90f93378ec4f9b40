"""The ``load`` config group: how requests reach a server (``load.*`` keys).

- ``batch`` (default): today's offline behaviour, all prompts in batches back to back.
- ``poisson``: open loop; requests arrive at ``rate`` req/s with gamma-distributed gaps
  (``burstiness`` = shape, 1.0 = Poisson), at most ``max_concurrency`` in flight.
- ``concurrency``: closed loop; ``concurrency`` requests always in flight.

A run lasts ``n`` requests (the experiment's ``n``) or, when ``duration_s`` is set, until that many
seconds of sending. The steady-state window starts ``ramp_s`` after the first send (closed loop
without ``ramp_s``: when the in-flight count first reaches ``concurrency``) and ends at the last
send. A run whose failed requests exceed ``max_failed_fraction`` (or with none completed) fails.

Every value is bounded so that none can hang a run or exhaust memory: ``rate`` from
:data:`MIN_RATE` to :data:`MAX_RATE` req/s, ``duration_s`` and ``ramp_s`` up to
:data:`MAX_DURATION_S`, ``concurrency`` and ``max_concurrency`` up to :data:`MAX_IN_FLIGHT` (each
one a connection), and an open-loop schedule of at most :data:`MAX_ARRIVALS` requests
(``rate * duration_s``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from llem.strict import Strict as _Strict

MIN_RATE = 1e-3  # req/s: one request every ~17 minutes
MAX_RATE = 1e5  # req/s: beyond what one client process can send
MAX_DURATION_S = 7 * 86_400.0  # a week
MAX_IN_FLIGHT = 10_000  # requests in flight (each an open connection: raise `ulimit -n` first)
MAX_ARRIVALS = 10_000_000  # an open-loop schedule (drawn, and its requests built, before the run)


class Slo(_Strict):
    """Service-level objectives a request must meet to count towards goodput (null = no limit)."""

    ttft_ms: float | None = Field(None, gt=0, description="time to first token limit (ms)")
    tpot_ms: float | None = Field(None, gt=0, description="time per output token limit (ms)")


class BatchLoad(_Strict):
    """Offline batches (the only load offline backends accept)."""

    name: Literal["batch"] = "batch"


class _ServerLoad(_Strict):
    duration_s: float | None = Field(
        None,
        gt=0,
        le=MAX_DURATION_S,
        description="send for this long (s) instead of n requests; null = n requests",
    )
    ramp_s: float | None = Field(
        None,
        ge=0,
        le=MAX_DURATION_S,
        description="ramp-up excluded from the steady window (s after the first send)",
    )
    max_failed_fraction: float = Field(
        0.01,
        ge=0,
        le=1,
        description="the run fails (no result, exit 1) when more of its requests fail",
    )
    slo: Slo = Slo()


class PoissonLoad(_ServerLoad):
    """Open loop: arrivals drawn from ``seed``, independent of how fast the server answers."""

    name: Literal["poisson"] = "poisson"
    rate: float = Field(1.0, ge=MIN_RATE, le=MAX_RATE, description="offered request rate (req/s)")
    burstiness: float = Field(
        1.0, gt=0, description="gamma shape of the gaps: 1.0 = Poisson, < 1 burstier, > 1 steadier"
    )
    max_concurrency: Annotated[int, Field(ge=1, le=MAX_IN_FLIGHT)] | None = Field(
        None, description="cap on requests in flight (later arrivals wait); null = no cap"
    )

    @model_validator(mode="after")
    def _schedule_fits(self) -> PoissonLoad:
        if self.duration_s is not None and self.rate * self.duration_s > MAX_ARRIVALS:
            raise ValueError(
                f"load.rate * load.duration_s = {self.rate * self.duration_s:.3g} requests, more "
                f"than {MAX_ARRIVALS:,}: lower load.rate or load.duration_s"
            )
        return self


class ConcurrencyLoad(_ServerLoad):
    """Closed loop: a new request is sent as soon as one finishes."""

    name: Literal["concurrency"] = "concurrency"
    concurrency: Annotated[int, Field(ge=1, le=MAX_IN_FLIGHT)] = Field(
        8, description="requests in flight"
    )


LoadConfig = Annotated[BatchLoad | PoissonLoad | ConcurrencyLoad, Field(discriminator="name")]
LOADS = (BatchLoad, PoissonLoad, ConcurrencyLoad)  # the options of group load, in this order
ServerLoad = PoissonLoad | ConcurrencyLoad
