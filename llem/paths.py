"""Where llem keeps things: cache folders, result folder names, atomic writes."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from platformdirs import user_cache_dir


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def cache_dir(*parts: str) -> Path:
    """llem's cache folder (``$LLEM_CACHE_DIR`` or the platform's user cache dir), created on
    demand."""
    root = Path(os.environ.get("LLEM_CACHE_DIR") or user_cache_dir("llem"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def slugify(name: str) -> str:
    """'meta-llama/Llama-3.1-8B-Instruct' -> 'llama-3.1-8b-instruct'; '/x/My model/' ->
    'my-model'."""
    name = name.rstrip("/").removeprefix("llem://")
    base = name.rsplit("/", 1)[-1] or "model"
    return re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-") or "model"


CLAIMED: list[Path] = []  # the folders claim_unique_dir made in this process, in order


def claim_unique_dir(path: str) -> str:
    """Create ``path`` (or ``path-2``, ``path-3`` …) exclusively and return the one created
    (recorded in :data:`CLAIMED`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    candidate, i = path, 1
    while True:
        try:
            os.mkdir(candidate)
            CLAIMED.append(Path(candidate).absolute())
            return candidate
        except FileExistsError:
            i += 1
            candidate = f"{path}-{i}"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp file beside ``path`` to write; renamed over ``path`` on success, removed on failure.

    The one way llem replaces a file: a reader sees the old file or the new one, never half of one.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def write_json_atomic(path: Path, data: object) -> None:
    """``data`` as JSON indented by 2, atomically."""
    write_atomic(path, json.dumps(data, indent=2) + "\n")
