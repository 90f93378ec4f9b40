"""A study's own files (``study.json``, ``study_summary.*``) on a disk that fills or turns
read-only (docs/reliability.md, "Where a run writes"): one line naming the file and the reason,
never a traceback; every job result kept; exit 1 when the final summary is not written; the same
command rerun rebuilds it. Real ``llem`` studies on a real small tmpfs (skipped where mounting is
not allowed)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llem.result import Result
from tests.helpers import LLEM, fill_disk, mount_tmpfs, unmount

pytestmark = pytest.mark.e2e
STUDY = ["-m", "n=2", "max_new_tokens=4", "energy=none", "plots=false", "quiet=true"]
STUDY += ["flops.enabled=false"]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs, unmounted after the test."""
    folder = tmp_path / "disk"
    mount_tmpfs(folder, "2m")
    yield folder
    unmount(folder)


def _study(cwd: Path, sweep: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(LLEM), *STUDY, *args, f"hydra.sweep.dir={sweep}"],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def _fill_after_first_result(proc: subprocess.Popen[str], sweep: Path) -> tuple[str, str]:
    """Fill the disk as soon as the first job's result.json is written; the study's output."""
    try:
        deadline = time.monotonic() + 120
        while not list(sweep.glob("0_*/result.json")):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        fill_disk(sweep.parent)
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _one_error_line(out: str, err: str) -> str:
    assert "Traceback" not in out + err, out + err
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, err
    return errors[0]


def _kept_result(sweep: Path) -> Result:
    (path,) = sweep.glob("0_*/result.json")
    return Result.model_validate_json(path.read_bytes())


def test_a_disk_that_fills_after_a_job_keeps_its_result_and_names_the_study_file(tmp_path, disk):
    sweep = disk / "s"
    out, err = _fill_after_first_result(_study(tmp_path, sweep, "batch=1,2"), sweep)
    line = _one_error_line(out, err)
    assert "study_summary." in line and "No space left on device" in line
    assert "rerun the same command" in line
    assert _kept_result(sweep).tokens.output == 8
    assert "1/2 jobs failed" in err  # the second job could not start on the full disk
    assert not [p for p in disk.rglob("*") if p.name.endswith(".tmp")]

    (disk / "filler").unlink()  # room again: the same command rebuilds the summary
    again = _study(tmp_path, sweep, "batch=1,2")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "resuming: 1 of 2 jobs" in out and "Traceback" not in out + err
    summary = json.loads((sweep / "study_summary.json").read_text())
    assert summary["final"] and summary["counts"].get("ok") == 2


def test_every_job_ok_but_the_final_summary_unwritten_exits_1(tmp_path, disk):
    sweep = disk / "s"
    proc = _study(tmp_path, sweep, "batch=1")
    out, err = _fill_after_first_result(proc, sweep)
    assert proc.returncode == 1, out + err
    line = _one_error_line(out, err)
    assert line.startswith(f"Error: cannot write {sweep}/study_summary.")
    assert "No space left on device" in line and "job results are kept" in line
    assert "jobs failed" not in err and "job 1/1 ok" in out
    assert _kept_result(sweep).tokens.output == 8
    assert not (sweep / "study_summary.json").exists()


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_a_study_json_that_cannot_be_written_stops_before_any_job(tmp_path, disk, capsys, how):
    from llem.study.studyfiles import EXIT_UNSAVED, plan_or_exit

    class Planned:
        def __init__(self, num: int) -> None:
            self.num, self.overrides, self.config_hash = num, [f"batch={num}"], "h"
            self.folder, self.process = disk / "s" / f"{num}_x", "fork server"

    (disk / "s").mkdir()
    if how == "full":
        fill_disk(disk)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    with pytest.raises(SystemExit) as stopped:
        plan_or_exit(disk / "s", [Planned(0), Planned(1)], "subprocess")
    assert stopped.value.code == EXIT_UNSAVED == 1
    (line,) = capsys.readouterr().err.splitlines()
    reason = "No space left on device" if how == "full" else "Read-only file system"
    assert line.startswith(f"Error: cannot write {disk}/s/study.json ({reason}); no job")
    assert list((disk / "s").iterdir()) == []  # no study.json, no temp file
