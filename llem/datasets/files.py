"""Reading prompts from files: JSON lines (one object per line), CSV or Parquet."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from llem.errors import UsageError

MAX_DATASET_BYTES = 2**30  # a prompts file is read whole: 1 GiB holds millions of prompts
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def read_prompts(
    path: str, field: str, key: str, fallback_fields: tuple[str, ...] = ()
) -> list[str]:
    """Prompts of a .jsonl/.csv/.parquet file under ``field`` (or the first of ``fallback_fields``).

    JSON lines whose keys all start with ``_`` are metadata (e.g. provenance) and are skipped, as
    are blank lines. ``key`` names the config key in error messages.
    """
    file = Path(path).expanduser()
    _check_file(file, path, key)
    if file.suffix in {".csv", ".parquet"}:
        return _read_table(file, field, key, fallback_fields)
    prompts: list[str] = []
    with file.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = _text(raw, f"{key}={path}: line {lineno}")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(
                    f"{key}={path}: line {lineno} is not valid JSON ({exc.msg}); "
                    f'each line must be an object like {{"{field}": "..."}}'
                ) from None
            if not isinstance(record, dict):
                raise UsageError(
                    f'{key}={path}: line {lineno} is not a JSON object; use {{"{field}": "..."}}'
                )
            if record and all(k.startswith("_") for k in record):
                continue
            prompts.append(_prompt(record, field, fallback_fields, f"{key}={path}: line {lineno}"))
    if not prompts:
        raise UsageError(
            f'{key}={path}: the file has no prompts; add lines like {{"{field}": "..."}}'
        )
    return prompts


def _check_file(file: Path, path: str, key: str) -> None:
    """``file`` is a regular file of at most :data:`MAX_DATASET_BYTES` (read whole, in memory)."""
    try:
        mode = file.stat().st_mode
    except OSError:
        raise UsageError(f"{key}={path}: no such file; give the path of a prompts file") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a file")
        raise UsageError(
            f"{key}={path} is not a regular file ({kind}): give the path of a prompts file"
        )
    size = file.stat().st_size
    if size > MAX_DATASET_BYTES:
        raise UsageError(
            f"{key}={path} is {size / 2**30:.1f} GiB: prompts files are read into memory, at most "
            f"{MAX_DATASET_BYTES / 2**30:.0f} GiB; keep the prompts you measure in a smaller file"
        )


def _text(raw: bytes, where: str) -> str:
    """One line of a prompts file as text; undecodable bytes name the file, line and byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{where} is not UTF-8 text (byte {exc.start + 1} is 0x{raw[exc.start]:02x}): "
            "re-save the file as UTF-8"
        ) from None


def _prompt(record: dict[str, object], field: str, fallbacks: tuple[str, ...], where: str) -> str:
    for name in (field, *fallbacks):
        if name in record:
            value = record[name]
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"{where}: '{name}' must be a non-empty string")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate escape such as "\\ud800"
                raise UsageError(
                    f"{where}: '{name}' holds an unpaired surrogate ({value[exc.start]!a} at "
                    f"character {exc.start + 1}): fix the escape in the file"
                ) from None
            return value
    raise UsageError(
        f"{where} has no '{field}' key (keys: {', '.join(record) or 'none'}); "
        f"set dataset.field=<key> or fix the file"
    )


def _read_table(file: Path, field: str, key: str, fallbacks: tuple[str, ...]) -> list[str]:
    import pyarrow.csv
    import pyarrow.parquet

    try:
        table = (
            pyarrow.parquet.read_table(file)
            if file.suffix == ".parquet"
            else pyarrow.csv.read_csv(file)
        )
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise UsageError(
            f"{key}={file}: cannot read the file ({str(exc).splitlines()[0]})"
        ) from None
    column = next((c for c in (field, *fallbacks) if c in table.column_names), None)
    if column is None:
        raise UsageError(
            f"{key}={file} has no column '{field}' (columns: {', '.join(table.column_names)}); "
            "set dataset.field=<column>"
        )
    prompts = [str(v) for v in table.column(column).to_pylist() if v is not None and str(v).strip()]
    if not prompts:
        raise UsageError(f"{key}={file}: column '{column}' has no prompts")
    return prompts
