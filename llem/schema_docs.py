"""The reference tables of docs/, generated from the schema, the Result model and the backend
registry.

A table lives in a Markdown file between ``<!-- llem-docs:NAME -->`` and
``<!-- /llem-docs:NAME -->``;
``python -m llem.schema_docs [FILE ...]`` rewrites every such block (by default in
docs/configuration.md and docs/results-reference.md), ``--check`` only says whether one differs (a
test runs the check, so the docs cannot drift from the schema)."""

from __future__ import annotations

import json
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from llem.backends.registry import backends
from llem.config import ExperimentConfig, ModelConfig
from llem.load.config import LOADS
from llem.result import Result

_GROUPS = ("backend", "model", "dataset", "energy", "load")
DOCS = Path(__file__).resolve().parents[1] / "docs"
DEFAULT_FILES = (
    DOCS / "configuration.md",
    DOCS / "results-reference.md",
    DOCS / "serving.md",
)
_BLOCK = re.compile(r"(<!-- llem-docs:([\w-]+) -->\n)(.*?)(<!-- /llem-docs:\2 -->)", re.S)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def key_rows(model: type[BaseModel], prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    """``| key | default | meaning |`` rows of ``model``'s fields (nested sections flattened)."""
    rows = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if name in skip:
            continue
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows += key_rows(ann, f"{prefix}{name}.")
            continue
        default = (
            "(required)"
            if field.is_required()
            else _default(field.get_default(call_default_factory=True))
        )
        meaning = field.description or ""
        if typing.get_origin(ann) is typing.Literal:
            choices = " | ".join(str(c) for c in typing.get_args(ann))
            meaning = f"{choices}; {meaning}" if meaning else choices
        bounds = _bounds([*field.metadata, *_union_metadata(ann)])
        if bounds:
            meaning = f"{meaning} (bounds: {bounds})" if meaning else f"bounds: {bounds}"
        rows.append(f"| `{prefix}{name}` | {_cell(default)} | {_cell(meaning)} |")
    return rows


_LIMITS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("max_length", "length <="))


def _bounds(metadata: list[object]) -> str:
    """A field's bounds (pydantic's ``ge``/``le``/... constraints) as ``>= 1, <= 100``."""
    found = [
        f"{sign} {value}"
        for item in metadata
        for attr, sign in _LIMITS
        if (value := getattr(item, attr, None)) is not None
    ]
    return ", ".join(found)


def _union_metadata(ann: object) -> list[object]:
    """The constraints of ``Annotated[...]`` members of ``ann`` (``TokenCount | None``)."""
    found = [m for arg in typing.get_args(ann) for m in getattr(arg, "__metadata__", ())]
    return [c for m in found for c in (m.metadata if isinstance(m, FieldInfo) else [m])]


def backends_table() -> str:
    head = "| option | install | engine |\n|---|---|---|"
    return "\n".join(
        [head]
        + [f"| `{e.name}` | `{e.install_command}` | {_cell(e.description)} |" for e in backends()]
    )


def backend_keys_table() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for entry in backends():
        doc = " ".join((entry.config.__doc__ or "").split("\n\n")[0].split())
        rows.append(f"| **backend={entry.name}** | | {_cell(doc)} |")
        rows += key_rows(entry.config, "backend.", skip=("name",))
    return "\n".join(rows)


def load_keys_table() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for load in LOADS:
        doc = " ".join((load.__doc__ or "").split("\n\n")[0].split())
        rows.append(f"| **load={load.model_fields['name'].default}** | | {_cell(doc)} |")
        rows += key_rows(load, "load.", skip=("name",))
    return "\n".join(rows)


def top_level_keys_table() -> str:
    rows = key_rows(ExperimentConfig, "", skip=_GROUPS)
    return "\n".join(["| key | default | meaning |", "|---|---|---|", *rows])


def model_keys_table() -> str:
    rows = key_rows(ModelConfig, "model.")
    return "\n".join(["| key | default | meaning |", "|---|---|---|", *rows])


def _submodel(ann: object) -> tuple[type[BaseModel] | None, str]:
    """The model inside ``ann`` (``X``, ``X | None``, ``list[X]``, ``dict[str, X]``) and the key
    suffix that reaches it (``""``, ``"[]"`` for a list, ``"{}"`` for a dict)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, ""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    for arg in args:
        model, suffix = _submodel(arg)
        if model is not None:
            return model, suffix or ("[]" if origin is list else "{}" if origin is dict else "")
    return None, ""


def _type_name(ann: object) -> str:
    text = ann.__name__ if isinstance(ann, type) else str(ann)
    return re.sub(r"\bNone(Type)?\b", "null", re.sub(r"\b(typing|llem\.result)\.", "", text))


def field_rows(model: type[BaseModel], prefix: str) -> list[str]:
    """``| field | type | meaning |`` rows of ``model`` (nested models flattened: ``a.b``, lists
    as ``a[].b``)."""
    rows = []
    for name, field in model.model_fields.items():
        sub, suffix = _submodel(field.annotation)
        meaning = _cell(" ".join((field.description or "").split()))
        if sub is not None:
            doc = meaning or _cell(" ".join((sub.__doc__ or "").split("\n\n")[0].split()))
            rows.append(f"| **`{prefix}{name}{suffix}`** | {sub.__name__} | {doc} |")
            rows += field_rows(sub, f"{prefix}{name}{suffix}.")
            continue
        rows.append(f"| `{prefix}{name}` | {_cell(_type_name(field.annotation))} | {meaning} |")
    return rows


def result_fields_table() -> str:
    return "\n".join(["| field | type | meaning |", "|---|---|---|", *field_rows(Result, "")])


TABLES: dict[str, Callable[[], str]] = {
    "backends": backends_table,
    "backend-keys": backend_keys_table,
    "model-keys": model_keys_table,
    "keys": top_level_keys_table,
    "result-fields": result_fields_table,
    "load-keys": load_keys_table,
}


def update(text: str) -> str:
    """``text`` with every generated block rewritten (an unknown block name is a KeyError)."""

    def fill(m: re.Match[str]) -> str:
        return f"{m.group(1)}{TABLES[m.group(2)]()}\n{m.group(4)}"

    return _BLOCK.sub(fill, text)


def main(argv: list[str]) -> int:
    """``[--check] [FILE ...]``: rewrite the files' blocks, or exit 1 when one is out of date."""
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"] or list(DEFAULT_FILES)
    stale = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        new = update(text)
        if new != text and check:
            stale.append(path)
        elif new != text:
            path.write_text(new, encoding="utf-8")
    for path in stale:
        sys.stderr.write(
            f"{path}: generated tables are out of date: run python -m llem.schema_docs {path}\n"
        )
    return int(bool(stale))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
