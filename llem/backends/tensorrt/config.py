"""``backend=tensorrt`` keys."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, JsonValue

from llem.backends.config import BackendConfig
from llem.strict import MAX_STEP_TOKENS, DeviceCount, PromptCount, TokenCount


class TensorRTConfig(BackendConfig):
    """TensorRT-LLM's high-level ``LLM`` API (builds an engine from the model, or loads
    ``engine_dir``). Not verified on hardware in this release (tested with a stand-in module)."""

    name: Literal["tensorrt"] = "tensorrt"
    engine_dir: str | None = Field(
        None, description="prebuilt engine folder; null = build from the model"
    )
    tensor_parallel_size: DeviceCount = Field(1, description="GPUs each layer is split over")
    pipeline_parallel_size: DeviceCount = Field(1, description="pipeline stages")
    max_batch_size: PromptCount | None = Field(
        None, description="engine build limit (null = TensorRT-LLM's)"
    )
    max_num_tokens: Annotated[int, Field(ge=1, le=MAX_STEP_TOKENS)] | None = Field(
        None, description="engine build limit (null = TensorRT-LLM's)"
    )
    max_seq_len: TokenCount | None = Field(
        None, description="engine build limit (null = the model's context)"
    )
    trust_remote_code: bool = Field(
        False, description="run model code shipped in the model repo (off by default)"
    )
    engine_args: dict[str, JsonValue] = Field(
        default_factory=dict, description="other tensorrt_llm.LLM arguments, passed as they are"
    )
