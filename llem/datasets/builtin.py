"""llem's built-in prompts (``builtin_prompts.jsonl``, written for this project, shipped)."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import TypedDict


class BuiltinPrompt(TypedDict):
    """One line of ``builtin_prompts.jsonl``."""

    id: str
    task: str  # explain, answer, summarise, chat, code, ...
    prompt: str


@functools.lru_cache(maxsize=1)
def builtin_records() -> tuple[BuiltinPrompt, ...]:
    text = (
        resources.files("llem.datasets")
        .joinpath("builtin_prompts.jsonl")
        .read_text(encoding="utf-8")
    )
    return tuple(json.loads(line) for line in text.splitlines() if line.strip())


def builtin_texts() -> list[str]:
    return [r["prompt"] for r in builtin_records()]
