"""OmegaConf resolvers used by the packaged config (``${llem.slug:...}``,
``${llem.unique_dir:...}``)."""

from __future__ import annotations

from omegaconf import OmegaConf

from llem.paths import claim_unique_dir, slugify


def _slug(name_or_path: str, slug: str | None = None) -> str:
    return slug or slugify(name_or_path)


def register() -> None:
    """Register llem's resolvers once per process (cached: a run folder is claimed exactly once)."""
    if not OmegaConf.has_resolver("llem.slug"):
        OmegaConf.register_new_resolver("llem.slug", _slug, use_cache=True)
        OmegaConf.register_new_resolver("llem.unique_dir", claim_unique_dir, use_cache=True)
