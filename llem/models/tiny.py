"""The built-in model ``llem://tiny-llama``: a real Llama-architecture causal LM, RANDOM weights.

Built locally and deterministically (fixed seeds, no download): a byte-level BPE tokenizer trained
in-process on llem's built-in prompts, and ``LlamaForCausalLM`` initialised from a fixed seed. Saved
once as a normal HF model folder in llem's cache and then loaded through ``from_pretrained`` like
any other model. Its outputs are meaningless; it exists so that ``llem`` measures a real transformer
anywhere in seconds. A ``llem_model.json`` provenance file in the folder records that the weights
are random.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TypedDict

from pydantic import JsonValue

from llem.paths import cache_dir

log = logging.getLogger(__name__)

BUILD_VERSION = 1
SEED = 0
PROVENANCE_FILE = "llem_model.json"


class Arch(TypedDict):
    """The ``LlamaConfig`` arguments that shape the tiny model."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    max_position_embeddings: int  # tokens
    rope_theta: float
    tie_word_embeddings: bool


# ~1.0M parameters: 2 layers, grouped-query attention (4 query heads, 2 KV heads), gated SiLU MLP.
ARCH: Arch = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 512,
    "max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}
TOKENIZER_VOCAB = 2048
SPECIAL = {"bos": "<|begin|>", "eos": "<|end|>", "pad": "<|pad|>"}
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token "
    "}}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _spec_key() -> str:
    corpus = hashlib.sha256("\n".join(_training_text()).encode()).hexdigest()
    spec = {
        "v": BUILD_VERSION,
        "arch": ARCH,
        "vocab": TOKENIZER_VOCAB,
        "seed": SEED,
        "tpl": CHAT_TEMPLATE,
        "corpus": corpus,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def ensure_tiny_llama() -> Path:
    """The built model folder, built on first use (atomic: safe with concurrent jobs); a damaged
    one is rebuilt."""
    from llem.models.folder import folder_problems

    target = cache_dir("models") / f"tiny-llama-{_spec_key()}"
    if (target / PROVENANCE_FILE).is_file():
        problems = folder_problems(target)
        if not problems:
            return target
        # a damaged cache (truncated weights, deleted files): rebuilt, never loaded
        log.warning("rebuilding the built-in model: %s", "; ".join(problems))
        shutil.rmtree(target, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-llama-", dir=target.parent))
    try:
        build(tmp)
        os.replace(tmp, target)  # another job may have won the race: its folder is identical
    except OSError:
        if not (target / PROVENANCE_FILE).is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _training_text() -> list[str]:
    from llem.datasets.builtin import builtin_texts

    return builtin_texts()


def build(folder: Path) -> None:
    """Write the tokenizer, config and random weights of the tiny model into ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = list(SPECIAL.values())
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    bos_id = tok.token_to_id(SPECIAL["bos"])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL['bos']} $A",
        pair=f"{SPECIAL['bos']} $A $B",
        special_tokens=[(SPECIAL["bos"], bos_id)],
    )
    # transformers leaves the fast tokenizer's __init__ unannotated
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token=SPECIAL["bos"],
        eos_token=SPECIAL["eos"],
        pad_token=SPECIAL["pad"],
        padding_side="left",
        model_max_length=ARCH["max_position_embeddings"],
        chat_template=CHAT_TEMPLATE,
    )
    vocab = -(-len(tokenizer) // 64) * 64  # round up: embedding rows for every token id
    # transformers accepts the legacy rope_theta at run time (its @strict wrapper); the dataclass
    # signature it declares lists only rope_parameters
    config = LlamaConfig(  # type: ignore[misc]
        **ARCH,
        vocab_size=vocab,
        bos_token_id=bos_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    provenance = {
        "builder": "llem.models.tiny",
        "build_version": BUILD_VERSION,
        "seed": SEED,
        "random_weights": True,
        "parameters": sum(p.numel() for p in model.parameters()),
        "note": (
            "random weights: generated text is meaningless; "
            "use for measuring the pipeline, not a model"
        ),
    }
    (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")


def provenance(folder: str | Path) -> dict[str, JsonValue] | None:
    """The provenance record of a llem-built model folder, or None for any other model."""
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if isinstance(record, dict) else None
