"""The AI Energy Score text-generation prompt set (``AIEnergyScore/text_generation``, Apache-2.0).

1,000 prompts sampled from WikiText, OSCAR and UltraChat, pinned to a dataset commit. Sources, in
order: ``dataset.path`` (a local .jsonl/.csv/.parquet copy), llem's cache, the Hugging Face hub
(then cached as JSON lines). The hub download is real code but is not exercised by the tests (no hub
access there).
"""

from __future__ import annotations

from pathlib import Path

from llem.config import AIEnergyScoreDataset
from llem.datasets.files import read_prompts
from llem.errors import UsageError
from llem.paths import cache_dir, write_atomic

DATA_SUFFIXES = (".parquet", ".csv", ".jsonl")


def cache_file(cfg: AIEnergyScoreDataset) -> Path:
    return cache_dir("datasets") / f"{cfg.hub_id.replace('/', '--')}-{cfg.revision[:12]}.jsonl"


def load_aienergyscore(cfg: AIEnergyScoreDataset) -> tuple[list[str], str]:
    """(prompts, where they came from)."""
    if cfg.path:
        return read_prompts(
            cfg.path, cfg.field, "dataset.path", fallback_fields=("prompt", "text")
        ), cfg.path
    cached = cache_file(cfg)
    if cached.is_file():
        return read_prompts(str(cached), "prompt", "cached dataset"), f"cache {cached}"
    from llem.models.source import hub_reachable

    if not hub_reachable():
        raise UsageError(
            f"dataset=aienergyscore: no network and no cached copy ({cached}). Run once with "
            "network access "
            f"to download and cache {cfg.hub_id}, or download it yourself and pass "
            "dataset.path=<file.jsonl>"
        )
    texts = _download(cfg)
    import json

    write_atomic(cached, "".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    return texts, f"hub {cfg.hub_id}@{cfg.revision[:12]}"


def _download(cfg: AIEnergyScoreDataset) -> list[str]:
    try:
        from huggingface_hub import hf_hub_download, list_repo_files
    except ImportError:
        raise UsageError(
            "dataset=aienergyscore from the hub needs huggingface_hub: "
            "pip install llenergymeasure[pytorch] (or pass dataset.path=<file>)"
        ) from None
    files = sorted(
        f
        for f in list_repo_files(cfg.hub_id, repo_type="dataset", revision=cfg.revision)
        if f.endswith(DATA_SUFFIXES)
    )
    if not files:
        raise UsageError(
            f"{cfg.hub_id}@{cfg.revision}: no data file found; pass dataset.path=<file>"
        )
    texts: list[str] = []
    for name in files:
        local = hf_hub_download(cfg.hub_id, name, repo_type="dataset", revision=cfg.revision)
        texts += read_prompts(local, cfg.field, f"{cfg.hub_id}/{name}", fallback_fields=("prompt",))
    return texts
