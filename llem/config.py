"""The experiment schema: the single source of truth for what a valid llem experiment is.

Hydra composes the YAML config groups under ``conf/``; :func:`validate` turns the composed config
into an :class:`ExperimentConfig` (strict types, unknown keys rejected, cross-field rules) or raises
:class:`~llem.errors.ConfigError` with one short message naming the key and the fix."""

from __future__ import annotations

import hashlib
import json
import re
import typing
from typing import Annotated, Literal

from pydantic import (
    Field,
    PlainValidator,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from llem.backends.config import BackendConfig
from llem.backends.openai.address import is_local
from llem.backends.openai.config import OpenAIConfig
from llem.backends.pytorch.config import PyTorchConfig
from llem.backends.registry import validate_backend
from llem.energy.config import EnergyConfig
from llem.errors import ConfigError
from llem.hostcpu import ContentionConfig
from llem.load.config import BatchLoad, LoadConfig
from llem.strict import (
    MAX_GAP_S,
    MAX_PROMPTS,
    MAX_REPEATS,
    MAX_SLUG,
    MAX_TOKENS,
    MAX_WARMUP,
    PromptCount,
    TokenCount,
)
from llem.strict import Strict as _Strict

# One of the registered backends' configs, chosen by ``backend.name`` (see llem.backends.registry):
# validated lazily, so that backends registered by plugins after this import are accepted too.
RegisteredBackend = Annotated[SerializeAsAny[BackendConfig], PlainValidator(validate_backend)]


# every RNG llem seeds (torch, numpy, CUDA) takes a 32-bit unsigned seed
Seed = Annotated[int, Field(ge=0, lt=2**32)]
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

# --------------------------------------------------------------------------- model group


class ModelConfig(_Strict):
    name_or_path: str = Field(
        description="hub id (org/name), local model folder, or 'llem://tiny-llama' for the "
        "built-in random model"
    )
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) to pin")
    slug: str | None = Field(
        None,
        max_length=MAX_SLUG,
        description="short name used in result folder names (default: derived); letters, digits, "
        "'.', '_', '-' only",
    )

    @field_validator("slug")
    @classmethod
    def _safe_slug(cls, value: str | None) -> str | None:
        """A slug names a folder inside ``output_dir``: it never holds a path."""
        if value is not None and (not _SLUG.fullmatch(value) or ".." in value):
            raise ValueError(
                f"model.slug={value!r} cannot name a folder: use letters, digits, '.', '_' and "
                "'-' only (no '/', no '..')"
            )
        return value


# --------------------------------------------------------------------------- dataset group

ChatTemplate = Literal["auto", "always", "never"]
_CHAT_DOC = "auto = apply the model's chat template when it has one and the dataset is chat-style"


class _DatasetBase(_Strict):
    chat_template: ChatTemplate = Field("auto", description=_CHAT_DOC)


class BuiltinDataset(_DatasetBase):
    """Prompts written for llem and shipped in the package (chat-style requests)."""

    name: Literal["builtin"] = "builtin"


class AIEnergyScoreDataset(_DatasetBase):
    """AI Energy Score text-generation set (1,000 prompts), from the HF hub (cached) or a local
    copy.

    ``chat_template`` defaults to never: the benchmark feeds its prompts as raw text."""

    name: Literal["aienergyscore"] = "aienergyscore"
    chat_template: ChatTemplate = Field("never", description="never = raw text, as the benchmark")
    hub_id: str = "AIEnergyScore/text_generation"
    revision: str = Field(
        "2dc92b2ee2cd9776a51ccf08c6c2ab04138370c3", description="pinned dataset commit"
    )
    path: str | None = Field(None, description="local jsonl/csv/parquet copy; skips the hub")
    field: str = Field(
        "text", description="column holding the prompt (local jsonl copies may use 'prompt')"
    )


class SyntheticDataset(_DatasetBase):
    """Deterministic prompts of exactly ``input_tokens`` tokens each (seeded). They are token ids,
    never templated, whatever ``chat_template`` says: it defaults to never to say so."""

    name: Literal["synthetic"] = "synthetic"
    chat_template: ChatTemplate = Field("never", description="ignored: token ids are not templated")
    input_tokens: int = Field(
        128,
        ge=1,
        le=MAX_TOKENS,
        description="prompt length in tokens of the model's tokenizer (fits the model's context)",
    )
    seed: Seed = Field(
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
    top_k: int = Field(
        0, ge=0, le=MAX_TOKENS, description="only with strategy=sample; 0 disables top-k"
    )


class FlopsConfig(_Strict):
    enabled: bool = Field(True, description="run the FLOP pass (after the measured windows)")
    max_batches: PromptCount | None = Field(
        1,
        description="batches re-run under torch's FLOP counter, outside the measured windows; "
        "null = all measured batches",
    )


class ExperimentConfig(_Strict):
    backend: RegisteredBackend
    model: ModelConfig
    dataset: Dataset
    energy: EnergyConfig
    load: LoadConfig = Field(
        BatchLoad(), description="how requests reach the engine: batch | poisson | concurrency"
    )
    n: int = Field(100, ge=1, le=MAX_PROMPTS, description="number of measured prompts")
    batch: PromptCount = Field(1, description="prompts per generate call (must be <= n)")
    max_new_tokens: int = Field(
        32, ge=1, le=MAX_TOKENS, description="new tokens per prompt (within the model's context)"
    )
    stop_at_eos: bool = Field(
        False, description="false = fixed output length (min = max new tokens, EOS ignored)"
    )
    max_input_tokens: TokenCount | None = Field(
        1024,
        description="longer prompts are truncated to this many tokens (counted in "
        "dataset.truncated_prompts); null = the model's context minus max_new_tokens",
    )
    precision: Literal["bf16", "fp16", "fp32", "auto"] = Field(
        "bf16",
        description="weights/activation dtype; on CPU see docs/measurement.md "
        "(bf16 needs native CPU support)",
    )
    decoding: Decoding = Decoding()
    seed: Seed = Field(42, description="seeds every RNG generation uses")
    warmup_batches: int = Field(
        2, ge=0, le=MAX_WARMUP, description="batches run before the measured window (excluded)"
    )
    repeats: int = Field(
        1,
        ge=1,
        le=MAX_REPEATS,
        description="measured windows over the same prompts; >= 3 gives 95% intervals (fewer: a "
        "reason instead)",
    )
    repeat_gap_s: float = Field(
        0.0, ge=0, le=MAX_GAP_S, description="idle cool-down between repeats (s)"
    )
    flops: FlopsConfig = FlopsConfig()
    contention: ContentionConfig = Field(
        ContentionConfig(),
        description="when a measured window counts as CPU-contended, and the wait for quiet "
        "before each one",
    )
    output_dir: str = Field("results", description="root folder of result folders")
    quiet: bool = Field(
        False,
        description="no progress bar, summary table or warnings on screen (warnings stay in "
        "result.json; log lines still go to llem.log)",
    )
    plots: bool = Field(
        True,
        description="draw timeseries.png per run and the study's charts (false = tables only)",
    )
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
            isinstance(self.backend, PyTorchConfig)
            and self.backend.device_map is not None
            and self.backend.device == "cpu"
        ):
            raise ValueError(
                "backend.device_map needs GPUs: drop it or set backend.device=cuda/auto"
            )
        served = isinstance(self.backend, OpenAIConfig)
        if served and isinstance(self.load, BatchLoad):
            raise ValueError(
                "backend=openai measures a server under a load: set load=poisson or "
                "load=concurrency"
            )
        if served and self.repeats > 1:
            raise ValueError(
                "a served run is measured once: set repeats=1 (sweep seed=... for repeated runs)"
            )
        if not served and not isinstance(self.load, BatchLoad):
            raise ValueError(
                f"load={self.load.name} needs a server: use backend=openai (backend="
                f"{self.backend.name} runs offline batches, load=batch only)"
            )
        if (
            isinstance(self.backend, OpenAIConfig)
            and self.backend.url
            and not is_local(self.backend.url)
            and self.energy.meter != "none"
        ):
            raise ValueError(
                f"backend.url={self.backend.url} is not on this machine, whose meters would "
                "measure other hardware: use a 127.0.0.1 URL or energy=none"
            )
        return self

    def config_hash(self) -> str:
        """sha256 (hex, 16 chars) of the settings that change what is measured (not
        output_dir/quiet/protocol, nor how llem waits for a quiet CPU)."""
        exclude = {"output_dir", "quiet", "plots", "record_hostname", "protocol", "contention"}
        data = self.model_dump(mode="json", exclude=exclude)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- validation


def validate(composed: object) -> ExperimentConfig:
    """Validate a composed Hydra config (DictConfig or plain dict) into an
    :class:`ExperimentConfig`."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(composed, DictConfig):
        if "hydra" in composed:  # never resolve Hydra's node: its run.dir resolver claims a folder
            composed = OmegaConf.masked_copy(composed, [str(k) for k in composed if k != "hydra"])
        try:
            data = OmegaConf.to_container(composed, resolve=True, throw_on_missing=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(_unresolved(exc)) from None
    else:
        data = composed
    assert isinstance(data, dict)
    data.pop("hydra", None)
    return validate_data({str(k): v for k, v in data.items()})


def validate_data(data: dict[str, object]) -> ExperimentConfig:
    """Validate a composed experiment as plain, resolved containers (no ``hydra`` node)."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _unresolved(exc: Exception) -> str:
    """What OmegaConf could not resolve, as one line naming the key and the fix."""
    from omegaconf.errors import InterpolationResolutionError

    key = getattr(exc, "full_key", None) or "?"
    fix = f"set a value, e.g. {key}=<value>"
    if not isinstance(exc, InterpolationResolutionError):
        return f"'{key}' has no value: set it, e.g. {key}=<value>"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if text.startswith("Recursive interpolation detected"):
        return f"'{key}' is a self-referencing interpolation (it resolves to itself): {fix}"
    return f"'{key}' cannot be resolved ({text}): fix the interpolation or {fix}"


def _union_tags(model: type[_Strict]) -> dict[str, set[str]]:
    """The tags of each discriminated-union field (``dataset``, ``load``): pydantic puts the tag
    into an error's location (``load.poisson.rate``), which names no key the user can set."""
    tags: dict[str, set[str]] = {}
    for name, info in model.model_fields.items():
        if isinstance(info.discriminator, str):
            options = typing.get_args(info.annotation)
            tags[name] = {str(o.model_fields[info.discriminator].default) for o in options}
    return tags


_TAGS = _union_tags(ExperimentConfig)
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def _describe(exc: ValidationError) -> str:
    """One short line per problem: the dotted key, what is wrong, and the fix."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if len(loc) >= 2 and loc[1] in _TAGS.get(loc[0], ()):
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
        elif kind in _BOUNDS:
            limit = _show(next(iter(err.get("ctx", {}).values()), "?"))
            lines.append(
                f"{key}={value} is out of range: set {key}{_BOUNDS[kind]}{limit} "
                "(bounds: docs/configuration.md)"
            )
        elif kind == "finite_number":
            lines.append(f"{key}={value} is not a finite number: set a number")
        elif kind == "string_too_long":
            length = len(err["input"]) if isinstance(err["input"], str) else "?"
            most = err.get("ctx", {}).get("max_length")
            lines.append(f"{key} is {length} characters long: use at most {most}")
        elif kind == "value_error":
            lines.append(err["msg"].removeprefix("Value error, "))
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx", {})
            lines.append(
                f"{key}.name={_show(ctx.get('tag'))} is not a {loc[0]}: "
                f"use one of {ctx.get('expected_tags')}"
            )
        else:
            expected = kind.split("_")[0]
            lines.append(
                f"{key}={value} has the wrong type: expected {expected} ({err['msg'].lower()})"
            )
    return "; ".join(lines)


def _show(value: object) -> str:
    """A value as the user typed it on the command line (true, 8, 'abc')."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return repr(value) if isinstance(value, str) else str(value)
