"""Faults of where a run writes: a full or vanished disk, a reused run folder, hostile paths and
secrets in names. Real ``llem`` processes, a real (small) tmpfs, real symbolic links."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from llem.result import Result
from tests.helpers import LLEM, run_llem

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
def small_disk(tmp_path):
    """A 24 KiB tmpfs: room for Hydra's files and the log, not for the time series."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_keeps_the_result_in_the_fallback_folder(tmp_path, small_disk):
    cache = tmp_path / "cache"
    proc = run_llem(
        *FAST, f"output_dir={small_disk}/out", cwd=tmp_path, env={"LLEM_CACHE_DIR": str(cache)}
    )
    assert proc.returncode == 1, proc.stderr
    line = _one_error_line(proc)
    (saved,) = (cache / "unsaved").glob("*/result.json")
    assert "No space left on device" in line and str(saved) in line
    result = Result.model_validate_json(saved.read_bytes())
    assert any("timeseries.parquet was not written" in w for w in result.warnings)
    assert result.energy.timeseries is None and result.tokens.output == 4
    _no_partial_files(small_disk)


def test_a_run_folder_removed_mid_run_keeps_the_result(tmp_path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    proc = subprocess.Popen(
        [str(LLEM), *FAST, "repeats=2", "repeat_gap_s=3", f"hydra.run.dir={run}"],
        cwd=tmp_path,
        env={**os.environ, "LLEM_CACHE_DIR": str(cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        log = run / "llem.log"
        while not (log.exists() and "loading" in log.read_text()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        shutil.rmtree(run)  # during the model load or the 3 s gap between the repeats
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert done.returncode == 1, err
    line = _one_error_line(done)
    (saved,) = (cache / "unsaved").glob("*/result.json")
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
        (None, "model.slug=" + "s" * 300, "model.slug is 300 bytes"),
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
