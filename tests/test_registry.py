"""The generic registry: one duplicate rule, lazy references checked against their base."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pytest

from llem.registry import Registry, import_ref, load_ref, protocol_methods


@dataclass(frozen=True)
class Entry:
    name: str
    ref: str


class Greeter(Protocol):
    name: str

    def greet(self) -> str: ...

    def part(self) -> int: ...


class Good:
    name = "good"

    def greet(self) -> str:
        return "hi"

    def part(self) -> int:
        return 1


class Half:
    def greet(self) -> str:
        return "hi"


class Base:
    pass


class Child(Base):
    pass


def test_equal_entry_twice_is_a_no_op_a_different_one_raises() -> None:
    reg: Registry[Entry] = Registry("widget")
    a = reg.add("a", Entry("a", "x:y"))
    assert reg.add("a", Entry("a", "x:y")) == a
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", Entry("a", "other:z"))
    assert reg.names() == ["a"] and len(reg) == 1 and "a" in reg


def test_unknown_name_lists_the_registered_ones() -> None:
    reg: Registry[Entry] = Registry("widget")
    reg.add("a", Entry("a", "x:y"))
    reg.add("b", Entry("b", "x:y"))
    with pytest.raises(KeyError, match="unknown widget 'c': registered are a, b"):
        reg.get("c")
    assert [e.name for e in reg] == ["a", "b"]


def test_freeze_refuses_new_entries_but_not_repeats() -> None:
    reg: Registry[Entry] = Registry("widget")
    reg.add("a", Entry("a", "x:y"))
    reg.freeze()
    reg.add("a", Entry("a", "x:y"))
    with pytest.raises(ValueError, match="frozen"):
        reg.add("b", Entry("b", "x:y"))


def test_load_ref_checks_subclass_and_protocol_methods() -> None:
    here = __name__
    assert load_ref(f"{here}:Child", Base) is Child
    with pytest.raises(TypeError, match="not a subclass"):
        load_ref(f"{here}:Good", Base)
    assert load_ref(f"{here}:Good", Greeter) is Good  # type: ignore[type-abstract]
    with pytest.raises(TypeError, match="no part"):
        load_ref(f"{here}:Half", Greeter)  # type: ignore[type-abstract]
    with pytest.raises(TypeError, match="not a class"):
        not_a_class = f"{here}:test_freeze_refuses_new_entries_but_not_repeats"
        load_ref(not_a_class, Greeter)  # type: ignore[type-abstract]
    assert protocol_methods(Greeter) == ["greet", "part"]


def test_import_ref_form() -> None:
    assert import_ref("llem.registry:Registry.add") is Registry.add
    with pytest.raises(ValueError, match="not a 'module:attr'"):
        import_ref("llem.registry")
