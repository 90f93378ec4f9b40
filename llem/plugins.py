"""Make llem's Hydra plugins known even where Hydra's plugin scan misses them (editable
installs), after importing the plugin modules named in ``LLEM_PLUGINS`` (comma-separated; study
workers inherit it)."""

from __future__ import annotations

import importlib
import os

from llem.errors import UsageError

ENV_VAR = "LLEM_PLUGINS"


def load_plugins() -> None:
    """Import every module named in ``LLEM_PLUGINS`` (one that fails to import: a usage error)."""
    for name in (m.strip() for m in os.environ.get(ENV_VAR, "").split(",")):
        if name:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise UsageError(
                    f"{ENV_VAR}: cannot import plugin module '{name}': {exc}"
                ) from None


def register_plugins() -> None:
    """Load plugins; register the llem launcher (and ``hydra/launcher=llem``) once per process."""
    load_plugins()
    from hydra.core.plugins import Plugins

    from hydra_plugins.llem_plugins.llem_launcher import LlemLauncher

    plugins = Plugins.instance()
    if f"{LlemLauncher.__module__}.{LlemLauncher.__name__}" not in plugins.class_name_to_class:
        plugins.register(LlemLauncher)
