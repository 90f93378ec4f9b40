"""The ``load`` group's Hydra options (``load=batch|poisson|concurrency``), stored from the schema's
defaults so the schema stays the only copy."""

from __future__ import annotations

from llem.load.config import BatchLoad, ConcurrencyLoad, PoissonLoad

LOADS = (BatchLoad, PoissonLoad, ConcurrencyLoad)


def store_hydra_options() -> None:
    """Store each load's defaults in Hydra's ConfigStore as option ``load=<name>``."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for load in LOADS:
        node = load().model_dump(mode="json")
        store.store(group="load", name=str(node["name"]), node=node, provider="llem")
