"""llem's built-in prompts (``builtin_prompts.jsonl``, written for this project, shipped)."""

from __future__ import annotations

import functools
import json
from importlib import resources


@functools.lru_cache(maxsize=1)
def builtin_records() -> tuple[dict, ...]:
    text = (
        resources.files("llem.datasets")
        .joinpath("builtin_prompts.jsonl")
        .read_text(encoding="utf-8")
    )
    return tuple(json.loads(line) for line in text.splitlines() if line.strip())


def builtin_texts() -> list[str]:
    return [r["prompt"] for r in builtin_records()]
