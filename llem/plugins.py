"""Start-up hook of every llem process: load plugins; before Hydra composes, also make llem's Hydra
parts known (the registries' options, llem's launchers).

Plugins are modules that register backends (:func:`llem.backends.registry.register_backend`) or
meters when imported. They are named by the ``LLEM_PLUGINS`` environment variable (comma-separated
module names; study workers inherit it) and by the ``llem.plugins`` entry-point group of installed
distributions. The launcher is registered by hand because Hydra's plugin scan misses it in editable
installs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os

from llem.errors import UsageError

ENV_VAR = "LLEM_PLUGINS"
ENTRY_POINT_GROUP = "llem.plugins"


def plugin_modules() -> list[str]:
    """The plugin modules to import: ``LLEM_PLUGINS`` first, then entry points."""
    named = [m.strip() for m in os.environ.get(ENV_VAR, "").split(",") if m.strip()]
    points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return named + [ep.module for ep in points]


def load_plugins() -> None:
    """Import every plugin module (a module that cannot be imported is a usage error)."""
    for name in plugin_modules():
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise UsageError(f"{ENV_VAR}: cannot import plugin module '{name}': {exc}") from None


def register_plugins() -> None:
    """Load plugins, store the registries' options in Hydra's ConfigStore, then register the llem
    launcher (once)."""
    load_plugins()  # first: the launcher's default images come from the backend registry
    import contextlib

    from hydra.core.plugins import Plugins

    from hydra_plugins.llem_plugins.llem_launcher import LlemLauncher
    from llem import hydra_options

    hydra_options.store()

    plugins = Plugins.instance()
    if f"{LlemLauncher.__module__}.{LlemLauncher.__name__}" not in plugins.class_name_to_class:
        plugins.register(LlemLauncher)
    with contextlib.suppress(ImportError):  # llem_slurm needs hydra-submitit-launcher
        from hydra_plugins.llem_plugins.llem_slurm_launcher import LlemSlurmLauncher

        if f"{LlemSlurmLauncher.__module__}.LlemSlurmLauncher" not in plugins.class_name_to_class:
            plugins.register(LlemSlurmLauncher)
