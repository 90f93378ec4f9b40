"""``result.json``: the versioned record of one measured run (pydantic model, JSON Schema via ``llem schema``).

Field names carry their unit (``_s`` seconds, ``_ms`` milliseconds, ``_j`` joules, ``_w`` watts,
``_bytes``). A value that was not measured is ``null`` with a reason beside it, never 0.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from llem.paths import write_json_atomic

SCHEMA_VERSION = "1.0"
RESULT_FILE = "result.json"


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
    """Exact counts: padding is never counted; output includes the EOS token when generation stopped on it."""

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

    ttft_ms: Distribution | None = Field(description="time to first token: request submission -> first token")
    itl_ms: Distribution | None = Field(description="inter-token latency: gaps between consecutive tokens")
    e2e_ms: Distribution | None = Field(description="end-to-end: request submission -> last token")


class RequestMetrics(_Model):
    index: int = Field(description="position of the prompt in the dataset")
    input_tokens: int
    output_tokens: int
    ttft_ms: float | None
    e2e_ms: float
    itl_mean_ms: float | None


class TimingMetrics(_Model):
    model_load_s: float = Field(description="from_pretrained + move to device")
    warmup_s: float = Field(description="warm-up batches (excluded from every other metric)")
    measured_window_s: float = Field(description="first measured batch start -> last batch end (synchronised)")
    flops_pass_s: float | None = Field(description="untimed FLOP-counting pass (not part of the window)")


class MemoryMetrics(_Model):
    peak_bytes: int | None
    measured: str = Field(description="what peak_bytes is: CUDA allocator peak, or process peak RSS")


class FlopsMetrics(_Model):
    """FLOPs (multiply-add = 2 FLOPs) of the counted batches, re-run outside the measured window."""

    counted: int | None = Field(description="torch FLOP counter over the counted batches")
    analytic: int | None = Field(description="closed-form count for the same batch shapes (padding included)")
    counted_requests: int
    counted_output_tokens: int
    counted_per_output_token: float | None
    analytic_per_output_token: float | None
    analytic_window_total: int | None = Field(description="closed-form count for every measured batch")
    method: str
    reason: str | None = None


class EnergyMetrics(_Model):
    """Energy of the measured window. All null with ``reason`` when nothing measured it."""

    meter: str | None = Field(description="what measured it (e.g. nvml counter); null = unmeasured")
    covers: str | None = Field(description="GPU board / CPU package / DRAM / modelled estimate")
    method: str | None = Field(description="counter delta / integrated power / estimate")
    total_j: float | None
    per_output_token_j: float | None
    per_request_j: float | None
    wh_per_1k_requests: float | None = Field(description="AI Energy Score unit")
    average_power_w: float | None
    output_tokens_per_j: float | None
    window_s: float | None
    reason: str | None = Field(description="why the values are null")


class ModelRecord(_Model):
    name_or_path: str
    resolved_path: str
    source: str = Field(description="builtin | local | hub")
    architecture: str
    parameters: int
    dtype: str = Field(description="dtype the weights ran in (see warnings for precision fallbacks)")
    device: str
    context_length: int | None
    random_weights: bool = Field(description="true for llem's built-in model: outputs are meaningless")
    chat_template_applied: bool
    config: dict = Field(description="the model's config.json as loaded")


class DatasetRecord(_Model):
    source: str
    measured_indices: list[int]
    warmup_indices: list[int]
    truncated_prompts: int = Field(description="prompts cut to max_input_tokens")


class Result(_Model):
    schema_version: str = SCHEMA_VERSION
    llem_version: str
    experiment_id: str
    config_hash: str = Field(description="hash of the measurement-relevant resolved config")
    status: str = "ok"
    started_at: str = Field(description="ISO 8601, UTC")
    ended_at: str = Field(description="ISO 8601, UTC")
    config: dict = Field(description="the resolved, validated experiment config")
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
    requests: list[RequestMetrics]
    warnings: list[str]
    environment: dict = Field(description="versions, CPU, GPUs, driver (see llem.environment)")


def write_result(result: Result, folder: Path) -> Path:
    path = folder / RESULT_FILE
    write_json_atomic(path, result.model_dump(mode="json"))
    return path


def result_schema() -> dict:
    return Result.model_json_schema()


def print_schema() -> None:
    print(json.dumps(result_schema(), indent=2))
