"""The ``load`` config group: how requests reach a server (``load.*`` keys).

- ``batch`` (default): today's offline behaviour, all prompts in batches back to back.
- ``poisson``: open loop; requests arrive at ``rate`` req/s with gamma-distributed gaps
  (``burstiness`` = shape, 1.0 = Poisson), at most ``max_concurrency`` in flight.
- ``concurrency``: closed loop; ``concurrency`` requests always in flight.

A run lasts ``n`` requests (the experiment's ``n``) or, when ``duration_s`` is set, until that many
seconds of sending. The steady-state window starts ``ramp_s`` after the first send (closed loop
without ``ramp_s``: when the in-flight count first reaches ``concurrency``) and ends at the last
send.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from llem.strict import Strict as _Strict


class Slo(_Strict):
    """Service-level objectives a request must meet to count towards goodput (null = no limit)."""

    ttft_ms: float | None = Field(None, gt=0, description="time to first token limit (ms)")
    tpot_ms: float | None = Field(None, gt=0, description="time per output token limit (ms)")


class BatchLoad(_Strict):
    """Offline batches (the only load offline backends accept)."""

    name: Literal["batch"] = "batch"


class _ServerLoad(_Strict):
    duration_s: float | None = Field(
        None, gt=0, description="send for this long (s) instead of n requests; null = n requests"
    )
    ramp_s: float | None = Field(
        None, ge=0, description="ramp-up excluded from the steady window (s after the first send)"
    )
    slo: Slo = Slo()


class PoissonLoad(_ServerLoad):
    """Open loop: arrivals drawn from ``seed``, independent of how fast the server answers."""

    name: Literal["poisson"] = "poisson"
    rate: float = Field(1.0, gt=0, description="offered request rate (req/s)")
    burstiness: float = Field(
        1.0, gt=0, description="gamma shape of the gaps: 1.0 = Poisson, < 1 burstier, > 1 steadier"
    )
    max_concurrency: Annotated[int, Field(ge=1)] | None = Field(
        None, description="cap on requests in flight (later arrivals wait); null = no cap"
    )


class ConcurrencyLoad(_ServerLoad):
    """Closed loop: a new request is sent as soon as one finishes."""

    name: Literal["concurrency"] = "concurrency"
    concurrency: Annotated[int, Field(ge=1)] = Field(8, description="requests in flight")


LoadConfig = Annotated[BatchLoad | PoissonLoad | ConcurrencyLoad, Field(discriminator="name")]
LOADS = (BatchLoad, PoissonLoad, ConcurrencyLoad)  # the options of group load, in this order
ServerLoad = PoissonLoad | ConcurrencyLoad
