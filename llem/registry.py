"""The one registry type behind every axis llem names by a string: backends, meters, servers,
loads, datasets and scenarios.

Modelled on lm-evaluation-harness's registry: entries are added by name (llem's own at import of
their axis's registry module, plugins from modules named by ``LLEM_PLUGINS`` or the ``llem.plugins``
entry-point group, see :mod:`llem.plugins`); code behind an entry stays unimported until a job needs
it (a ``"module:attr"`` reference, loaded by :func:`load_ref`, which checks the loaded object
against the axis's base class instead of trusting it). One duplicate rule for every axis:
registering an equal entry again is a no-op (a plugin module imported twice), a different entry
under a taken name is an error. :meth:`Registry.freeze` ends registration.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Generic, TypeVar

E = TypeVar("E")
T = TypeVar("T")


class Registry(Generic[E]):
    """Named entries of one kind, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "backend", "meter", ... : how messages name an entry
        self._entries: dict[str, E] = {}
        self._frozen = False

    def add(self, name: str, entry: E) -> E:
        """Register ``entry`` as ``name``; returns it. Raises :class:`ValueError` for a different
        entry under a taken name or after :meth:`freeze`."""
        old = self._entries.get(name)
        if old is not None and old == entry:
            return entry
        if self._frozen:
            raise ValueError(f"the {self.kind} registry is frozen: cannot add {name!r}")
        if old is not None:
            raise ValueError(f"{self.kind} {name!r} is already registered (by {_origin(old)})")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> E:
        """The entry ``name``; a :class:`KeyError` lists the registered names."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}: registered are {known}") from None

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[E]:
        return list(self._entries.values())

    def freeze(self) -> None:
        """No more entries (llem calls it once plugins are loaded)."""
        self._frozen = True

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[E]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)


def _origin(entry: object) -> str:
    return type(entry).__module__ + "." + type(entry).__qualname__


def import_ref(ref: str) -> object:
    """The object a ``"module:attr"`` reference names (imported now)."""
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{ref!r} is not a 'module:attr' reference")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_ref(ref: str, base: type[T]) -> type[T]:
    """The class ``ref`` names, checked against ``base``: a subclass of it, or, when ``base`` is a
    :class:`typing.Protocol`, a class with every method the protocol declares (a
    :class:`TypeError` names what is missing). mypy flags a Protocol passed as ``base``
    (``type-abstract``): callers silence exactly that code."""
    obj = import_ref(ref)
    where = f"{base.__module__}.{base.__name__}"
    if not isinstance(obj, type):
        raise TypeError(f"{ref} is {obj!r}, not a class implementing {where}")
    if getattr(base, "_is_protocol", False):
        missing = [m for m in protocol_methods(base) if not callable(getattr(obj, m, None))]
        if missing:
            raise TypeError(f"{ref} does not implement {where}: no {', '.join(missing)}")
        return obj  # checked member by member above
    if not issubclass(obj, base):
        raise TypeError(f"{ref} is {obj!r}, not a subclass of {where}")
    return obj


def protocol_methods(base: type) -> list[str]:
    """The public methods a protocol class declares (its own and its protocol bases')."""
    names: list[str] = []
    for klass in reversed(base.__mro__):
        if getattr(klass, "_is_protocol", False) and klass is not base.__mro__[-1]:
            names += [n for n, v in vars(klass).items() if callable(v) and not n.startswith("_")]
    return sorted(set(names))
