"""The Hydra options built from llem's registries, not from YAML: ``backend=<name>``,
``energy=<name>`` and ``load=<name>``, each node the schema's defaults (the schema stays the only
copy). :func:`store` puts them in Hydra's ConfigStore where Hydra composes: ``llem.conf``'s
``__init__`` (Hydra imports it first) and :func:`llem.plugins.register_plugins` (after the plugins
have registered theirs). Commands that compose nothing (``llem config``, ``llem --help``) never
import Hydra for them."""

from __future__ import annotations

from llem.backends.registry import backends
from llem.energy.config import EnergyConfig
from llem.energy.registry import choices
from llem.load.config import LOADS

Node = dict[str, object]


def options() -> dict[str, dict[str, Node]]:
    """group -> option name -> node, for every registered backend, meter choice and load."""
    loads = (load().model_dump(mode="json") for load in LOADS)
    return {
        "backend": {e.name: e.defaults().model_dump(mode="json") for e in backends()},
        "energy": {c: EnergyConfig(meter=c).model_dump(mode="json") for c in choices()},
        "load": {str(node["name"]): node for node in loads},
    }


def store() -> None:
    """Store every option of :func:`options` in Hydra's ConfigStore (a stored name is replaced)."""
    from hydra.core.config_store import ConfigStore

    config_store = ConfigStore.instance()
    for group, nodes in options().items():
        for name, node in nodes.items():
            config_store.store(group=group, name=name, node=node, provider="llem")
