"""FLOPs of autoregressive generation: a closed form, and torch's FLOP counter completed on CPU.

Convention (same as ``torch.utils.flop_counter``): a multiply-add is 2 FLOPs; only matrix products
and attention are counted (norms, activations, softmax and rotary embeddings are a few % and are
not). Generation of ``T`` new tokens for a batch of ``B`` prompts left-padded to ``L`` tokens runs
one prefill forward over ``L`` positions and ``T - 1`` decode forwards of one position each,
attending to ``L + i`` cached positions; the LM head runs on the last position only (transformers'
``logits_to_keep=1``). Attention is counted over every key position, as the kernels compute it (the
causal mask saves nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Shape = Sequence[int]  # a tensor shape, as torch's FLOP formulas receive it

# model_type values whose MLP is gated (gate, up, down projections)
_GATED = {
    "llama",
    "qwen2",
    "qwen3",
    "mistral",
    "mixtral",
    "gemma",
    "gemma2",
    "phi3",
    "olmo",
    "olmo2",
    "granite",
    "smollm3",
    "cohere",
}


@dataclass(frozen=True)
class DecoderShape:
    """The dimensions of a decoder-only transformer that decide its FLOPs."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    gated_mlp: bool

    def linear_per_position(self) -> int:
        """Projection + MLP FLOPs for one position through all layers (LM head excluded)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        attn_proj = 2 * self.hidden * (q + 2 * kv) + 2 * q * self.hidden
        mlp = 2 * self.hidden * self.intermediate * (3 if self.gated_mlp else 2)
        return self.layers * (attn_proj + mlp)

    def attention(self, queries: int, keys: int) -> int:
        """QK^T and AV FLOPs for ``queries`` positions against ``keys`` positions, all layers."""
        return self.layers * 4 * queries * keys * self.heads * self.head_dim

    def generate(self, batch: int, input_len: int, new_tokens: int) -> int:
        """One ``generate``: ``batch`` prompts padded to ``input_len``, ``new_tokens`` steps."""
        if new_tokens < 1:
            return 0
        head = 2 * self.hidden * self.vocab
        prefill = (
            input_len * self.linear_per_position() + self.attention(input_len, input_len) + head
        )
        decode = sum(
            self.linear_per_position() + self.attention(1, input_len + i) + head
            for i in range(1, new_tokens)
        )
        return batch * (prefill + decode)


def _required(config: Mapping[str, object], *keys: str) -> list[int] | None:
    """The integer values of ``keys`` in ``config``; None when any is missing or not an integer."""
    values = [config.get(k) for k in keys]
    ints = [v for v in values if isinstance(v, int)]
    return ints if len(ints) == len(keys) else None


def _optional(config: Mapping[str, object], key: str, default: int) -> int:
    """``config[key]`` if a non-zero integer, else ``default`` (HF writes null or 0 when unset)."""
    value = config.get(key)
    return value if isinstance(value, int) and value else default


def decoder_shape(config: Mapping[str, object]) -> DecoderShape | None:
    """The shape in an HF ``config.json`` dict; None for architectures without a formula here."""
    mt = config.get("model_type")
    if mt == "gpt2":
        dims = _required(config, "n_embd", "n_layer", "n_head", "vocab_size")
        if dims is None:
            return None
        h, layers, heads, vocab = dims
        return DecoderShape(
            h,
            layers,
            heads,
            heads,
            h // heads,
            _optional(config, "n_inner", 4 * h),
            vocab,
            gated_mlp=False,
        )
    if mt not in _GATED:
        return None
    dims = _required(
        config,
        "hidden_size",
        "num_attention_heads",
        "num_hidden_layers",
        "intermediate_size",
        "vocab_size",
    )
    if dims is None:
        return None
    h, heads, layers, intermediate, vocab = dims
    return DecoderShape(
        hidden=h,
        layers=layers,
        heads=heads,
        kv_heads=_optional(config, "num_key_value_heads", heads),
        head_dim=_optional(config, "head_dim", h // heads),
        intermediate=intermediate,
        vocab=vocab,
        gated_mlp=True,
    )


def analytic_flops(config: Mapping[str, object], batches: list[tuple[int, int, int]]) -> int | None:
    """Closed-form FLOPs of ``batches`` given as (batch size, padded input length, new tokens)."""
    shape = decoder_shape(config)
    if shape is None:
        return None
    return sum(shape.generate(b, L, t) for b, L, t in batches)


def register_cpu_sdpa_formula() -> None:
    """Give torch's FLOP counter a formula for CPU flash attention (it counts 0 otherwise)."""
    import torch
    from torch.utils.flop_counter import flop_registry, register_flop_formula, sdpa_flop_count

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or op in flop_registry or op.default in flop_registry:
        return

    def cpu_sdpa(
        query_shape: Shape, key_shape: Shape, value_shape: Shape, *args: object, **kwargs: object
    ) -> int:
        # torch leaves sdpa_flop_count unannotated
        return int(sdpa_flop_count(query_shape, key_shape, value_shape))  # type: ignore[no-untyped-call]

    register_flop_formula(op)(cpu_sdpa)
