"""Samples an inference server's Prometheus metrics (``GET /metrics``) into time-series rows, so a
user sees
saturation (requests running and waiting, KV-cache use) beside power in ``timeseries.parquet``.

The text exposition format is parsed by ``prometheus_client``'s parser. Polling runs in a thread of
its own with a blocking ``urllib`` request, so parsing never delays a send on the load's event loop.
A server with several engines reports one series per engine: counts are summed, KV-cache use
averaged.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypedDict

from prometheus_client.parser import text_string_to_metric_families

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE = "vllm:kv_cache_usage_perc"  # a fraction: 1 = full


class ServerRow(TypedDict):
    """One sample of the server's state (null where the server has no such metric)."""

    time_unix_s: float
    device: str  # "server"
    server_requests_running: float | None
    server_requests_waiting: float | None
    server_kv_cache_usage_pct: float | None  # 0-100


def parse_metrics(text: str) -> ServerRow:
    """The row for one ``/metrics`` answer (``time_unix_s`` left 0 for the caller)."""
    values: dict[str, list[float]] = {RUNNING: [], WAITING: [], KV_CACHE: []}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in values:
                values[sample.name].append(float(sample.value))
    kv = values[KV_CACHE]
    return ServerRow(
        time_unix_s=0.0,
        device="server",
        server_requests_running=sum(values[RUNNING]) if values[RUNNING] else None,
        server_requests_waiting=sum(values[WAITING]) if values[WAITING] else None,
        server_kv_cache_usage_pct=100.0 * sum(kv) / len(kv) if kv else None,
    )


MAX_METRICS_BYTES = 16 * 2**20  # one /metrics answer (vLLM's: ~100 KB)


class MetricsSampler:
    """Polls ``url`` every ``interval_s`` in a daemon thread; ``rows`` is the series, ``errors``
    counts polls that failed (their time is skipped, never filled with zeros)."""

    def __init__(
        self,
        url: str,
        interval_s: float,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url, self.interval_s, self.timeout_s, self.clock = url, interval_s, timeout_s, clock
        self.rows: list[ServerRow] = []
        self.errors = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample_once(self) -> None:
        """One poll; a failed one (no answer, over :data:`MAX_METRICS_BYTES`, not the Prometheus
        text format) is counted in ``errors``."""
        t = self.clock()
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as resp:
                body = resp.read(MAX_METRICS_BYTES + 1)
            if len(body) > MAX_METRICS_BYTES:
                raise ValueError(f"/metrics answered more than {MAX_METRICS_BYTES} bytes")
            row = parse_metrics(body.decode())
        except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: not the format
            self.errors += 1
            self.last_error = str(exc)[:300]
            return
        row["time_unix_s"] = t
        self.rows.append(row)

    def _loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            self.sample_once()
            next_t += self.interval_s
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="llem-server-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
