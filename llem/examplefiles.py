"""``llem examples [FOLDER]``: copy the example files that ship inside the package into a folder.

A pip install has no checkout to read ``llem/examples/`` or ``multirun_examples/`` from; this
writes the experiment templates (``*.example``) into FOLDER and the study files into
``FOLDER/multirun_examples/``, the layout the docs' commands use from a checkout's root. Nothing
is overwritten: when any target exists, nothing is written.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from llem.errors import UsageError

DEFAULT_FOLDER = "llem-examples"
STUDIES = "multirun_examples"  # the repository folder shipped as llem.multirun_examples


def package_folder(name: str) -> Path:
    """The folder of a data package of llem's (found, not imported)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"{name} is missing from this install: reinstall llenergymeasure")
    return Path(next(iter(spec.submodule_search_locations)))


def shipped() -> dict[str, Path]:
    """Relative target path -> shipped file, for every example file."""
    llem_dir = package_folder("llem")
    files = {p.name: p for p in sorted((llem_dir / "examples").glob("*.example"))}
    studies = package_folder(f"llem.{STUDIES}")
    for path in sorted([*studies.glob("*.yaml"), studies / "README.md"]):
        files[f"{STUDIES}/{path.name}"] = path
    return files


def copy_examples(folder: Path) -> list[Path]:
    """Copy every example into ``folder``; raises :class:`UsageError` (nothing written) when a
    target exists or ``folder`` cannot be written."""
    from llem.paths import write_atomic

    files = shipped()
    existing = [folder / rel for rel in files if (folder / rel).exists()]
    if existing:
        raise UsageError(
            f"{existing[0]} exists and llem examples overwrites nothing: give a new folder "
            "(llem examples FOLDER)"
        )
    written = []
    try:
        for rel, source in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            write_atomic(folder / rel, source.read_bytes())
            written.append(folder / rel)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise UsageError(
            f"cannot write the examples into {folder} ({exc.strerror}): choose a folder you can "
            "write"
        ) from None
    return written


def main(args: list[str]) -> None:
    if len(args) > 1 or (args and args[0].startswith("-")):
        raise UsageError("usage: llem examples [FOLDER]  (default: ./llem-examples)")
    folder = Path(args[0] if args else DEFAULT_FOLDER)
    written = copy_examples(folder)
    for path in written:
        print(path)
    print(
        f"{len(written)} example files written. Next:\n"
        f"  llem run {folder / 'experiment.yaml.example'}\n"
        f"  llem run {folder / STUDIES / 'batch_sweep.yaml'}   # a study"
    )
