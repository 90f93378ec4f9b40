"""``result.json``: the versioned record of one measured run (pydantic model, JSON Schema via ``llem
schema``).

Field names carry their unit (``_s`` seconds, ``_ms`` milliseconds, ``_j`` joules, ``_w`` watts,
``_bytes``). A value that was not measured is ``null`` with a reason beside it, never 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llem.hostcpu import CpuContention, HostCpu
from llem.paths import write_json_atomic
from llem.records import RESULT_FILE
from llem.stats import Interval

SCHEMA_VERSION = "1.0"
ENERGY_NOT_MEASURED = "energy not measured: "  # the warning's prefix when energy.total_j is null


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Distribution(_Model):
    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float


class TokenCounts(_Model):
    """Exact counts over every measured window (n x repeats requests): padding is never counted;
    output includes the EOS token when generation stopped on it."""

    requests: int
    input: int
    output: int
    total: int


class ThroughputMetrics(_Model):
    output_tokens_per_s: float = Field(description="generated tokens / measured window")
    total_tokens_per_s: float = Field(description="(input + generated tokens) / measured window")
    requests_per_s: float


class LatencyMetrics(_Model):
    """From per-step timestamps taken as each token reached the host."""

    ttft_ms: Distribution | None = Field(
        description="time to first token: request submission -> first token"
    )
    itl_ms: Distribution | None = Field(
        description="inter-token latency: gaps between consecutive tokens"
    )
    e2e_ms: Distribution | None = Field(description="end-to-end: request submission -> last token")


class RequestMetrics(_Model):
    index: int = Field(description="position of the prompt in the dataset")
    repeat: int
    input_tokens: int
    output_tokens: int
    ttft_ms: float | None
    e2e_ms: float
    itl_mean_ms: float | None


class TimingMetrics(_Model):
    model_load_s: float = Field(description="from_pretrained + move to device")
    warmup_s: float = Field(description="warm-up batches (excluded from every other metric)")
    measured_window_s: float = Field(
        description="first batch start -> last batch end, synchronised (summed over repeats)"
    )
    flops_pass_s: float | None = Field(
        description="duration of the FLOP-counting pass, after the measured window (null: disabled)"
    )
    startup_s: float | None = Field(
        default=None,
        description="process start (exec or fork) -> model load start: imports, Hydra, "
        "validation, prompts, tokenisation (null: the OS does not say when the process started)",
    )
    write_s: float | None = Field(
        default=None,
        description="closing the backend and meters, writing timeseries.parquet and its plot",
    )
    job_s: float | None = Field(
        default=None,
        description="the job's wall time, process start -> result assembled (start-up included; "
        "without start-up when it is null)",
    )


class MemoryMetrics(_Model):
    peak_bytes: int | None
    measured: str = Field(
        description="what peak_bytes is: CUDA allocator peak, or process peak RSS"
    )


class FlopsMetrics(_Model):
    """FLOPs (multiply-add = 2 FLOPs) of the counted batches, re-run outside the measured window."""

    counted: int | None = Field(description="torch FLOP counter over the counted batches")
    analytic: int | None = Field(
        description="closed-form count for the same shapes "
        "(padded batches for pytorch; per request for engines)"
    )
    counted_requests: int
    counted_output_tokens: int
    counted_per_output_token: float | None
    analytic_per_output_token: float | None
    analytic_window_total: int | None = Field(
        description="closed-form count for every measured batch"
    )
    window_per_output_token: float | None = Field(
        None,
        description="HEADLINE: analytic_window_total / output tokens of one measured window "
        "(every measured batch, closed form)",
    )
    window_batches: int | None = Field(None, description="measured batches in one window")
    counted_batches: int | None = Field(
        None, description="batches re-run under the FLOP counter (the check of the closed form)"
    )
    method: str
    reason: str | None = None


class EnergyReading(_Model):
    window: str = Field(description="repeat-<i> (measured windows) or prefill")
    meter: str = Field(description="nvml | zeus | rapl | codecarbon")
    device: str
    covers: str = Field(description="GPU board | CPU package | DRAM | modelled estimate")
    method: str = Field(description="counter delta | integrated instant power | estimate")
    energy_j: float | None
    start_unix_s: float
    end_unix_s: float
    duration_s: float
    reason: str | None = Field(description="why energy_j is null")


class IdleBaseline(_Model):
    device: str
    covers: str
    meter: str
    idle_power_w: float
    duration_s: float = Field(description="length of the idle measurement")
    measured_at: str = Field(description="ISO 8601, UTC")
    age_s: float = Field(description="age when this run used it")
    source: str = Field(description="measured (this run) | cache")


class CarbonEstimate(_Model):
    """CodeCarbon's figures for the measured windows: MODELLED, not measured. CodeCarbon never
    reads a GPU in llem (NVML has one owner: Zeus or llem's NVML meter), so its figures cover the
    CPU and RAM only and ``gpu_estimate_j`` is always null; see ``coverage``."""

    emissions_kg_co2eq: float | None = Field(description="of the CPU + RAM estimate (kg CO2-eq)")
    country_iso_code: str
    coverage: str = Field(
        description="what the estimate covers, e.g. 'CPU + RAM only; GPU measured by NVML'"
    )
    energy_estimate_j: float | None = Field(description="CodeCarbon's modelled CPU + RAM energy")
    cpu_estimate_j: float | None
    gpu_estimate_j: float | None = Field(
        description="always null: CodeCarbon's GPU part is off (why: null_reasons)"
    )
    ram_estimate_j: float | None
    null_reasons: dict[str, str] = Field(
        default_factory=dict, description="why each null figure above is null, by field name"
    )
    method: str


class PrefillSplit(_Model):
    """A separate prefill-only pass (1 new token per prompt, same batches) measured with the same
    meters."""

    prefill_j: float | None
    prefill_window_s: float
    decode_j: float | None = Field(
        description="measured window energy minus the prefill pass (derived)"
    )
    method: str


class EnergyMetrics(_Model):
    """Energy of the measured window(s) from hardware meters; null with ``reason`` when none
    measured it.

    ``total_j`` sums every hardware reading (see ``covers``); CodeCarbon's modelled figure is kept
    apart in ``estimate_j`` and ``co2``. With repeats, totals cover all measured windows together.
    """

    meters: list[str] = Field(description="active meters")
    covers: str | None = Field(
        description="what total_j includes, e.g. 'GPU board' or 'GPU board + CPU package'"
    )
    method: str | None
    total_j: float | None
    gpu_j: float | None
    cpu_package_j: float | None
    dram_j: float | None
    per_output_token_j: float | None
    per_request_j: float | None
    wh_per_1k_requests: float | None = Field(description="AI Energy Score unit")
    average_power_w: float | None
    output_tokens_per_j: float | None
    window_s: float | None
    baseline: list[IdleBaseline] = Field(
        description="idle power per device (model loaded, nothing running)"
    )
    baseline_reason: str | None = None
    adjusted_total_j: float | None = Field(
        description="SECONDARY: total_j minus idle power x window"
    )
    adjusted_per_output_token_j: float | None
    estimate_j: float | None = Field(
        description="CodeCarbon's MODELLED energy, never a measurement"
    )
    co2: CarbonEstimate | None
    prefill: PrefillSplit | None
    readings: list[EnergyReading]
    timeseries: str | None = Field(
        description="time-series file beside result.json (see llem.energy.sampler)"
    )
    reason: str | None = Field(description="why total_j is null")


class RepeatMetrics(_Model):
    repeat: int
    window_s: float
    output_tokens: int
    output_tokens_per_s: float
    total_tokens_per_s: float
    energy_j: float | None
    energy_per_output_token_j: float | None
    ttft_p50_ms: float | None
    ttft_p90_ms: float | None
    ttft_p99_ms: float | None
    itl_p50_ms: float | None
    itl_p90_ms: float | None
    itl_p99_ms: float | None
    e2e_p50_ms: float | None
    e2e_p90_ms: float | None
    e2e_p99_ms: float | None


class RepeatSummary(_Model):
    """Per-repeat values and, across repeats, mean, std and a 95% interval (Student's t on the log
    scale: an interval of the geometric mean; a reason instead with fewer than 3 repeats)."""

    per_repeat: list[RepeatMetrics]
    stats: dict[str, Interval | None]


class ModelRecord(_Model):
    name_or_path: str
    resolved_path: str
    source: str = Field(description="builtin | local | hub")
    architecture: str
    parameters: int
    dtype: str = Field(
        description="dtype the weights ran in (see warnings for precision fallbacks)"
    )
    device: str
    context_length: int | None
    random_weights: bool = Field(
        description="true for llem's built-in model: outputs are meaningless"
    )
    chat_template_applied: bool
    config: dict[str, object] = Field(description="the model's config.json as loaded")


class DatasetRecord(_Model):
    source: str
    measured_indices: list[int]
    warmup_indices: list[int]
    truncated_prompts: int = Field(description="prompts cut to max_input_tokens")


class ProtocolDeparture(_Model):
    """One way a preset run departs from its benchmark protocol."""

    key: str = Field(description="dotted config key, or model / backend.device / precision as run")
    protocol: str = Field(description="the protocol's value")
    actual: str = Field(description="this run's value")


class BenchmarkReport(_Model):
    """A benchmark preset's figures in its own units, from llem's hardware GPU meters only (NVML or
    Zeus readings of the GPU boards; never CodeCarbon's estimate, never CPU/DRAM meters)."""

    protocol: str = Field(description="preset name (llem +experiment=<protocol>)")
    version: str = Field(description="version of llem's statement of the protocol")
    title: str
    label: str = Field(description="'<protocol>' or '<protocol> (modified: <keys>)'")
    modified: list[ProtocolDeparture]
    queries: int = Field(description="measured requests (n x repeats)")
    gpu_wh_per_1k_queries: float | None = Field(
        description="GPU energy of the measured windows, Wh per 1,000 queries"
    )
    prefill_wh_per_1k_queries: float | None = Field(
        description="GPU energy of the prefill-only pass, Wh per 1,000 queries"
    )
    decode_wh_per_1k_queries: float | None = Field(
        description="gpu minus prefill, Wh per 1,000 queries (derived)"
    )
    meters: list[str] = Field(description="GPU meters the figures come from")
    reason: str | None = Field(description="why a figure is null")


SpanLabel = Literal["ramp", "steady", "drain", "whole_run"]


class ServingLatency(LatencyMetrics):
    """Latency of the requests sent in a span; ITL is every gap (tokens of one chunk share a
    time)."""

    tpot_ms: Distribution | None = Field(
        description="time per output token after the first: (last - first token) / (tokens - 1)"
    )
    send_lag_ms: Distribution | None = Field(description="actual - scheduled send time")


class SpanFigures(_Model):
    """What a served run achieved over one span (rules in :mod:`llem.serving.window`)."""

    label: SpanLabel
    duration_s: float
    requests_sent: int
    requests_completed: int = Field(description="finished without error inside the span")
    requests_failed: int = Field(description="sent inside the span and failed (see their errors)")
    output_tokens: int = Field(description="tokens whose arrival lies inside the span")
    offered_requests_per_s: float
    achieved_requests_per_s: float
    output_tokens_per_s: float
    goodput_requests_per_s: float | None = Field(
        description="completed requests meeting load.slo / duration; null without SLOs"
    )
    energy_j: float | None = Field(description="meter reads at the span's boundaries")
    per_output_token_j: float | None
    per_request_j: float | None = Field(description="energy / requests completed in the span")
    energy_reason: str | None = None
    latency: ServingLatency


class ServingReport(_Model):
    """A served run (``backend=openai`` under ``load=poisson|concurrency``): its steady-state window
    and its whole run, both labelled (see docs/serving.md)."""

    load: str = Field(description="poisson | concurrency")
    launch: str = Field(description="vllm | command (started by llem) | none (backend.url)")
    server_startup_s: float | None = Field(
        description="start to GET /health = 200 (s); null with launch=none"
    )
    server_log: str | None = Field(description="the server's log file in the run folder")
    steady: SpanFigures | None = Field(description="the steady-state window; null with the reason")
    steady_reason: str | None
    whole_run: SpanFigures = Field(description="first send to the end of the last stream")
    usage_mismatches: int = Field(
        description="requests whose streamed token count differs from the server's usage count"
    )
    input_mismatches: int = Field(
        description="requests whose input tokens (counted here) differ from the server's count"
    )
    errors: list[str] = Field(description="distinct errors of failed requests (at most 10)")
    failures: dict[str, int] = Field(
        {}, description="failed requests per class (connection, http_status, truncated, ...)"
    )
    usage_overclaims: int = Field(
        0, description="requests whose server claimed more tokens than max_tokens (capped)"
    )
    server_metrics_samples: int = Field(description="Prometheus rows in timeseries.parquet")
    server_metrics_errors: int = Field(description="/metrics polls that failed")


class ResultMetrics(BaseModel):
    """The measured sections of a ``result.json`` (the same types as :class:`Result`), read without
    the per-request list, the config and the environment: what the study summary and the key metrics
    need."""

    model_config = ConfigDict(extra="ignore")

    status: str = "ok"
    config_hash: str
    overrides: list[str]
    throughput: ThroughputMetrics
    latency: LatencyMetrics
    timing: TimingMetrics
    memory: MemoryMetrics
    flops: FlopsMetrics
    energy: EnergyMetrics
    repeats: RepeatSummary
    serving: ServingReport | None = None
    host_cpu: HostCpu | None = None
    cpu_contention: list[CpuContention] = []


class Result(_Model):
    schema_version: str = SCHEMA_VERSION
    llem_version: str
    experiment_id: str
    config_hash: str = Field(description="hash of the measurement-relevant resolved config")
    status: str = "ok"
    started_at: str = Field(description="ISO 8601, UTC")
    ended_at: str = Field(description="ISO 8601, UTC")
    config: dict[str, object] = Field(description="the resolved, validated experiment config")
    overrides: list[str] = Field(description="the command-line overrides of this run")
    model: ModelRecord
    dataset: DatasetRecord
    tokens: TokenCounts
    throughput: ThroughputMetrics
    latency: LatencyMetrics
    timing: TimingMetrics
    memory: MemoryMetrics
    flops: FlopsMetrics
    energy: EnergyMetrics
    repeats: RepeatSummary
    requests: list[RequestMetrics]
    warnings: list[str]
    environment: dict[str, object] = Field(
        description="versions, CPU, GPUs, driver (see llem.environment)"
    )
    host_cpu: HostCpu | None = Field(
        None, description="host CPU threads in use and how they were chosen (llem.hostcpu)"
    )
    cpu_contention: list[CpuContention] = Field(
        default_factory=list,
        description="per measured window: CPU used by llem and by other processes, load average",
    )
    benchmark: BenchmarkReport | None = Field(
        None, description="benchmark preset figures (runs with protocol set, see llem.benchmarks)"
    )
    serving: ServingReport | None = Field(
        None, description="served runs only: steady window and whole run (llem.serving)"
    )


def write_result(result: Result, folder: Path) -> Path:
    """``folder/result.json``, written atomically; returns its path."""
    path = folder / RESULT_FILE
    write_json_atomic(path, result.model_dump(mode="json"))
    return path


def result_schema() -> dict[str, object]:
    return Result.model_json_schema()


def print_schema() -> None:
    print(json.dumps(result_schema(), indent=2))
