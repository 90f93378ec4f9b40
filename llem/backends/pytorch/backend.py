"""PyTorch / transformers backend: ``AutoModelForCausalLM.generate`` with per-step timestamps.

Batches are left-padded; padding is never counted as a token. Per-step times are taken when each
step's tokens reach the host (transformers copies them to the CPU for the streamer, which
synchronises)."""

from __future__ import annotations

import contextlib
import copy
import itertools
import time

import torch
from transformers import AutoModelForCausalLM, GenerationConfig, PretrainedConfig, set_seed
from transformers.generation.streamers import BaseStreamer
from transformers.utils import logging as hf_logging

from llem.backends.base import FlopCount, Prompt, RequestRecord
from llem.backends.hf import HFBackend
from llem.backends.memory import PeakRSS
from llem.backends.precision import resolve_dtype
from llem.backends.pytorch.config import PyTorchConfig
from llem.config import ExperimentConfig
from llem.datasets import PromptSet
from llem.environment import cpu_info
from llem.errors import UsageError
from llem.hostcpu import thread_policy
from llem.result import ModelRecord


def resolve_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "backend.device=cuda but torch sees no CUDA GPU: use backend.device=cpu or auto"
        )
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _import_model_class(config: PretrainedConfig) -> None:
    """Import the modelling module now, so that the timed load measures loading, not Python
    imports."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    # remote code or an unusual architecture: imported during load
    with contextlib.suppress(KeyError):
        MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]


SAMPLED_STEPS = 3  # decode steps counted by the FLOP pass before the rest are summed


class _StepClock(BaseStreamer):
    """Records the time each generation step's tokens reach the host (the first put() is the
    prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if self._prompt_seen:
            self.times.append(time.perf_counter())
        self._prompt_seen = True

    def end(self) -> None:
        pass


class PyTorchBackend(HFBackend):
    name = "pytorch"
    pads_batches = True

    def __init__(self, config: PyTorchConfig, experiment: ExperimentConfig) -> None:
        # llem draws its own progress; keep the terminal readable
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # untyped in transformers
        super().__init__(experiment, config.trust_remote_code)
        self.bcfg = config
        self.thread_policy = thread_policy(config.num_threads)
        torch.set_num_threads(self.thread_policy.threads)
        self.device = resolve_device(config.device)
        name, warning = resolve_dtype(experiment.precision, self.device, cpu_info()["native_bf16"])
        self.dtype: torch.dtype | str = name if name == "auto" else getattr(torch, name)
        self._warnings += [warning] if warning else []
        self._peak_rss = PeakRSS()

    def prepare(self, prompt_set: PromptSet, indices: list[int]) -> list[Prompt]:
        prompts = super().prepare(prompt_set, indices)
        _import_model_class(self.hf_config)
        return prompts

    # ------------------------------------------------------------------ model

    def load(self) -> ModelRecord:
        kwargs = {**self.hf_kwargs(), "dtype": self.dtype}
        if self.bcfg.attn_implementation != "auto":
            kwargs["attn_implementation"] = self.bcfg.attn_implementation
        if self.bcfg.device_map:
            kwargs["device_map"] = self.bcfg.device_map
        model = AutoModelForCausalLM.from_pretrained(self.source.path, **kwargs)
        if not self.bcfg.device_map:
            model.to(self.device)  # type: ignore[arg-type]  # transformers types .to() too narrowly
        self.model = model.eval()  # type: ignore[no-untyped-call]
        self.input_device = model.device
        self.generation_config = self._generation_config()
        return self.model_record(
            architecture=type(model).__name__,
            parameters=sum(p.numel() for p in model.parameters()),
            dtype=str(model.dtype).removeprefix("torch."),
            device=str(model.device),
            context_length=self.context_length(),
        )

    def _generation_config(self) -> GenerationConfig:
        """Every decoding setting explicit: the model's own generation_config.json is not
        consulted."""
        d, fixed = self.experiment.decoding, not self.experiment.stop_at_eos
        sample = d.strategy == "sample"
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=self.experiment.max_new_tokens,
            min_new_tokens=self.experiment.max_new_tokens if fixed else None,
            do_sample=sample,
            temperature=d.temperature if sample else None,
            top_p=d.top_p if sample else None,
            top_k=d.top_k if sample else None,
            num_beams=1,
            use_cache=self.bcfg.use_cache,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=eos,
            bos_token_id=self.tokenizer.bos_token_id,
        )

    def eos_ids(self) -> set[int]:
        eos = self.generation_config.eos_token_id
        return set(eos) if isinstance(eos, list) else {eos} if eos is not None else set()

    # ------------------------------------------------------------------ generation

    def seed(self, seed: int) -> None:
        set_seed(seed)

    def _collate(self, batch: list[Prompt]) -> dict[str, torch.Tensor]:
        width = max(p.input_tokens for p in batch)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - p.input_tokens) + list(p.token_ids) for p in batch])
        mask = torch.tensor([[0] * (width - p.input_tokens) + [1] * p.input_tokens for p in batch])
        return {
            "input_ids": ids.to(self.input_device),
            "attention_mask": mask.to(self.input_device),
        }

    def _run(
        self,
        batch: list[Prompt],
        streamer: BaseStreamer | None = None,
        generation_config: GenerationConfig | None = None,
    ) -> torch.Tensor:
        inputs = self._collate(batch)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                generation_config=generation_config or self.generation_config,
                streamer=streamer,
            )
        new: torch.Tensor = out[:, inputs["input_ids"].shape[1] :].cpu()
        return new

    def prefill(self, batch: list[Prompt]) -> None:
        """The same batch with one new token: the prefill (plus one LM-head step)."""
        one = copy.deepcopy(self.generation_config)
        one.max_new_tokens, one.min_new_tokens = 1, None
        self._run(batch, generation_config=one)

    def generate(self, batch: list[Prompt]) -> list[RequestRecord]:
        clock = _StepClock()
        start = time.perf_counter()
        new = self._run(batch, clock)
        self.synchronize()
        counts = self._output_counts(new)
        return [
            RequestRecord(p.index, p.input_tokens, c, start, clock.times[:c])
            for p, c in zip(batch, counts, strict=True)
        ]

    def _output_counts(self, new: torch.Tensor) -> list[int]:
        """Generated tokens per row: up to and including the first EOS when EOS may stop, else all
        steps."""
        steps = new.shape[1]
        if not self.experiment.stop_at_eos:
            return [steps] * new.shape[0]
        eos = self.eos_ids()
        counts = []
        for row in new.tolist():
            hit = next((j for j, tok in enumerate(row) if tok in eos), None)
            counts.append(steps if hit is None else hit + 1)
        return counts

    def synchronize(self) -> None:
        """Wait for every GPU the model may use (device_map can spread it over several)."""
        if self.device == "cuda" or self.bcfg.device_map:
            for i in range(torch.cuda.device_count()):
                torch.cuda.synchronize(i)

    # ------------------------------------------------------------------ memory, FLOPs

    def reset_peak_memory(self) -> None:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            self._peak_rss.reset()

    def peak_memory(self) -> tuple[int | None, str]:
        if self.device == "cuda":
            return (
                torch.cuda.max_memory_allocated(),
                "CUDA allocator peak (torch.cuda.max_memory_allocated)",
            )
        return self._peak_rss.read()

    def count_flops(self, batches: list[list[Prompt]], every_step: bool = False) -> FlopCount:
        """FLOPs of generating ``batches`` as measured, counted by torch's FLOP counter.

        With a fixed output length a batch's FLOPs depend only on its shape (rows, padded input
        length): each distinct shape is counted once. And a decode step's FLOPs are linear in the
        number of cached positions, so :func:`_sampled_count` counts the prefill and the first
        :data:`SAMPLED_STEPS` decode steps and sums the rest exactly; it counts every step when
        that cannot be shown (``every_step``, EOS may stop rows, a cache layout whose cost is not
        linear).
        """
        from torch.utils.flop_counter import FlopCounterMode

        from llem.flops import register_cpu_sdpa_formula

        register_cpu_sdpa_formula()
        counted: dict[tuple[int, int], tuple[int, int, int]] = {}  # -> (FLOPs, steps, outputs)
        shapes, flops, outputs, inputs, requests = [], 0, 0, 0, 0
        sampled = 0
        for batch in batches:
            key = (len(batch), max(p.input_tokens for p in batch))
            if key not in counted or self.experiment.stop_at_eos:
                total = None if every_step else self._sampled_count(batch)
                if total is None:
                    with FlopCounterMode(display=False) as counter:
                        new = self._run(batch)
                    counts = self._output_counts(new)
                    counted[key] = (counter.get_total_flops(), new.shape[1], sum(counts))
                else:
                    n = self.generation_config.max_new_tokens
                    counted[key] = (total, n, n * len(batch))
                    sampled += 1
            batch_flops, steps, batch_outputs = counted[key]
            shapes.append((*key, steps))
            flops += batch_flops
            outputs += batch_outputs
            inputs += sum(p.input_tokens for p in batch)
            requests += len(batch)
        how = "one count per distinct batch shape"
        if sampled:
            how += f"; prefill + first {SAMPLED_STEPS} decode steps counted, the rest summed"
        return FlopCount(
            flops,
            requests,
            outputs,
            inputs,
            shapes,
            method=f"torch.utils.flop_counter.FlopCounterMode (CPU flash-attention formula added; "
            f"{how})",
        )

    def _sampled_count(self, batch: list[Prompt]) -> int | None:
        """The FLOPs of generating ``batch`` at the fixed output length ``n``, from its prefill
        and first decode steps; ``None`` when that is not exact (then every step is counted).

        Generation is ``head + F_0 + sum_{t=1}^{n-1} (gap + F_t) + tail`` where ``F_t`` is forward
        ``t`` (``F_0`` the prefill). A decode forward attends to one more cached position each
        step, so ``F_t = F_1 + (t - 1) d``. The first decode steps are counted, and used only when
        they show it: equal steps ``d`` and equal gaps; sliding-window attention that the run would
        reach, or a preallocated cache (static, hybrid), count every step.
        """
        from torch.utils.flop_counter import FlopCounterMode

        n, k = self.generation_config.max_new_tokens, SAMPLED_STEPS
        window = getattr(self.hf_config, "sliding_window", None)
        reach = max(p.input_tokens for p in batch) + (n or 0)
        if (
            self.experiment.stop_at_eos
            or n is None
            or n <= k + 1
            or self.generation_config.cache_implementation is not None
            or (isinstance(window, int) and reach > window)
        ):
            return None
        short = copy.deepcopy(self.generation_config)
        short.max_new_tokens = short.min_new_tokens = k + 1
        before: list[int] = []
        after: list[int] = []
        with FlopCounterMode(display=False) as counter:
            hooks = [
                self.model.register_forward_pre_hook(
                    lambda *_: before.append(counter.get_total_flops())
                ),
                self.model.register_forward_hook(
                    lambda *_: after.append(counter.get_total_flops())
                ),
            ]
            try:
                self._run(batch, generation_config=short)
            finally:
                for hook in hooks:
                    hook.remove()
            total = int(counter.get_total_flops())
        if len(before) != k + 1 or len(after) != k + 1:
            return None  # generate did not run one forward per token
        forwards = [b - a for a, b in zip(before, after, strict=True)]
        gaps = {b - a for a, b in zip(after[:-1], before[1:], strict=True)}
        steps = {b - a for a, b in itertools.pairwise(forwards[1:])}
        if len(gaps) != 1 or len(steps) != 1:
            return None
        (gap,), (d,) = gaps, steps
        head, tail = before[0], total - after[-1]
        decodes = (n - 1) * forwards[1] + d * (n - 1) * (n - 2) // 2
        return int(head + forwards[0] + decodes + (n - 1) * gap + tail)

    def close(self) -> None:
        self.model = None
        if self.device == "cuda":
            torch.cuda.empty_cache()
