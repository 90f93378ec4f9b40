"""``llem --help`` without Hydra: the text Hydra's app help renders for the packaged experiment,
built from what Hydra builds it from (``hydra.help`` in conf/llem.yaml, the groups of the conf
folder and of :mod:`llem.hydra_options`, the default of each group) but without composing once per
config group. Only a plain ``--help`` comes here; tests/test_cli.py checks it equals Hydra's."""

from __future__ import annotations

import importlib.util
import string
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from llem.hydra_options import options
from llem.plugins import load_plugins

PRIMARY = "llem.yaml"


def conf_dir() -> Path:
    """The packaged conf folder (found, not imported: importing ``llem.conf`` imports Hydra)."""
    spec = importlib.util.find_spec("llem.conf")
    assert spec is not None and spec.submodule_search_locations is not None
    return Path(next(iter(spec.submodule_search_locations)))


def groups(conf: Path) -> dict[str, dict[str, object]]:
    """Every config group outside ``hydra/``: option name -> its node (a conf folder's YAML wins
    over a stored option of the same name, as in Hydra's search path)."""
    found: dict[str, dict[str, object]] = {g: dict(o) for g, o in options().items()}
    for folder in sorted(conf.iterdir()):
        if folder.is_dir() and folder.name != "hydra":
            for path in sorted(folder.glob("*.yaml")):
                found.setdefault(folder.name, {})[path.stem] = OmegaConf.load(path)
    return found


def composed(primary: DictConfig, options_of: dict[str, dict[str, object]]) -> DictConfig:
    """The packaged experiment as Hydra composes it, without its ``hydra`` node: the defaults list
    in order (``override hydra/...`` entries concern only that node), ``_self_`` where listed."""
    own = OmegaConf.masked_copy(
        primary, [str(k) for k in primary if k not in ("defaults", "hydra")]
    )
    cfg = OmegaConf.create()
    for entry in primary.defaults:
        if entry == "_self_":
            cfg.merge_with(own)
            continue
        ((group, option),) = entry.items()
        if not str(group).startswith("override hydra/"):
            cfg.merge_with({group: options_of[group][option]})
    return cfg


def render() -> str:
    """The help text (plugins are loaded first: their backends and meters are listed)."""
    load_plugins()
    conf = conf_dir()
    primary = OmegaConf.load(conf / PRIMARY)
    assert isinstance(primary, DictConfig)
    options_of = groups(conf)
    listing = "".join(f"{g}: {', '.join(sorted(options_of[g]))}\n" for g in sorted(options_of))
    return string.Template(primary.hydra.help.template).substitute(
        APP_CONFIG_GROUPS=listing, CONFIG=OmegaConf.to_yaml(composed(primary, options_of))
    )
