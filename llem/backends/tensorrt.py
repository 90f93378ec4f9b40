"""TensorRT-LLM backend: the high-level ``tensorrt_llm.LLM`` API (builds an engine from the model folder, or
loads a prebuilt engine), ``SamplingParams`` for fixed-length greedy generation.

NOT VERIFIED ON HARDWARE: TensorRT-LLM has no binary wheels on the package index reachable here, so this
module is tested only against a stand-in ``tensorrt_llm`` (tests/stand_ins/) for its config mapping and
result assembly. Timing: ``LLM.generate`` returns whole requests, so per-token timestamps are not
available: E2E is the batch's completion time for every request in it, TTFT and ITL are null (with a
warning), never invented.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from llem.backends.base import FlopCount, Prompt, RequestRecord
from llem.backends.precision import DTYPE_NAMES
from llem.backends.prompts import PromptBuilder, load_tokenizer, model_context_length
from llem.config import ExperimentConfig
from llem.datasets import PromptSet
from llem.errors import UsageError
from llem.models import tiny
from llem.models.source import checkpoint_parameters, resolve_model
from llem.result import ModelRecord


def create(config: ExperimentConfig) -> TensorRTBackend:
    return TensorRTBackend(config)


def llm_kwargs(config: ExperimentConfig, model_path: str) -> dict[str, Any]:
    """Keyword arguments of ``tensorrt_llm.LLM`` for this experiment (``engine_args`` pass through)."""
    b = config.backend
    kwargs: dict[str, Any] = {
        "model": b.engine_dir or model_path,
        "tokenizer": model_path,
        "dtype": DTYPE_NAMES[config.precision],
        "tensor_parallel_size": b.tensor_parallel_size,
        "pipeline_parallel_size": b.pipeline_parallel_size,
        "trust_remote_code": b.trust_remote_code,
    }
    for key in ("max_batch_size", "max_num_tokens", "max_seq_len"):
        if getattr(b, key) is not None:
            kwargs[key] = getattr(b, key)
    return kwargs | dict(b.engine_args)


def sampling_kwargs(config: ExperimentConfig, max_tokens: int) -> dict[str, Any]:
    """``SamplingParams`` for fixed-length (min = max, EOS ignored) greedy or seeded sampling."""
    d, fixed = config.decoding, not config.stop_at_eos
    out: dict[str, Any] = {"max_tokens": max_tokens, "seed": config.seed}
    if fixed:
        out |= {"min_tokens": max_tokens, "ignore_eos": True}
    if d.strategy == "greedy":
        out |= {"temperature": 0.0, "top_k": 1}
    else:
        out |= {"temperature": d.temperature, "top_p": d.top_p} | (
            {"top_k": d.top_k} if d.top_k else {}
        )
    return out


class TensorRTBackend:
    name = "tensorrt"
    pads_batches = False

    def __init__(self, config: ExperimentConfig) -> None:
        self.cfg = config
        self.bcfg = config.backend
        self.source = resolve_model(config.model)
        if self.bcfg.engine_dir and not Path(self.bcfg.engine_dir).is_dir():
            raise UsageError(
                f"backend.engine_dir={self.bcfg.engine_dir}: no such folder; build an engine first "
                "or set backend.engine_dir=null to build one from the model"
            )
        self.llm = None
        self._warnings = [
            "TensorRT-LLM returns whole requests: TTFT and ITL are not measured (null); E2E is "
            "each batch's completion time"
        ]

    def prepare(self, prompt_set: PromptSet, indices: list[int]) -> list[Prompt]:
        from transformers import AutoConfig

        hf = {
            "trust_remote_code": self.bcfg.trust_remote_code,
            "local_files_only": self.source.local_files_only,
        }
        self.tokenizer = load_tokenizer(self.source.path, **hf)
        self.hf_config = AutoConfig.from_pretrained(self.source.path, **hf)
        self.builder = PromptBuilder(self.tokenizer, self.cfg)
        return self.builder.build(prompt_set, indices, self.context_length())

    def context_length(self) -> int | None:
        return self.bcfg.max_seq_len or model_context_length(self.hf_config)

    def load(self) -> ModelRecord:
        from tensorrt_llm import LLM

        self.llm = LLM(**llm_kwargs(self.cfg, self.source.path))
        prov = tiny.provenance(self.source.path) if self.source.kind != "hub" else None
        return ModelRecord(
            name_or_path=self.cfg.model.name_or_path,
            resolved_path=self.source.path,
            source=self.source.kind,
            architecture=(self.hf_config.architectures or [self.hf_config.model_type])[0],
            parameters=checkpoint_parameters(Path(self.source.path)) or 0,
            dtype=DTYPE_NAMES[self.cfg.precision],
            device="cuda",
            context_length=self.context_length(),
            random_weights=bool(prov and prov.get("random_weights")),
            chat_template_applied=self.builder.chat_template_applied,
            config=self.hf_config.to_dict(),
        )

    def seed(self, seed: int) -> None:
        pass  # SamplingParams carries the seed

    def _run(self, batch: list[Prompt], max_tokens: int) -> list:
        from tensorrt_llm import SamplingParams

        params = SamplingParams(**sampling_kwargs(self.cfg, max_tokens))
        return self.llm.generate(
            [list(p.token_ids) for p in batch], sampling_params=params, use_tqdm=False
        )

    def generate(self, batch: list[Prompt]) -> list[RequestRecord]:
        start = time.perf_counter()
        outputs = self._run(batch, self.cfg.max_new_tokens)
        end = time.perf_counter()
        records = []
        for prompt, out in zip(batch, outputs, strict=True):
            n_out = len(out.outputs[0].token_ids)
            # no per-token times: only the batch's completion time is known
            records.append(
                RequestRecord(prompt.index, prompt.input_tokens, n_out, start, finished_s=end)
            )
        return records

    def prefill(self, batch: list[Prompt]) -> None:
        self._run(batch, 1)

    def synchronize(self) -> None:
        pass  # generate() returns when the requests are complete

    def reset_peak_memory(self) -> None:
        pass

    def peak_memory(self) -> tuple[int | None, str]:
        return None, "not measured (TensorRT-LLM allocates outside torch's allocator)"

    def count_flops(self, batches: list[list[Prompt]]) -> FlopCount:
        """Analytic only: one (1, input tokens, new tokens) shape per request (in-flight batching, no padding)."""
        prompts = [p for b in batches for p in b]
        shapes = [(1, p.input_tokens, self.cfg.max_new_tokens) for p in prompts]
        return FlopCount(
            None,
            len(prompts),
            len(prompts) * self.cfg.max_new_tokens,
            sum(p.input_tokens for p in prompts),
            shapes,
            method="analytic (closed form per request)",
            reason="TensorRT-LLM: no framework FLOP counter; closed form only",
        )

    def warnings(self) -> list[str]:
        return list(self._warnings)

    def close(self) -> None:
        if self.llm is not None and hasattr(self.llm, "shutdown"):
            self.llm.shutdown()
        self.llm = None
