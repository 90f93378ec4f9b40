"""Synthetic prompts: token ids drawn uniformly from a tokenizer's non-special vocabulary."""

from __future__ import annotations

import random


def synthetic_token_ids(
    count: int, length: int, vocab_size: int, special_ids: set[int], seed: int, bos_id: int | None
) -> list[list[int]]:
    """``count`` prompts of ``length`` token ids (BOS first if the model has one); seeded."""
    rng = random.Random(seed)
    ordinary = [i for i in range(vocab_size) if i not in special_ids]
    prefix = [bos_id] if bos_id is not None else []
    body = length - len(prefix)
    return [prefix + [rng.choice(ordinary) for _ in range(body)] for _ in range(count)]
