"""Validating a sweep's jobs with one Hydra composition per distinct set of composed overrides.

Hydra composes a job in two steps: the defaults list (the config group choices: ``backend=vllm``,
``+experiment=x``) gives a config, then the job's key overrides are applied to it in their order
(``ConfigLoaderImpl._apply_overrides_to_config``). A *plain* override, ``key=value`` with ``key`` an
existing untyped, writable leaf and ``value`` a number, boolean, null or a string without ``$`` and
other than ``???``, is an assignment whose outcome depends on nothing else: Hydra stores the value
as it is. So the jobs that differ only in plain overrides share the rest of their composition: it
runs once (every other override of the job, in its order), is turned into plain containers, and
each job's plain values are written into a copy and validated against the schema directly.

A job takes Hydra's own composition instead when any of this does not hold: its overrides do not
parse, a plain key is also a config group, a plain key overlaps a key that another (``+``, ``~``,
list, dict or interpolated) override of the job sets (their order would matter), the shared config
holds an interpolation (``${...}``, resolved per job by OmegaConf) or a missing value the job does
not set, or the shared composition fails (Hydra then names the first error of the whole job).
tests/test_faults_bounds.py compares both ways key by key."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llem.config import ExperimentConfig, validate, validate_data
from llem.errors import UsageError

if TYPE_CHECKING:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import DictConfig

Primitive = str | int | float | bool | None
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")
_MISSING = "???"  # OmegaConf's missing value


@dataclass(frozen=True)
class _Override:
    """One override string, parsed once: a plain assignment, or the key another override sets."""

    plain: tuple[str, Primitive] | None  # (dotted key, value) of a plain override
    key: str | None  # the key a non-plain key override sets (None for a group or hydra override)


@dataclass(frozen=True)
class _Shared:
    """A composition shared by the jobs with the same non-plain overrides."""

    data: dict[str, object]  # the composed experiment as plain containers
    leaves: frozenset[str]  # dotted keys of its untyped, writable leaves
    missing: frozenset[str]  # dotted keys whose value is missing (???)


class SweepValidator:
    """Validates jobs (lists of override strings); :meth:`validate` raises :class:`UsageError`
    with the message Hydra's composition of the job, then :func:`llem.config.validate`, gives."""

    def __init__(
        self,
        compose_job: Callable[[list[str]], DictConfig],
        is_group: Callable[[str], bool],
        searchpath: frozenset[str],
        per_job: bool = False,
    ) -> None:
        self.compose_job = compose_job  # Hydra's composition (hydra node dropped)
        self.is_group = is_group  # whether Hydra reads a key as a config group
        self.searchpath = searchpath  # the hydra.searchpath overrides is_group was built with
        self.per_job = per_job  # compose every job whole (the reference for the fast way)
        self.compositions = 0  # Hydra compositions run, shared or per job
        self._parsed: dict[str, _Override | None] = {}
        self._groups: dict[str, bool] = {}  # is_group's answers (it reads the file system)
        self._parser: OverridesParser | None = None
        self._shared: dict[tuple[str, ...], _Shared | None] = {}

    def validate(self, job: list[str]) -> ExperimentConfig:
        data = None if self.per_job else self._fast(job)
        if data is not None:
            return validate_data(data)
        self.compositions += 1
        return validate(self.compose_job(job))

    def _fast(self, job: list[str]) -> dict[str, object] | None:
        """The job's experiment as plain containers, or None where Hydra must compose it."""
        parsed = [self._parse(o) for o in job]
        if any(p is None for p in parsed):
            return None
        plain = [p.plain for p in parsed if p is not None and p.plain is not None]
        others = {p.key for p in parsed if p is not None and p.key is not None}
        if any(_overlap(key, other) for key, _ in plain for other in others):
            return None
        rest = tuple(o for o, p in zip(job, parsed, strict=True) if p is not None and not p.plain)
        shared = self._shared_by(rest)
        if shared is None or any(key not in shared.leaves for key, _ in plain):
            return None
        if shared.missing - {key for key, _ in plain}:
            return None
        data = shared.data
        for key, value in plain:
            data = _assign(data, key.split("."), value)
        return data

    def _parse(self, override: str) -> _Override | None:
        if override not in self._parsed:
            self._parsed[override] = self._classify(override)
        return self._parsed[override]

    def _classify(self, override: str) -> _Override | None:
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.core.override_parser.types import OverrideType

        simple = simple_override(override)
        if simple is not None and not simple[0].startswith("hydra."):
            return _Override(None, None) if self._group(simple[0]) else _Override(simple, None)
        if self._parser is None:
            self._parser = OverridesParser.create()
        try:
            parsed = self._parser.parse_override(override)
        except Exception:  # grammar errors: Hydra's composition names them
            return None
        key = parsed.key_or_group
        if parsed.is_hydra_override():  # composed with the shared part
            known = {str(self._parser.parse_override(o).value()) for o in self.searchpath}
            if key == "hydra.searchpath" and str(parsed.value()) not in known:
                return None  # another search path: other config groups
            return _Override(None, None)
        value = parsed.value()
        if self._group(key) and not isinstance(value, dict):  # Hydra: a group choice
            return _Override(None, None)
        if (
            parsed.type == OverrideType.CHANGE
            and parsed.package is None
            and not self._group(key)
            and _KEY.fullmatch(key)
            and _is_plain(value)
        ):
            assert value is None or isinstance(value, str | int | float | bool)
            return _Override((key, value), None)
        return _Override(None, key)

    def _group(self, key: str) -> bool:
        if key not in self._groups:
            self._groups[key] = self.is_group(key)
        return self._groups[key]

    def _shared_by(self, rest: tuple[str, ...]) -> _Shared | None:
        if rest not in self._shared:
            self._shared[rest] = self._compose_shared(list(rest))
        return self._shared[rest]

    def _compose_shared(self, overrides: list[str]) -> _Shared | None:
        from omegaconf import OmegaConf

        try:
            composed = self.compose_job(overrides)
        except UsageError:
            return None  # each job is composed whole, so that Hydra names its first error
        finally:
            self.compositions += 1
        data = OmegaConf.to_container(composed, resolve=False, throw_on_missing=False)
        assert isinstance(data, dict)
        if any("$" in text for text in _strings(data)):
            return None
        return _Shared(
            {str(k): v for k, v in data.items()},
            frozenset(_writable_leaves(composed, "")),
            frozenset(_missing(data, "")),
        )


_SIMPLE = re.compile(
    r"(?P<key>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*)="
    r"(?:(?P<int>[+-]?(?:0|[1-9][0-9]*))|(?P<float>[+-]?(?:0|[1-9][0-9]*)\.[0-9]+)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_-]*))"
)
_WORDS: dict[str, Primitive] = {"true": True, "false": False, "null": None}
_FLOAT_WORDS = {"inf", "nan"}


def simple_override(text: str) -> tuple[str, Primitive] | None:
    """``key=value`` for the simplest overrides (an integer, a decimal, a word), read as Hydra's
    override grammar reads them, without its parser (milliseconds each); None for anything else.
    tests/test_faults_bounds.py checks it against Hydra's parser."""
    match = _SIMPLE.fullmatch(text)
    if match is None:
        return None
    key = match["key"]
    if match["int"] is not None:
        return key, int(match["int"])
    if match["float"] is not None:
        return key, float(match["float"])
    word = match["word"]
    if word.lower() in _FLOAT_WORDS:
        return None  # Hydra's inf/nan: left to its parser
    return key, _WORDS.get(word.lower(), word)


def _is_plain(value: object) -> bool:
    if isinstance(value, str):
        return "$" not in value and value != _MISSING
    return value is None or type(value) in (int, float, bool)


def _overlap(key: str, other: str) -> bool:
    return key == other or key.startswith(f"{other}.") or other.startswith(f"{key}.")


def _assign(data: dict[str, object], path: list[str], value: Primitive) -> dict[str, object]:
    """A copy of ``data`` with ``path`` set to ``value`` (untouched branches shared)."""
    head, *tail = path
    copy = dict(data)
    if tail:
        child = copy[head]
        assert isinstance(child, dict)
        copy[head] = _assign(child, tail, value)
    else:
        copy[head] = value
    return copy


def _strings(node: object) -> Iterator[str]:
    """Every string (keys included) in nested containers."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _missing(node: object, key: str) -> Iterator[str]:
    """Dotted keys of missing values (``[i]`` inside lists: no plain override sets those)."""
    if node == _MISSING:
        yield key
    elif isinstance(node, dict):
        for name, value in node.items():
            yield from _missing(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _missing(item, f"{key}[{i}]")


def _writable_leaves(node: DictConfig, prefix: str) -> Iterator[str]:
    """Dotted keys of ``node``'s untyped, writable value nodes (the ones Hydra sets as given)."""
    from omegaconf import AnyNode, DictConfig, OmegaConf

    for key in node:
        if not isinstance(key, str) or not _KEY.fullmatch(key) or "." in key:
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not (child._is_none() or child._is_missing()):
            yield from _writable_leaves(child, f"{prefix}{key}.")
        elif isinstance(child, AnyNode) and not OmegaConf.is_readonly(child):
            yield f"{prefix}{key}"
