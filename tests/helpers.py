"""Helpers shared by the test modules (the one module they import helpers from; fixtures live in
conftest.py): paths, the real ``llem`` command, the packaged configuration, the CI's shared data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parents[1]
LLEM = Path(sys.executable).with_name("llem")

# data that is not in the repository: CI has ../shared beside the clone, a fresh clone has not
SHARED_DATA = REPO.parent / "shared" / "data"
AIENERGYSCORE = SHARED_DATA / "aienergyscore.jsonl"
needs_aienergyscore = pytest.mark.skipif(
    not AIENERGYSCORE.is_file(),
    reason=f"needs {AIENERGYSCORE} (the AI Energy Score prompts CI keeps beside the clone)",
)


def run_llem(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real ``llem`` console script (non-interactive, so no progress bar)."""
    return subprocess.run(
        [str(LLEM), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def compose_config(*overrides: str) -> DictConfig:
    """The packaged experiment config composed by Hydra with ``overrides`` (not validated)."""
    from llem import hydra_options, resolvers

    resolvers.register()
    hydra_options.store()
    with initialize_config_module("llem.conf", version_base="1.3"):
        return compose("llem", overrides=list(overrides))


def base() -> dict:
    """The packaged defaults as plain, resolved containers (nested dicts a test may edit)."""
    return OmegaConf.to_container(compose_config(), resolve=True)


def config_with(**changes: object) -> dict:
    """The packaged defaults with dotted keys changed: config_with(**{"backend.device": "cpu"})."""
    cfg = base()
    for key, value in changes.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def command_lines() -> list[tuple[int, list[bytes]]]:
    """(pid, argv) of every process whose command line can be read now."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found.append((int(entry.name), (entry / "cmdline").read_bytes().split(b"\0")))
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its reaper is dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def gone_within(pid: int, seconds: float = 15.0) -> bool:
    """Whether ``pid`` has ended (or ends within ``seconds``)."""
    deadline = time.time() + seconds
    while alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def mount_tmpfs(folder: Path, size: str) -> None:
    """Mount a real tmpfs of ``size`` (e.g. "2m") on ``folder`` (created); skip the test with the
    reason where mounting is not allowed. Unmount with :func:`unmount`."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_disk(disk: Path) -> Path:
    """Take every free byte of the file system of ``disk``; the file that holds them."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    return filler
