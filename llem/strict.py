"""The base of every schema model: strict types, unknown keys rejected, immutable."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """A config section: ``batch=true`` is not 1, a misspelt key is an error, values never
    change."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


PositiveInt = Annotated[int, Field(ge=1)]
