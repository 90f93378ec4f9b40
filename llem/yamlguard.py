"""Experiment files are read defensively before Hydra sees them: a size cap and no YAML aliases.

A 396-byte "billion laughs" alias bomb or a multi-MB file would otherwise hang composition for
minutes.
Experiment files are small and never need anchors/aliases, so both are refused with one line.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from llem.errors import UsageError

MAX_BYTES = 256 * 1024  # an experiment file is a few hundred bytes; 256 KiB is generous


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses aliases before expanding them."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event: yaml.AliasEvent = self.peek_event()  # type: ignore[no-untyped-call]  # stub lacks types
            line = event.start_mark.line + 1 if event.start_mark else "?"
            raise UsageError(
                f"{self.name}, line {line}: YAML aliases (*{event.anchor}) are not "
                "allowed in experiment files: write the value out"
            )
        return super().compose_node(parent, index)


def read_experiment_yaml(path: Path) -> object:
    """Parse ``path`` (size-capped, no aliases) into plain data, or raise :class:`UsageError`."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror})") from None
    if size > MAX_BYTES:
        raise UsageError(
            f"{path}: {size} bytes is too large for an experiment file (limit {MAX_BYTES} bytes)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    loader = _NoAliasLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    finally:
        loader.dispose()
