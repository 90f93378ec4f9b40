"""Make llem's Hydra plugins known even where Hydra's plugin scan misses them (editable installs)."""

from __future__ import annotations


def register_plugins() -> None:
    """Register the llem launcher (and its ConfigStore entry ``hydra/launcher=llem``) once per process."""
    import contextlib

    from hydra.core.plugins import Plugins

    from hydra_plugins.llem_plugins.llem_launcher import LlemLauncher

    plugins = Plugins.instance()
    if f"{LlemLauncher.__module__}.{LlemLauncher.__name__}" not in plugins.class_name_to_class:
        plugins.register(LlemLauncher)
    with contextlib.suppress(ImportError):  # llem_slurm needs hydra-submitit-launcher
        from hydra_plugins.llem_plugins.llem_slurm_launcher import LlemSlurmLauncher

        if f"{LlemSlurmLauncher.__module__}.LlemSlurmLauncher" not in plugins.class_name_to_class:
            plugins.register(LlemSlurmLauncher)
