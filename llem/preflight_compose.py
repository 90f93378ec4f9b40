"""Composing a command line's jobs with Hydra for the pre-flight: a composition's errors as one
short message, and a sweep's jobs as Hydra's basic sweeper would build them."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING

from llem.errors import UsageError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    ComposeFn = Callable[..., DictConfig]  # hydra.compose


def hydra_part(overrides: list[str]) -> list[str]:
    """Overrides of Hydra's own config: keys (hydra.x=…) and group choices (hydra/launcher=…)."""
    return [o for o in overrides if o.lstrip("+~").startswith(("hydra.", "hydra/"))]


def expand(hydra_cfg: DictConfig, overrides: list[str]) -> list[list[str]]:
    """The jobs of a sweep, as Hydra's basic sweeper would build them (sweeper params, then command
    line)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    params_node = hydra_cfg.sweeper.get("params")
    params = OmegaConf.to_container(params_node, resolve=False) if params_node else {}
    assert isinstance(params, dict)
    swept = [f"{k!s}={v}" for k, v in params.items()] + overrides
    try:
        parsed = OverridesParser.create().parse_overrides(swept)
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception as exc:  # grammar errors
        raise UsageError(first_line(str(exc))) from None
    return [job for batch in batches for job in batch]


# Hydra launchers that an extra installs
_LAUNCHER_EXTRAS = {
    "joblib": "joblib",
    **dict.fromkeys(("submitit_slurm", "submitit_local", "llem_slurm"), "slurm"),
}


def compose(
    compose_fn: ComposeFn, config_name: str, overrides: list[str], hydra_node: bool = False
) -> DictConfig:
    """Hydra's composition of ``overrides``; raises :class:`UsageError` with one short line."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose_fn(config_name, overrides=overrides, return_hydra_config=hydra_node)
    except MissingConfigException as exc:
        missing = exc.missing_cfg_file or ""
        group, _, option = missing.rpartition("/")
        launcher = option.removesuffix("_base")  # llem_slurm_base: defined with submitit only
        extra = _LAUNCHER_EXTRAS.get(launcher) if group == "hydra/launcher" else None
        if extra:
            raise UsageError(
                f"unknown {group} '{launcher}': not installed: pip install llenergymeasure[{extra}]"
            ) from None
        if group and exc.options is not None:
            raise UsageError(
                f"unknown {group} '{option}': choose one of {', '.join(sorted(exc.options))}"
                f" (e.g. {group}={sorted(exc.options)[0]})"
            ) from None
        raise UsageError(f"config '{config_name}' not found: {first_line(str(exc))}") from None
    except OverrideParseException as exc:
        raise UsageError(f"cannot parse override: {first_line(str(exc))}") from None
    except (HydraException, OmegaConfBaseException) as exc:
        raise UsageError(_composition_message(exc, compose_fn, config_name)) from None


def _composition_message(exc: Exception, compose_fn: ComposeFn, config_name: str) -> str:
    """Hydra's 'Could not override X' -> unknown key X, with the closest valid key."""
    text = str(exc)
    if "Could not override '" in text or "Could not append to config" in text:
        key = text.split("'")[1]
        if "To append to your default list use " in text:  # a group outside the defaults (presets)
            return f"'{key}' is added with a '+': use {text.rsplit(' use ', 1)[1].strip()}"
        parent, _, leaf = key.rpartition(".")
        hint = ""
        try:
            from omegaconf import OmegaConf

            base = compose_fn(
                config_name,
                overrides=[],
                return_hydra_config=parent == "hydra" or parent.startswith("hydra."),
            )
            node = OmegaConf.select(base, parent) if parent else base
            close = (
                difflib.get_close_matches(leaf, list(node.keys()), n=1) if node is not None else []
            )
            if close and close[0] == leaf:  # e.g. a key of llem's launcher given to another one
                hint = f" (the default {parent} has it, the one chosen has not)"
            elif close:
                hint = f" (did you mean '{'.'.join(filter(None, [parent, close[0]]))}'?)"
        except Exception:
            pass
        lister = f"llem --cfg hydra -p {parent}" if key.startswith("hydra.") else "llem --cfg job"
        return f"unknown key '{key}'{hint}: check the spelling; `{lister}` lists every key"
    return first_line(text)


def first_line(text: str) -> str:
    """The message of a Hydra/OmegaConf error: its first line, plus the next when the first only
    says where."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return text
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[1]}"
    return lines[0]
