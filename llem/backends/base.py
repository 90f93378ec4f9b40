"""What the harness needs from a backend: a small protocol and the records it returns.

Times are ``time.perf_counter()`` seconds; token counts exclude padding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from llem.datasets import PromptSet
    from llem.result import ModelRecord


@dataclass(frozen=True)
class Prompt:
    """One request after tokenisation (chat template applied, truncated)."""

    index: int  # position in the dataset
    token_ids: tuple[int, ...]
    truncated: bool = False

    @property
    def input_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class RequestRecord:
    """What happened to one request in the measured window."""

    index: int
    input_tokens: int
    output_tokens: int
    start_s: float  # submission time (perf_counter)
    token_times_s: list[float] = field(
        default_factory=list
    )  # arrival of each output token (perf_counter)
    repeat: int = 1
    finished_s: float | None = (
        None  # completion time when per-token times are not known (perf_counter)
    )

    @property
    def end_s(self) -> float:
        if self.token_times_s:
            return self.token_times_s[-1]
        return self.finished_s if self.finished_s is not None else self.start_s


@dataclass(frozen=True)
class FlopCount:
    flops: int | None  # counted by the framework's FLOP counter; None with reason
    requests: int  # requests covered by the count
    output_tokens: int
    input_tokens: int
    batches: list[
        tuple[int, int, int]
    ]  # (batch size, padded input length, new tokens) per counted batch
    method: str
    reason: str | None = None


class Backend(Protocol):
    """One inference engine, driven by :class:`llem.harness.Harness`. A backend class is built as
    ``Cls(config, experiment)``: its own typed config and the shared experiment settings
    (:class:`llem.backends.registry.BackendFactory`)."""

    name: str
    pads_batches: bool  # True: a batch is one padded tensor (FLOPs follow the padded shape)

    def prepare(self, prompt_set: PromptSet, indices: list[int]) -> list[Prompt]:
        """Load tokenizer and model config (not weights); tokenise the prompts at ``indices``; check
        that the longest prompt plus the new tokens fits the model's context (else
        :class:`UsageError`)."""

    def load(self) -> ModelRecord:
        """Load the weights onto the device (the harness times this)."""

    def seed(self, seed: int) -> None:
        """Seed every RNG generation uses."""

    def generate(self, batch: list[Prompt]) -> list[RequestRecord]:
        """Run one batch to completion; return one record per prompt, in order."""

    def prefill(self, batch: list[Prompt]) -> None:
        """Run ``batch`` with one new token only (for the prefill/decode energy split)."""

    def synchronize(self) -> None:
        """Wait for queued device work (called before reading clocks or meters)."""

    def reset_peak_memory(self) -> None: ...

    def peak_memory(self) -> tuple[int | None, str]:
        """(bytes, what was measured) for the window since :meth:`reset_peak_memory`."""

    def count_flops(self, batches: list[list[Prompt]]) -> FlopCount:
        """Re-run ``batches`` under a FLOP counter (untimed, outside the measured window)."""

    def warnings(self) -> list[str]:
        """Things the user should know about this run (precision fallbacks, truncation …)."""

    def close(self) -> None: ...
