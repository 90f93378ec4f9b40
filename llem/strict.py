"""The base of every schema model (strict types, unknown keys rejected, immutable, finite numbers)
and the bounds shared by its keys.

Every key whose value implies a duration, a count or a memory size has a lower and an upper bound:
beyond them a run cannot finish in any useful time or memory (or would hammer what it measures), so
the pre-flight refuses the value with one line naming the key and the bound, instead of the run
failing or hanging after the model has loaded. docs/configuration.md lists each key's bounds."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """A config section: ``batch=true`` is not 1, a misspelt key is an error, values never
    change, ``inf`` and ``nan`` are not numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


PositiveInt = Annotated[int, Field(ge=1)]

MAX_TOKENS = 1_048_576  # prompt/new tokens (and top-k): no model's context or vocabulary is larger
MAX_STEP_TOKENS = 16 * MAX_TOKENS  # tokens an engine schedules per step
MAX_PROMPTS = 1_000_000  # measured prompts (and anything counted in prompts: batch, sequences)
MAX_WARMUP = 10_000  # warm-up batches
MAX_REPEATS = 1_000  # measured windows
MAX_GAP_S = 3_600.0  # cool-downs and idle measurements, s
MAX_DEVICES = 1_024  # GPUs a model is split over (tensor or pipeline parallel)
MAX_THREADS = 4_096  # CPU threads
MAX_WAIT_S = 86_400.0  # a timeout: one day, s
MAX_SLUG = 100  # characters of a name that becomes part of a folder name

TokenCount = Annotated[int, Field(ge=1, le=MAX_TOKENS)]
PromptCount = Annotated[int, Field(ge=1, le=MAX_PROMPTS)]
DeviceCount = Annotated[int, Field(ge=1, le=MAX_DEVICES)]
