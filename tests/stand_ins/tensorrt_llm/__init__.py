"""A stand-in for ``tensorrt_llm`` (which cannot be installed here).

The two classes llem calls, recording their arguments and producing outputs of exactly the requested
length, so that llem's config mapping and result assembly can be tested. It performs no inference.
"""

from __future__ import annotations

from types import SimpleNamespace

CALLS: list[tuple[str, dict]] = []


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        CALLS.append(("SamplingParams", kwargs))


class LLM:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        CALLS.append(("LLM", kwargs))

    def generate(self, inputs, sampling_params, use_tqdm=True):
        n = sampling_params.kwargs["max_tokens"]
        return [
            SimpleNamespace(
                prompt_token_ids=list(ids), outputs=[SimpleNamespace(token_ids=[7] * n)]
            )
            for ids in inputs
        ]

    def shutdown(self):
        CALLS.append(("shutdown", {}))
