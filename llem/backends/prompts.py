"""Turning a prompt set into token ids with a model's own tokenizer — the same for every backend.

Chat template rule (``dataset.chat_template``): ``always`` applies it (error if the model has none),
``never`` does not, ``auto`` applies it when the model has one and the dataset is chat-style.
Truncation to ``max_input_tokens`` shortens the user message, not the template around it, so the
generation prompt stays. Synthetic prompts are token ids drawn from the tokenizer's ordinary
vocabulary. The longest prompt plus ``max_new_tokens`` must fit the model's context.
``max_input_tokens=null`` truncates to the model's context minus ``max_new_tokens``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llem.backends.base import Prompt
from llem.config import ExperimentConfig
from llem.datasets import PromptSet
from llem.datasets.synthetic import synthetic_token_ids
from llem.errors import UsageError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def load_tokenizer(path: str | Path, **hf_kwargs: str | bool | None) -> PreTrainedTokenizerBase:
    """The model's tokenizer, left-padding, with a pad token (EOS when the model defines none)."""
    from transformers import AutoTokenizer

    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(path, **hf_kwargs)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_context_length(hf_config: PretrainedConfig) -> int | None:
    """Context length from an HF config object (None when it does not say)."""
    for key in CONTEXT_KEYS:
        value = getattr(hf_config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class PromptBuilder:
    """Tokenises the prompts of one experiment; ``chat_template_applied`` tells what it did."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: ExperimentConfig) -> None:
        self.tokenizer = tokenizer
        self.cfg = config
        self.chat_template_applied = False

    def build(
        self, prompt_set: PromptSet, indices: list[int], context_length: int | None
    ) -> list[Prompt]:
        prompts = (
            self._synthetic(prompt_set, indices)
            if prompt_set.synthetic
            else self._tokenise(prompt_set, indices, self._input_limit(context_length))
        )
        self._check_context(prompts, context_length)
        return prompts

    def _synthetic(self, prompt_set: PromptSet, indices: list[int]) -> list[Prompt]:
        syn = prompt_set.synthetic
        assert syn is not None
        tok = self.tokenizer
        ids = synthetic_token_ids(
            max(indices) + 1,
            syn.input_tokens,
            len(tok),
            set(tok.all_special_ids),
            syn.seed,
            tok.bos_token_id,
        )
        return [Prompt(i, tuple(ids[i])) for i in indices]

    def _use_chat_template(self, chat_style: bool) -> bool:
        mode = self.cfg.dataset.chat_template
        has = bool(getattr(self.tokenizer, "chat_template", None))
        if mode == "always" and not has:
            raise UsageError(
                f"dataset.chat_template=always but {self.cfg.model.name_or_path} has no chat "
                "template: use dataset.chat_template=auto or never"
            )
        return mode == "always" or (mode == "auto" and chat_style and has)

    def _input_limit(self, ctx: int | None) -> int:
        """Prompt length limit (tokens): max_input_tokens, or null: context minus max_new_tokens."""
        if self.cfg.max_input_tokens is not None:
            return self.cfg.max_input_tokens
        if ctx is None or ctx <= self.cfg.max_new_tokens:
            raise UsageError(
                f"max_input_tokens=null truncates to the context of {self.cfg.model.name_or_path} "
                f"minus max_new_tokens, but its context is {ctx}: set max_input_tokens=<tokens>"
            )
        return ctx - self.cfg.max_new_tokens

    def _tokenise(self, prompt_set: PromptSet, indices: list[int], limit: int) -> list[Prompt]:
        assert prompt_set.texts is not None
        self.chat_template_applied = self._use_chat_template(prompt_set.chat_style)
        prompts = []
        for i in indices:
            ids = self._encode(prompt_set.texts[i])
            truncated = len(ids) > limit
            if truncated:
                ids = (
                    self._truncate(prompt_set.texts[i], limit)
                    if self.chat_template_applied
                    else ids[:limit]
                )
            prompts.append(Prompt(i, tuple(ids), truncated))
        return prompts

    def _encode(self, text: str) -> list[int]:
        if self.chat_template_applied:
            out = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
            return list(out)
        ids: list[int] = self.tokenizer(text, verbose=False)["input_ids"]
        return ids

    def _truncate(self, text: str, limit: int) -> list[int]:
        """Shorten the user message (not the template around it) until the templated prompt fits."""
        content = self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        keep = limit - (len(self._encode("")) or 0)
        while keep > 0:
            piece = self.tokenizer.decode(content[:keep])
            assert isinstance(piece, str)  # one sequence decodes to one string
            ids = self._encode(piece)
            if len(ids) <= limit:
                return ids
            keep -= len(ids) - limit
        raise UsageError(
            f"max_input_tokens={limit} is shorter than the chat template itself: raise it"
        )

    def _check_context(self, prompts: list[Prompt], ctx: int | None) -> None:
        longest = max(p.input_tokens for p in prompts)
        if ctx is not None and longest + self.cfg.max_new_tokens > ctx:
            raise UsageError(
                f"{self.cfg.model.name_or_path} has a context of {ctx} tokens, but the longest "
                f"prompt ({longest} tokens) + max_new_tokens={self.cfg.max_new_tokens} needs "
                f"{longest + self.cfg.max_new_tokens}: lower max_input_tokens or max_new_tokens"
            )
