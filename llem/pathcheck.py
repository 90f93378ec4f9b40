"""Pre-flight checks of where a run writes: ``output_dir``, ``hydra.run.dir``, ``hydra.sweep.dir``
and the folder names built from ``model.slug``.

Each folder is never empty (``output_dir=`` would write into ``/``), holds no dangling or looping
symbolic link, no name longer than the file system allows, can be written (a folder is made and
removed in its nearest existing parent), and is never an earlier run's folder (one run per
folder). No secret from the environment (``HF_TOKEN`` and other ``*TOKEN*``/``*KEY``/``*SECRET*``/
``*PASSWORD*`` values) may reach a folder name or the recorded config. Each problem is a
:class:`~llem.errors.UsageError` naming the key and the fix.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from llem.config import ExperimentConfig
from llem.errors import UsageError
from llem.records import RESULT_FILE

NAME_MAX = 255  # bytes in one folder or file name (Linux file systems; pathconf when it answers)
PATH_MAX = 4095  # bytes in a whole path
MIN_FREE_BYTES = 1 << 20  # a run's result.json, time series and Hydra's files fit in 1 MiB
# a run folder name beyond its slug: "_<backend>_2026-01-31T12-00-NN" (a job: "<num>_..")
_RUN_NAME_EXTRA = 24
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|(^|_)(API_)?KEY$", re.I)
_NOT_SECRET = re.compile(r"_(PATH|FILE|DIR|URL|HOME)$", re.I)  # HF_TOKEN_PATH names a file
_SECRET_MIN_LEN = 8  # shorter values ("1", "true") are flags, not secrets
_READS_ENV = re.compile(r"oc\.env:\s*([A-Za-z_][A-Za-z0-9_]*)")


def _secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name)) and not _NOT_SECRET.search(name)


def secrets() -> dict[str, str]:
    """The environment's secrets, by variable name: values of secret-like variables (paths
    excluded)."""
    return {
        name: value
        for name, value in os.environ.items()
        if _secret_name(name) and len(value) >= _SECRET_MIN_LEN and not os.path.exists(value)
    }


def _secret_in(value: str, found: dict[str, str]) -> str | None:
    """The name of the secret ``value`` reads (``${oc.env:NAME}``) or holds, or None."""
    read = next((m for m in _READS_ENV.findall(value) if _secret_name(m)), None)
    return read or next((name for name, secret in found.items() if secret in value), None)


def check_command_line(
    overrides: list[str], multirun: bool, config_path: str | None, config_name: str
) -> None:
    """:func:`check_overrides` for a command line, with the ``hydra.run.dir``/``hydra.sweep.dir``
    its experiment file (``--config-path``/``--config-name``) sets, unless overridden."""
    from llem.yamlguard import read_experiment_yaml

    file = Path(config_path or "", f"{config_name}.yaml")
    if config_path is None or not file.is_file():
        return check_overrides(overrides, multirun)
    data = read_experiment_yaml(file)
    hydra = data.get("hydra") if isinstance(data, dict) else None
    given = {o.partition("=")[0].lstrip("+~") for o in overrides}
    from_file = [
        f"hydra.{mode}.dir={node['dir']}"
        for mode in ("run", "sweep")
        if isinstance(hydra, dict)
        and isinstance(node := hydra.get(mode), dict)
        and isinstance(node.get("dir"), str)
        and f"hydra.{mode}.dir" not in given
    ]
    study = isinstance(hydra, dict) and str(hydra.get("mode")) == "MULTIRUN"
    return check_overrides([*from_file, *overrides], multirun or study)


def check_overrides(overrides: Iterable[str], multirun: bool) -> None:
    """The command line's overrides: none reads a secret from the environment; each literal
    ``hydra.run.dir``/``hydra.sweep.dir`` is a sound folder; a single run's ``hydra.run.dir``
    holds no earlier result."""
    found = secrets()
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if name := _secret_in(value, found):
            raise UsageError(
                f"{key} would hold the value of ${name}: a secret is never written into "
                "folder names, hydra.yaml or result.json; give a plain value (llem and the "
                "hub read it from the environment themselves)"
            )
        if key not in ("hydra.run.dir", "hydra.sweep.dir"):
            continue
        literal = value.split("${", 1)[0].strip("'\"")
        if not literal and "${" not in value:
            raise UsageError(f"{key} is empty: give a folder, e.g. {key}=results/my-run")
        if literal:
            check_folder(key, literal)
        if key == "hydra.run.dir" and not multirun and literal == value.strip("'\""):
            _one_run_per_folder(Path(literal).expanduser())


def _one_run_per_folder(folder: Path) -> None:
    if (folder / RESULT_FILE).exists():
        raise UsageError(
            f"hydra.run.dir={folder} already holds a run's {RESULT_FILE}: one run per folder; "
            "give a new folder (or leave hydra.run.dir out: each run gets its own)"
        )


def check_job(exp: ExperimentConfig) -> None:
    """One job's names: its slug fits a folder name, no secret in the slug or ``output_dir``."""
    from llem.paths import slugify

    slug = exp.model.slug or slugify(exp.model.name_or_path)
    room = NAME_MAX - _RUN_NAME_EXTRA - len(exp.backend.name)
    if len(slug.encode()) > room:
        given = "model.slug" if exp.model.slug else f"the slug of {exp.model.name_or_path}"
        raise UsageError(
            f"{given} is {len(slug.encode())} bytes, too long for a run folder's name (at most "
            f"{room}): set a shorter model.slug"
        )
    found = secrets()
    for key, value in (("model.slug", slug), ("output_dir", exp.output_dir)):
        if name := _secret_in(value, found):
            raise UsageError(
                f"{key} holds the value of ${name}: a secret is never written into folder "
                "names or result.json; give a plain value"
            )


def check_folder(key: str, value: str) -> None:
    """``value`` (the setting ``key``) names a folder llem can make and write."""
    if not value.strip():
        raise UsageError(f"{key} is empty: give a folder, e.g. {key}=results")
    path = Path(value).expanduser().absolute()
    if len(os.fsencode(path)) > PATH_MAX:
        raise UsageError(f"{key}: the path is longer than {PATH_MAX} bytes: choose a shorter one")
    existing = _existing_parent(key, path)
    limit = _name_max(existing)
    for name in path.parts:
        if len(os.fsencode(name)) > limit:
            raise UsageError(
                f"{key}: the folder name {name[:24]}... is {len(os.fsencode(name))} bytes, "
                f"longer than the file system allows ({limit}): choose a shorter one"
            )
    if not existing.is_dir():
        raise UsageError(f"{key} {value} cannot be made: {existing} is not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".llem-write-check-", dir=existing))
        disk = os.statvfs(existing)
    except OSError as exc:
        raise UsageError(
            f"{key} {value} cannot be written ({exc.strerror} in {existing}): choose a folder "
            "you can write"
        ) from None
    free = disk.f_bavail * disk.f_frsize
    if disk.f_blocks and free < MIN_FREE_BYTES:  # f_blocks 0: a file system that does not say
        raise UsageError(
            f"{key} {value} is on a disk with {free // 1024} KiB free (a run needs "
            f"{MIN_FREE_BYTES >> 10} KiB): free some space or choose another folder"
        )


def _existing_parent(key: str, path: Path) -> Path:
    """The nearest part of ``path`` that exists (from the root down); a symbolic link on the way
    that is dangling or loops is an error."""
    existing = Path(path.anchor)
    for part in path.parts[1:]:
        here = existing / part
        try:
            here.stat()  # follows links
        except FileNotFoundError:
            if here.is_symlink():
                raise UsageError(
                    f"{key}: {here} is a dangling symbolic link (to {os.readlink(here)}): remove "
                    "it or point it at a folder"
                ) from None
            return existing
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UsageError(
                    f"{key}: {here} is a symbolic link that loops: remove it or point it at a "
                    "folder"
                ) from None
            if exc.errno in (errno.ENAMETOOLONG, errno.ENOTDIR):
                return existing  # reported by the length check, or as "not a folder"
            raise UsageError(f"{key}: {here} cannot be read ({exc.strerror})") from None
        existing = here
    return existing


def _name_max(folder: Path) -> int:
    try:
        return min(NAME_MAX, os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return NAME_MAX
