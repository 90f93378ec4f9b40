"""Faults of where a run writes: a full or vanished disk, a reused run folder, hostile paths and
secrets in names (docs/reliability.md, "Where a run writes"). Real ``llem`` processes, a real small
tmpfs, real symbolic links."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from llem.result import Result
from tests.helpers import LLEM, fill_disk, mount_tmpfs, run_llem, unmount

pytestmark = pytest.mark.e2e
FAST = ["n=2", "max_new_tokens=2", "quiet=true", "energy=none", "flops.enabled=false"]


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one ``Error:`` line of a failed ``llem`` (no traceback)."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


def _no_partial_files(root: Path) -> None:
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(size)``: a real tmpfs of ``size`` (e.g. "64k") under tmp_path, unmounted after."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounts)}"
        mount_tmpfs(folder, size)
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        unmount(folder)


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(LLEM), *FAST, "repeats=2", "repeat_gap_s=2", *args],
        cwd=tmp_path,
        env={**os.environ, "LLEM_CACHE_DIR": str(tmp_path / "cache")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def _when_loading(proc: subprocess.Popen[str], log: Path, then: Callable[[], object]) -> str:
    """Once ``log`` says the model is loading, call ``then``; the run's stderr once it ends."""
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and "loading" in log.read_text()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        then()  # during the model load or the gap between the two repeats
        return proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_disk_that_fills_mid_run_keeps_the_result_in_the_fallback_folder(tmp_path, tmpfs):
    disk = tmpfs("2m")
    proc = _start(tmp_path, f"hydra.run.dir={disk}/run")
    err = _when_loading(proc, disk / "run" / "llem.log", lambda: fill_disk(disk))
    assert proc.returncode == 1, err
    line = _one_error_line(subprocess.CompletedProcess(proc.args, 1, "", err))
    (saved,) = (tmp_path / "cache" / "unsaved").glob("*/result.json")
    assert "No space left on device" in line and str(saved) in line
    result = Result.model_validate_json(saved.read_bytes())
    assert any("timeseries.parquet was not written" in w for w in result.warnings)
    assert result.energy.timeseries is None and result.tokens.output == 8
    _no_partial_files(disk)


def test_a_disk_without_room_for_a_run_stops_in_preflight(tmp_path, tmpfs):
    disk = tmpfs("64k")
    proc = run_llem(*FAST, f"output_dir={disk}/out", cwd=tmp_path)
    assert proc.returncode == 2
    assert "KiB free" in _one_error_line(proc) and list(disk.iterdir()) == []


def test_a_run_folder_removed_mid_run_keeps_the_result(tmp_path):
    run = tmp_path / "run"
    proc = _start(tmp_path, f"hydra.run.dir={run}")
    err = _when_loading(proc, run / "llem.log", lambda: shutil.rmtree(run))
    assert proc.returncode == 1, err
    line = _one_error_line(subprocess.CompletedProcess(proc.args, 1, "", err))
    (saved,) = (tmp_path / "cache" / "unsaved").glob("*/result.json")
    assert str(saved) in line and not run.exists()
    result = json.loads(saved.read_text())
    assert any("timeseries.parquet was not written" in w for w in result["warnings"])


# --------------------------------------------------------------------------- one run per folder


def test_a_second_run_into_a_run_folder_stops_before_it_starts(tmp_path):
    first = run_llem(*FAST, "hydra.run.dir=K", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = {p: p.read_bytes() for p in (tmp_path / "K").rglob("*") if p.is_file()}
    second = run_llem(*FAST, "seed=7", "hydra.run.dir=K", cwd=tmp_path)
    assert second.returncode == 2
    assert "hydra.run.dir" in _one_error_line(second) and "one run per folder" in second.stderr
    after = {p: p.read_bytes() for p in (tmp_path / "K").rglob("*") if p.is_file()}
    assert after == before  # result.json and .hydra/ untouched: `llem reproduce K` still agrees
    reproduced = run_llem("reproduce", "K", cwd=tmp_path)
    assert reproduced.returncode == 0 and "resolved config: identical" in reproduced.stdout


def test_an_experiment_file_naming_a_finished_run_folder_stops_before_it_starts(tmp_path):
    (tmp_path / "exp.yaml").write_text(
        "defaults: [llem, _self_]\nn: 2\nhydra:\n  run:\n    dir: K\n"
    )
    args = ["run", "exp.yaml", *FAST[1:]]
    assert run_llem(*args, cwd=tmp_path).returncode == 0
    before = (tmp_path / "K" / ".hydra" / "overrides.yaml").read_text()
    second = run_llem(*args, "seed=7", cwd=tmp_path)
    assert second.returncode == 2 and "one run per folder" in _one_error_line(second)
    assert (tmp_path / "K" / ".hydra" / "overrides.yaml").read_text() == before


# --------------------------------------------------------------------------- hostile paths


@pytest.mark.parametrize(
    "make,override,needle",
    [
        ("dangling", "output_dir=link", "dangling symbolic link"),
        ("dangling", "hydra.run.dir=link/run", "dangling symbolic link"),
        ("loop", "hydra.run.dir=link", "loops"),
        ("loop", "output_dir=link/x", "loops"),
        ("loop", "-m hydra.sweep.dir=link", "loops"),
        (None, "output_dir=", "output_dir is empty"),
        (None, "hydra.run.dir=", "hydra.run.dir is empty"),
        (None, "model.slug=" + "s" * 300, "model.slug is 300 characters long"),
        (None, "output_dir=" + "o" * 300, "longer than the file system allows"),
        (None, "hydra.run.dir=runs/" + "r" * 300, "longer than the file system allows"),
    ],
)
def test_a_bad_output_path_stops_in_preflight(tmp_path, make, override, needle):
    if make == "dangling":
        (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    elif make == "loop":
        (tmp_path / "link").symlink_to("link")
    before = sorted(tmp_path.iterdir())
    proc = run_llem(*FAST, *override.split(), cwd=tmp_path)
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert needle in line and override.split()[-1].split("=")[0] in line
    assert sorted(tmp_path.iterdir()) == before and not list(Path("/").glob("tiny-llama_*"))


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "override",
    ["model.slug=${oc.env:HF_TOKEN}", "hydra.run.dir=runs/${oc.env:HF_TOKEN}", "output_dir=hf_x"],
)
def test_a_secret_from_the_environment_never_names_a_folder(tmp_path, override):
    token = "hf_x" + "Q7w" * 8
    override = override.replace("hf_x", token)
    proc = run_llem(*FAST, override, cwd=tmp_path, env={"HF_TOKEN": token})
    assert proc.returncode == 2
    assert "$HF_TOKEN" in _one_error_line(proc) and token not in proc.stderr + proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_secret_is_refused_even_unset_and_a_path_is_no_secret(tmp_path, monkeypatch):
    from llem.errors import UsageError
    from llem.pathcheck import check_overrides

    monkeypatch.delenv("MY_SECRET", raising=False)
    with pytest.raises(UsageError, match=r"\$MY_SECRET"):
        check_overrides(["model.slug=${oc.env:MY_SECRET}"], multirun=False)
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "token"))  # names a file: no secret
    monkeypatch.setenv("DEPLOY_KEY", str(tmp_path))  # an existing path: no secret
    check_overrides([f"output_dir={tmp_path}/token/x", "x=${oc.env:HF_TOKEN_PATH}"], False)
