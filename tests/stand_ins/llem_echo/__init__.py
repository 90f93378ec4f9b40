"""A backend that lives only here, loaded as a plugin (``LLEM_PLUGINS=llem_echo`` with
tests/stand_ins on ``PYTHONPATH``): its typed config, its engine and its registry calls, nothing
edited in llem.

It runs no model. A prompt's tokens are its UTF-8 bytes (cut to max_input_tokens); each request
emits ``max_new_tokens`` tokens, one every ``backend.step_ms`` milliseconds (really waited), so its
records are deterministic in counts and real in time. ``echo_missing`` needs a module that is not
installed (for the pre-flight install hint).
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from llem.backends.base import FlopCount, Prompt, RequestRecord
from llem.backends.config import BackendConfig
from llem.backends.registry import BackendEntry, register_backend
from llem.config import ExperimentConfig
from llem.datasets import PromptSet
from llem.result import ModelRecord


class EchoConfig(BackendConfig):
    """``backend=echo`` keys."""

    name: Literal["echo"] = "echo"
    step_ms: float = Field(1.0, gt=0, description="time per generated token (ms)")


class MissingConfig(BackendConfig):
    name: Literal["echo_missing"] = "echo_missing"


class EchoBackend:
    name = "echo"
    pads_batches = False

    def __init__(self, config: EchoConfig, experiment: ExperimentConfig) -> None:
        self.config, self.experiment = config, experiment

    def prepare(self, prompt_set: PromptSet, indices: list[int]) -> list[Prompt]:
        assert prompt_set.texts is not None, "echo needs text prompts"
        limit = self.experiment.max_input_tokens
        return [Prompt(i, tuple(prompt_set.texts[i].encode()[:limit])) for i in indices]

    def load(self) -> ModelRecord:
        return ModelRecord(
            name_or_path=self.experiment.model.name_or_path,
            resolved_path="",
            source="builtin",
            architecture="Echo",
            parameters=0,
            dtype="none",
            device="cpu",
            context_length=None,
            random_weights=False,
            chat_template_applied=False,
            config={},
        )

    def seed(self, seed: int) -> None:
        pass

    def generate(self, batch: list[Prompt]) -> list[RequestRecord]:
        start, times = time.perf_counter(), []
        for _ in range(self.experiment.max_new_tokens):
            time.sleep(self.config.step_ms / 1000)
            times.append(time.perf_counter())
        n = len(times)
        return [RequestRecord(p.index, p.input_tokens, n, start, list(times)) for p in batch]

    def prefill(self, batch: list[Prompt]) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def reset_peak_memory(self) -> None:
        pass

    def peak_memory(self) -> tuple[int | None, str]:
        return None, "not measured (echo stand-in)"

    def count_flops(self, batches: list[list[Prompt]]) -> FlopCount:
        return FlopCount(None, 0, 0, 0, [], "none", "echo stand-in: no model")

    def warnings(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


register_backend(
    BackendEntry(
        "echo", EchoConfig, f"{__name__}:EchoBackend", "echo stand-in", install="(in tests/)"
    )
)
register_backend(
    BackendEntry(
        "echo_missing",
        MissingConfig,
        f"{__name__}:EchoBackend",
        "needs a missing module",
        requires=("llem_missing_engine",),
        install="pip install llem-missing-engine",
    )
)
