"""``backend=pytorch`` keys."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from llem.backends.config import BackendConfig
from llem.strict import MAX_THREADS


class PyTorchConfig(BackendConfig):
    """transformers ``AutoModelForCausalLM`` + ``generate`` on PyTorch."""

    name: Literal["pytorch"] = "pytorch"
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = cuda when torch sees a GPU, else cpu"
    )
    device_map: str | None = Field(
        None,
        description="accelerate device map (e.g. 'auto' to shard over all visible GPUs); "
        "overrides device",
    )
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = Field(
        "auto", description="auto = transformers' default for the model (sdpa where supported)"
    )
    trust_remote_code: bool = Field(
        False, description="run model code shipped in the model repo (off by default)"
    )
    sort_by_length: bool = Field(
        False,
        description="group prompts of similar length into batches (less padding); "
        "default keeps dataset order",
    )
    use_cache: bool = Field(True, description="KV cache during generation")
    num_threads: Annotated[int, Field(ge=1, le=MAX_THREADS)] | None = Field(
        None,
        description="torch CPU threads; null = OMP_NUM_THREADS when exported, else the physical "
        "cores in the affinity set (recorded in host_cpu.policy)",
    )
