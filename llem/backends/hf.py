"""What every backend running a Hugging Face checkpoint shares: the model source, tokenizer and HF
config, prompt preparation, loading keyword arguments (``model.revision`` included), the
random-weights warning and the :class:`~llem.result.ModelRecord`. Subclasses load and generate."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from llem.backends.base import Prompt
from llem.backends.prompts import PromptBuilder, load_tokenizer, model_context_length
from llem.models import tiny
from llem.models.source import resolve_model
from llem.result import ModelRecord

if TYPE_CHECKING:
    from llem.config import ExperimentConfig
    from llem.datasets import PromptSet

RANDOM_WEIGHTS_WARNING = (
    "random weights (llem's built-in tiny model): outputs are meaningless; "
    "the numbers measure the pipeline, not a useful model"
)


class HFKwargs(TypedDict):
    """Keyword arguments of every ``from_pretrained`` call."""

    revision: str | None
    trust_remote_code: bool
    local_files_only: bool


class HFBackend:
    """Base of the Hugging Face model backends: :meth:`prepare` and :meth:`model_record` are
    shared."""

    def __init__(self, experiment: ExperimentConfig, trust_remote_code: bool) -> None:
        self.experiment = experiment
        self.trust_remote_code = trust_remote_code
        self.source = resolve_model(experiment.model)
        self._warnings: list[str] = []
        self.chat_template_applied = False

    def hf_kwargs(self) -> HFKwargs:
        return {
            "revision": self.experiment.model.revision,
            "trust_remote_code": self.trust_remote_code,
            "local_files_only": self.source.local_files_only,
        }

    def prepare(self, prompt_set: PromptSet, indices: list[int]) -> list[Prompt]:
        """Load the tokenizer and HF config (not the weights); tokenise the prompts at ``indices``
        (chat template, truncation, context check: :mod:`llem.backends.prompts`)."""
        from transformers import AutoConfig

        self.tokenizer = load_tokenizer(self.source.path, **self.hf_kwargs())
        self.hf_config = AutoConfig.from_pretrained(self.source.path, **self.hf_kwargs())
        builder = PromptBuilder(self.tokenizer, self.experiment)
        prompts = builder.build(prompt_set, indices, self.context_length())
        self.chat_template_applied = builder.chat_template_applied
        return prompts

    def context_length(self) -> int | None:
        """The model's context in tokens (subclasses apply their engine's limit)."""
        return model_context_length(self.hf_config)

    def model_record(
        self,
        *,
        architecture: str,
        parameters: int,
        dtype: str,
        device: str,
        context_length: int | None,
    ) -> ModelRecord:
        """The loaded model as the result records it; warns when its weights are random."""
        prov = tiny.provenance(self.source.path) if self.source.kind != "hub" else None
        random_weights = bool(prov and prov.get("random_weights"))
        if random_weights and RANDOM_WEIGHTS_WARNING not in self._warnings:
            self._warnings.append(RANDOM_WEIGHTS_WARNING)
        return ModelRecord(
            name_or_path=self.experiment.model.name_or_path,
            resolved_path=self.source.path,
            source=self.source.kind,
            architecture=architecture,
            parameters=parameters,
            dtype=dtype,
            device=device,
            context_length=context_length,
            random_weights=random_weights,
            chat_template_applied=self.chat_template_applied,
            config=self.hf_config.to_dict(),
        )

    def warnings(self) -> list[str]:
        """Things the user should know about this run (precision fallbacks, random weights …)."""
        return list(self._warnings)
