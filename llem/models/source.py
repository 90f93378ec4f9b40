"""Where a model comes from: the built-in tiny model, a local folder, or the Hugging Face hub.

:func:`check_model` runs in pre-flight (no torch import); :func:`resolve_model` runs in the job and
may build the built-in model.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from llem.config import ModelConfig
from llem.errors import UsageError

BUILTIN_PREFIX = "llem://"
BUILTIN_MODELS = ("tiny-llama",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ModelSource:
    path: str  # local folder or hub id, what from_pretrained receives
    kind: str  # builtin | local | hub
    local_files_only: bool  # True when the hub must not be contacted


def _kind(name: str) -> str:
    if name.startswith(BUILTIN_PREFIX):
        return "builtin"
    if (
        name.startswith(("/", ".", "~"))
        or Path(name).expanduser().exists()
        or not _HUB_ID.match(name)
    ):
        return "local"
    return "hub"


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """True when the HF hub accepts a TCP connection (False with HF_HUB_OFFLINE=1)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection(
            (url.hostname or "huggingface.co", url.port or 443), timeout=timeout_s
        ):
            return True
    except OSError:
        return False


def _in_hub_cache(repo_id: str, revision: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return isinstance(found, str)


def check_model(cfg: ModelConfig) -> None:
    """Cheap checks that the model can be found; raises :class:`UsageError` naming the fix."""
    name = cfg.name_or_path
    kind = _kind(name)
    if kind == "builtin":
        if name.removeprefix(BUILTIN_PREFIX) not in BUILTIN_MODELS:
            raise UsageError(
                f"model.name_or_path={name}: unknown built-in model; use "
                + " or ".join(BUILTIN_PREFIX + m for m in BUILTIN_MODELS)
            )
    elif kind == "local":
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise UsageError(
                f"model.name_or_path={name}: no such folder; give an existing model folder or a "
                "hub id"
            )
        from llem.models.folder import folder_problems

        problems = folder_problems(folder)
        if problems:
            raise UsageError(
                f"model.name_or_path={name} is not a complete model folder: " + "; ".join(problems)
            )
    elif not _in_hub_cache(name, cfg.revision) and not hub_reachable():
        raise UsageError(
            f"model.name_or_path={name} is not in the local Hugging Face cache and the hub is "
            "unreachable "
            "(offline): download it once with network access, or give a local folder "
            "(model.name_or_path=/path/to/model)"
        )


def model_context(cfg: ModelConfig) -> int | None:
    """The model's context in tokens from its ``config.json`` (built-in, local folder or hub
    cache), without loading anything; None when unknown here."""
    from llem.backends.prompts import CONTEXT_KEYS

    kind = _kind(cfg.name_or_path)
    if kind == "builtin":
        from llem.models.tiny import ARCH

        return int(ARCH["max_position_embeddings"])
    if kind == "local":
        config: str | None = str(Path(cfg.name_or_path).expanduser() / "config.json")
    else:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        found = try_to_load_from_cache(cfg.name_or_path, "config.json", revision=cfg.revision)
        config = found if isinstance(found, str) else None
    try:
        data = json.loads(Path(config).read_text(encoding="utf-8")) if config else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    sizes = [data.get(k) for k in CONTEXT_KEYS]
    return next((v for v in sizes if isinstance(v, int) and v > 0), None)


def resolve_model(cfg: ModelConfig) -> ModelSource:
    """The folder or hub id to load (building the built-in model on first use)."""
    check_model(cfg)
    kind = _kind(cfg.name_or_path)
    if kind == "builtin":
        from llem.models.tiny import ensure_tiny_llama

        return ModelSource(str(ensure_tiny_llama()), "builtin", True)
    if kind == "local":
        return ModelSource(str(Path(cfg.name_or_path).expanduser().resolve()), "local", True)
    return ModelSource(cfg.name_or_path, "hub", not hub_reachable())


def checkpoint_parameters(folder: Path) -> int | None:
    """Tensor elements in a folder's ``*.safetensors`` files (headers only); None without any."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with path.open("rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total
