"""Prompt sources: :func:`load_prompts` returns a config's measured and warm-up prompts."""

from __future__ import annotations

from dataclasses import dataclass

from llem.config import (
    AIEnergyScoreDataset,
    BuiltinDataset,
    Dataset,
    JsonlDataset,
    SyntheticDataset,
)
from llem.errors import UsageError


@dataclass(frozen=True)
class PromptSet:
    """Texts to tokenise (``texts``), or a request for synthetic token ids (``synthetic``)."""

    source: str  # human description, recorded in the result
    chat_style: bool  # user requests: the model's chat template applies with chat_template=auto
    texts: list[str] | None = None
    synthetic: SyntheticDataset | None = None
    available: int | None = None  # prompts in the source (None = unlimited)


def _open(cfg: Dataset) -> PromptSet:
    if isinstance(cfg, BuiltinDataset):
        from llem.datasets.builtin import builtin_texts

        texts = builtin_texts()
        return PromptSet("llem built-in prompts", True, texts, available=len(texts))
    if isinstance(cfg, JsonlDataset):
        from llem.datasets.files import read_prompts

        texts = read_prompts(cfg.path, cfg.field, key="dataset.path")
        return PromptSet(f"jsonl file {cfg.path}", cfg.style == "chat", texts, available=len(texts))
    if isinstance(cfg, AIEnergyScoreDataset):
        from llem.datasets.aienergyscore import load_aienergyscore

        texts, origin = load_aienergyscore(cfg)
        return PromptSet(
            f"AI Energy Score text_generation ({origin})", False, texts, available=len(texts)
        )
    if isinstance(cfg, SyntheticDataset):
        return PromptSet(
            f"synthetic, {cfg.input_tokens} tokens, seed {cfg.seed}", False, synthetic=cfg
        )
    raise AssertionError(cfg)


def check_dataset(cfg: Dataset) -> int | None:
    """Pre-flight: the source exists and parses (raises :class:`UsageError` naming the fix);
    returns how many prompts it holds (None = unlimited)."""
    return _open(cfg).available


def load_prompts(cfg: Dataset, n: int, n_warmup: int) -> tuple[PromptSet, list[int], list[int]]:
    """The source, the indices of the ``n`` measured prompts, and of ``n_warmup`` warm-up prompts.

    Warm-up prompts come after the measured ones (wrapping to the start when the source runs out),
    so that no cache can make the measured requests look cheaper than they are.
    """
    ps = _open(cfg)
    if ps.available is not None and n > ps.available:
        raise UsageError(
            f"n={n} but the dataset has {ps.available} prompts: set n<={ps.available} "
            "or choose a larger dataset"
        )
    size = ps.available or (n + n_warmup)
    measured = list(range(n))
    warmup = [(n + i) % size for i in range(n_warmup)]
    return ps, measured, warmup
