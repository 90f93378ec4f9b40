"""Hydra's command line, read by Hydra's own parser: flags and overrides in any order.

Hydra reads its arguments with ``argparse.parse_args``, which takes the overrides (a ``nargs="*"``
positional) in one run: an override written before ``-m`` (``llem backend=pytorch -m batch=1,8``)
ends that run and the later ones are "unrecognized arguments". Here the same parser (Hydra's
``get_args_parser``) reads the line with ``parse_intermixed_args``, and :meth:`CommandLine.argv`
writes it back in the order Hydra reads: its flags first (``--name`` or ``--name=value``), then the
overrides in the order given. The pre-flight and the Hydra app both use that one reading.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from llem.errors import UsageError

# Hydra's flags that print something instead of running (Hydra refuses them together with -m)
PRINT_ONLY = ("cfg", "info", "shell_completion")
# ... and the others after which no new experiment is composed (the pre-flight checks nothing)
UNCHECKED = ("help", "hydra_help", "experimental_rerun")
# ``--info``'s value is optional: ``--info key=v`` would read the override as that value
OPTIONAL_VALUE = ("--info", "-i")


@dataclass
class CommandLine:
    """The parts of a Hydra command line that decide what gets composed, and the line itself."""

    overrides: list[str] = field(default_factory=list)
    multirun: bool = False
    passthrough: bool = False  # only prints something (``--cfg``, ``--help``, ...): nothing runs
    config_path: str | None = None
    config_name: str = "llem"
    config_dir: str | None = None
    flags: list[str] = field(default_factory=list)  # Hydra's flags, as ``--name[=value]``

    def argv(self) -> list[str]:
        """The command line as Hydra's ``parse_args`` reads it: flags, then overrides."""
        return [*self.flags, *self.overrides]


def flag_name(dest: str) -> str:
    """Hydra's long option for an argparse destination (``config_path`` -> ``--config-path``)."""
    return "--" + dest.replace("_", "-")


def parse(args: list[str]) -> CommandLine:
    """Read ``args`` as Hydra does, wherever its flags stand; a flag Hydra does not know, a bad
    value, or two commands at once (``-m`` with ``--cfg``) is a :class:`UsageError`."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.exit_on_error = False
    parser.allow_abbrev = False  # Hydra's documented spellings only: no ambiguous prefixes
    words = list(args)
    for i, word in enumerate(words[:-1]):
        if word in OPTIONAL_VALUE and "=" in words[i + 1]:
            words[i] = f"{word}=all"  # what Hydra's bare --info means
    try:
        ns, unknown = parser.parse_known_intermixed_args(words)
    except argparse.ArgumentError as exc:
        raise UsageError(f"{exc} (llem --hydra-help lists Hydra's flags)") from None
    if unknown:
        raise UsageError(
            f"unknown flag {' '.join(unknown)}: overrides are key=value; "
            "llem --hydra-help lists Hydra's flags"
        )
    options: dict[str, str | bool | None] = {
        k: v for k, v in vars(ns).items() if k != "overrides" and v not in (None, False)
    }
    printing = [flag_name(k) for k in PRINT_ONLY if k in options]
    if ns.multirun and printing:
        raise UsageError(
            f"-m cannot be combined with {'/'.join(printing)}: drop -m to print the configuration"
        )
    return CommandLine(
        overrides=list(ns.overrides),
        multirun=bool(ns.multirun),
        passthrough=bool(printing) or any(k in options for k in UNCHECKED),
        config_path=ns.config_path,
        config_name=ns.config_name or "llem",
        config_dir=ns.config_dir,
        flags=[flag_name(k) if v is True else f"{flag_name(k)}={v}" for k, v in options.items()],
    )
