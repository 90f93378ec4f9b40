"""Drives a server with the configured load: open loop (a seeded arrival schedule) or closed loop
(a fixed number of requests in flight).

The driver only schedules: each request is a task of its own, so a slow stream never delays the next
send; the schedule is drawn and every request body serialised before the run starts. Each record
keeps its scheduled and actual send time (the lag shows whether the generator kept up). As the
steady window's boundaries are reached (rules in :mod:`llem.serving.window`) the driver sets
:class:`Marks`, so another thread can read the energy meters at those instants. Times are
``time.perf_counter()`` seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llem.load.config import ConcurrencyLoad, PoissonLoad
from llem.load.schedule import arrival_times
from llem.serving.stream import StreamClient, StreamRecord, StreamRequest

# The i-th request of the run (i from 0). Open loop builds them all before the first send: return
# the same object for a prompt sent again (cycling through the dataset), so a long run holds one
# per prompt.
RequestFor = Callable[[int], StreamRequest]


@dataclass
class Marks:
    """The steady window's boundaries as the run reaches them (events other threads can wait on)."""

    steady: threading.Event = field(default_factory=threading.Event)
    drain: threading.Event = field(default_factory=threading.Event)
    steady_s: float | None = None  # ramp-up over
    drain_s: float | None = None  # sending stopped
    completed: int = 0  # requests answered in full so far
    failed: int = 0  # requests that failed so far

    def finish(self, record: StreamRecord) -> None:
        if record.ok:
            self.completed += 1
        else:
            self.failed += 1

    def progress(self) -> str:
        """What was served so far, in words."""
        return f"{self.completed} requests completed, {self.failed} failed"

    def reach_steady(self) -> None:
        if not self.steady.is_set():
            self.steady_s = time.perf_counter()
            self.steady.set()

    def reach_drain(self) -> None:
        if not self.drain.is_set():
            self.drain_s = time.perf_counter()
            self.drain.set()
            self.steady.set()  # a run that never got steady leaves no waiter hanging


@dataclass
class LoadRun:
    """One driven run: its start (the first scheduled send), one record per request (by send
    time)."""

    start_s: float
    records: list[StreamRecord]
    marks: Marks


class _InFlight:
    """Counts requests sent and not finished; marks steady when the count first reaches ``target``
    and the drain when the ``last`` request is sent (both right after its send time is stamped)."""

    def __init__(self, client: StreamClient, target: int | None, marks: Marks) -> None:
        self.client, self.target, self.marks = client, target, marks
        self.count = 0

    async def run(self, req: StreamRequest, scheduled_s: float, last: bool) -> StreamRecord:
        def sent() -> None:
            self.count += 1
            if self.target is not None and self.count >= self.target:
                self.marks.reach_steady()
            if last:
                self.marks.reach_drain()

        try:
            record = await self.client.send(req, scheduled_s, sent)
        finally:
            self.count -= 1
        self.marks.finish(record)
        return record


async def open_loop(
    client: StreamClient,
    load: PoissonLoad,
    seed: int,
    n: int,
    request_for: RequestFor,
    marks: Marks | None = None,
    lead_s: float = 0.05,
) -> LoadRun:
    """Send on the schedule drawn from ``seed`` (``n`` requests, or every arrival in
    ``load.duration_s``), at most ``load.max_concurrency`` in flight (later arrivals wait for a
    slot; the wait counts as send lag). The first send is ``lead_s`` after the requests are
    built."""
    marks = marks or Marks()
    offsets = arrival_times(load, seed, n)
    requests = [request_for(i) for i in range(len(offsets))]
    slots = asyncio.Semaphore(load.max_concurrency) if load.max_concurrency else None
    inflight = _InFlight(client, None, marks)
    loop = asyncio.get_running_loop()
    start = time.perf_counter() + lead_s
    loop.call_later(lead_s + (load.ramp_s or 0.0), marks.reach_steady)

    async def one(req: StreamRequest, scheduled: float, last: bool) -> StreamRecord:
        if slots is None:
            return await inflight.run(req, scheduled, last)
        async with slots:
            return await inflight.run(req, scheduled, last)

    tasks: list[asyncio.Task[StreamRecord]] = []
    for i, (req, offset) in enumerate(zip(requests, offsets, strict=True)):
        scheduled = start + offset
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        last = load.duration_s is None and i == len(offsets) - 1
        tasks.append(asyncio.create_task(one(req, scheduled, last)))
    if load.duration_s is not None:  # sending stops at the end of the duration
        await asyncio.sleep(max(0.0, start + load.duration_s - time.perf_counter()))
        marks.reach_drain()
    return LoadRun(start, list(await asyncio.gather(*tasks)), marks)


async def closed_loop(
    client: StreamClient,
    load: ConcurrencyLoad,
    n: int,
    request_for: RequestFor,
    marks: Marks | None = None,
) -> LoadRun:
    """Keep ``load.concurrency`` requests in flight, each finished one replaced at once, until ``n``
    are sent (or for ``load.duration_s``). Without ``load.ramp_s`` the run is steady when the
    in-flight count first reaches ``load.concurrency``."""
    marks = marks or Marks()
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    if load.ramp_s is not None:
        loop.call_later(load.ramp_s, marks.reach_steady)
    if load.duration_s is not None:
        loop.call_later(load.duration_s, marks.reach_drain)
    inflight = _InFlight(client, load.concurrency if load.ramp_s is None else None, marks)
    records: list[StreamRecord] = []
    issued = 0

    def more() -> bool:
        return not marks.drain.is_set() if load.duration_s is not None else issued < n

    async def worker() -> None:
        nonlocal issued
        while more():
            req = request_for(issued)
            issued += 1
            last = load.duration_s is None and issued == n
            records.append(await inflight.run(req, time.perf_counter(), last))

    await asyncio.gather(*(worker() for _ in range(load.concurrency)))
    records.sort(key=lambda r: r.sent_s)
    return LoadRun(start, records, marks)
