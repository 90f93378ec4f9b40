"""TensorRT-LLM backend: the high-level ``tensorrt_llm.LLM`` API (builds an engine from the model
folder, or loads a prebuilt engine), ``SamplingParams`` for fixed-length greedy generation.

NOT VERIFIED ON HARDWARE: TensorRT-LLM has no binary wheels on the package index reachable here, so
this module is tested only against a stand-in ``tensorrt_llm`` (tests/stand_ins/) for its config
mapping and result assembly. Timing: ``LLM.generate`` returns whole requests, so per-token
timestamps are not available: E2E is the batch's completion time for every request in it, TTFT and
ITL are null (with a warning), never invented."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import JsonValue

from llem.backends.base import FlopCount, Prompt, RequestRecord
from llem.backends.hf import HFBackend
from llem.backends.precision import DTYPE_NAMES
from llem.backends.tensorrt.config import TensorRTConfig
from llem.config import ExperimentConfig
from llem.errors import UsageError
from llem.models.source import checkpoint_parameters
from llem.result import ModelRecord

if TYPE_CHECKING:
    from tensorrt_llm import LLM


def llm_kwargs(
    b: TensorRTConfig, precision: str, model_path: str, revision: str | None = None
) -> dict[str, JsonValue]:
    """Keyword arguments of ``tensorrt_llm.LLM`` (``engine_args`` pass through as they are)."""
    kwargs: dict[str, JsonValue] = {
        "model": b.engine_dir or model_path,
        "tokenizer": model_path,
        "dtype": DTYPE_NAMES[precision],
        "tensor_parallel_size": b.tensor_parallel_size,
        "pipeline_parallel_size": b.pipeline_parallel_size,
        "trust_remote_code": b.trust_remote_code,
    }
    if revision is not None:
        kwargs["revision"] = revision
    limits = {
        "max_batch_size": b.max_batch_size,
        "max_num_tokens": b.max_num_tokens,
        "max_seq_len": b.max_seq_len,
    }
    kwargs |= {key: value for key, value in limits.items() if value is not None}
    return kwargs | dict(b.engine_args)


class Completion(Protocol):
    @property
    def token_ids(self) -> Sequence[int]: ...


class RequestOutput(Protocol):
    """What llem reads of ``tensorrt_llm.RequestOutput``."""

    @property
    def outputs(self) -> Sequence[Completion]: ...


def sampling_kwargs(config: ExperimentConfig, max_tokens: int) -> dict[str, JsonValue]:
    """``SamplingParams`` for fixed-length (min = max, EOS ignored) greedy or seeded sampling."""
    d, fixed = config.decoding, not config.stop_at_eos
    out: dict[str, JsonValue] = {"max_tokens": max_tokens, "seed": config.seed}
    if fixed:
        out |= {"min_tokens": max_tokens, "ignore_eos": True}
    if d.strategy == "greedy":
        out |= {"temperature": 0.0, "top_k": 1}
    else:
        out |= {"temperature": d.temperature, "top_p": d.top_p} | (
            {"top_k": d.top_k} if d.top_k else {}
        )
    return out


class TensorRTBackend(HFBackend):
    name = "tensorrt"
    pads_batches = False

    def __init__(self, config: TensorRTConfig, experiment: ExperimentConfig) -> None:
        super().__init__(experiment, config.trust_remote_code)
        self.bcfg = config
        if config.engine_dir and not Path(config.engine_dir).is_dir():
            raise UsageError(
                f"backend.engine_dir={config.engine_dir}: no such folder; build an engine first "
                "or set backend.engine_dir=null to build one from the model"
            )
        self.llm: LLM | None = None
        self._warnings.append(
            "TensorRT-LLM returns whole requests: TTFT and ITL are not measured (null); E2E is "
            "each batch's completion time"
        )

    def context_length(self) -> int | None:
        return self.bcfg.max_seq_len or super().context_length()

    def load(self) -> ModelRecord:
        from tensorrt_llm import LLM

        revision = self.experiment.model.revision if self.source.kind == "hub" else None
        self.llm = LLM(
            **llm_kwargs(self.bcfg, self.experiment.precision, self.source.path, revision)
        )
        return self.model_record(
            architecture=(self.hf_config.architectures or [self.hf_config.model_type])[0],
            parameters=checkpoint_parameters(Path(self.source.path)) or 0,
            dtype=DTYPE_NAMES[self.experiment.precision],
            device="cuda",
            context_length=self.context_length(),
        )

    def seed(self, seed: int) -> None:
        pass  # SamplingParams carries the seed

    def _run(self, batch: list[Prompt], max_tokens: int) -> Sequence[RequestOutput]:
        from tensorrt_llm import SamplingParams

        assert self.llm is not None, "load() first"
        params = SamplingParams(**sampling_kwargs(self.experiment, max_tokens))
        outputs: Sequence[RequestOutput] = self.llm.generate(
            [list(p.token_ids) for p in batch], sampling_params=params, use_tqdm=False
        )
        return outputs

    def generate(self, batch: list[Prompt]) -> list[RequestRecord]:
        start = time.perf_counter()
        outputs = self._run(batch, self.experiment.max_new_tokens)
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
        """Analytic only: one (1, input tokens, new tokens) shape per request (in-flight batching,
        no padding)."""
        prompts = [p for b in batches for p in b]
        shapes = [(1, p.input_tokens, self.experiment.max_new_tokens) for p in prompts]
        return FlopCount(
            None,
            len(prompts),
            len(prompts) * self.experiment.max_new_tokens,
            sum(p.input_tokens for p in prompts),
            shapes,
            method="analytic (closed form per request)",
            reason="TensorRT-LLM: no framework FLOP counter; closed form only",
        )

    def close(self) -> None:
        if self.llm is not None and hasattr(self.llm, "shutdown"):
            self.llm.shutdown()
        self.llm = None
