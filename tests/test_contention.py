"""Issue 21, items 1-2: contention in every study result, the wait for quiet before each measured
window, and re-measuring contended study jobs (real llem studies beside a real busy process; those
tests run ``solo``: no other test on the second core)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llem.config import validate_data
from llem.errors import ConfigError
from llem.hostcpu import PROC, QUIET_POLL_S, others_cpu_s, wait_for_quiet
from llem.records import SUMMARY_CSV, SUMMARY_JSON, SUMMARY_MD, SUMMARY_PARQUET
from llem.result import Result
from llem.study.remeasure import ATTEMPT_LOG, ATTEMPTS_DIR
from llem.study.summary import build_summary
from tests.helpers import LLEM, base, run_llem

STUDY = ("-m", "batch=1,2,4", "n=4", "max_new_tokens=8", "warmup_batches=1", "flops.enabled=false")


# ------------------------------------------------------------------------- the wait, a fake clock


class FakeCpu:
    """Other processes' CPU seconds on a fake clock: ``cores(t)`` cores in use at time t (s)."""

    def __init__(self, cores: object) -> None:
        self.cores = cores
        self.now = 0.0
        self.used = 0.0
        self.reads = 0

    def sleep(self, seconds: float) -> None:
        step = 0.01
        for _ in range(round(seconds / step)):
            assert callable(self.cores)
            self.used += self.cores(self.now) * step
            self.now += step

    def read(self) -> float:
        self.reads += 1
        return self.used

    def wait(self, settle_s: float = 2.0, max_wait_s: float = 30.0, threshold: float = 0.25):
        return wait_for_quiet(
            self.read, threshold, settle_s, max_wait_s, clock=lambda: self.now, sleep=self.sleep
        )


def test_a_quiet_machine_waits_one_settle_time() -> None:
    cpu = FakeCpu(lambda t: 0.1)
    w = cpu.wait(settle_s=2.0)
    assert w.quiet is True and w.waited_s == pytest.approx(2.0, abs=QUIET_POLL_S)


def test_the_wait_ends_settle_s_after_the_other_process_stops() -> None:
    cpu = FakeCpu(lambda t: 1.0 if t < 5.0 else 0.0)
    w = cpu.wait(settle_s=2.0, max_wait_s=30.0)
    # 2 s of quiet are needed after the stop at 5 s; the average over a span that still holds part
    # of the busy time stays above 0.25 until at most 0.5 s of it is left
    assert w.quiet is True and 6.5 - QUIET_POLL_S <= w.waited_s <= 7.0 + QUIET_POLL_S


def test_a_busy_machine_is_waited_for_at_most_max_wait_s() -> None:
    cpu = FakeCpu(lambda t: 1.0)
    w = cpu.wait(settle_s=2.0, max_wait_s=5.0)
    assert w.quiet is False and 5.0 <= w.waited_s <= 5.0 + QUIET_POLL_S
    assert cpu.reads == pytest.approx(5.0 / QUIET_POLL_S + 1, abs=1)  # it polls, never spins


def test_a_short_spike_inside_the_settle_time_is_averaged() -> None:
    cpu = FakeCpu(lambda t: 1.0 if 0.5 <= t < 0.75 else 0.0)  # 0.25 CPU s in 2 s: 0.125 cores
    assert cpu.wait(settle_s=2.0).quiet is True


def test_unreadable_cpu_times_are_no_wait() -> None:
    w = wait_for_quiet(lambda: None, 0.25, 2.0, 30.0, sleep=lambda s: pytest.fail("slept"))
    assert w.quiet is None and w.waited_s == 0.0


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("threshold_cores", 0, "contention.threshold_cores=0 is out of range: set"),
        ("settle_s", -1.0, "contention.settle_s=-1.0 is out of range: set"),
        ("max_wait_s", 1e9, "contention.max_wait_s=1000000000.0 is out of range: set"),
        ("wait", 1, "unknown key 'contention.wait'"),
    ],
)
def test_bad_contention_keys_name_the_key(key: str, value: object, message: str) -> None:
    cfg = base()
    cfg["contention"][key] = value
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate_data(cfg)


# ------------------------------------------------------------------------- real studies, busy


def _busy() -> subprocess.Popen[bytes]:
    """A process spinning on one core, started by the test (not a child of llem)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


@pytest.fixture
def busy_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = _busy()
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _csv_rows(sweep: Path) -> list[dict[str, str]]:
    with (sweep / SUMMARY_CSV).open() as fh:
        return list(csv.DictReader(fh))


def _result(path: Path) -> Result:
    return Result.model_validate_json(path.read_bytes())


@pytest.mark.slow
@pytest.mark.usefixtures("solo")
def test_every_job_of_a_study_beside_a_busy_process_is_flagged(
    tmp_path: Path, busy_process: subprocess.Popen[bytes]
) -> None:
    sweep = tmp_path / "s"
    proc = run_llem(*STUDY, f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[llem] job") and " ok " in ln]
    assert len(lines) == 3, proc.stdout
    for line in lines:
        assert ", CPU contended: other processes used " in line and "cores (> 0.25)" in line
    assert "[llem] 3 of 3 jobs ran with CPU contention" in proc.stdout
    assert "re-measuring" not in proc.stdout  # max_attempts defaults to 1
    md = (sweep / SUMMARY_MD).read_text()
    assert md.count("(contended) |") == 3 and "CPU contended: jobs 0, 1, 2 ran while" in md
    rows = _csv_rows(sweep)
    assert [r["contended"] for r in rows] == ["true"] * 3
    assert all(float(r["other_cpu_cores"]) > 0.25 for r in rows)
    columns = list(rows[0])
    assert columns.index("contended") == columns.index("other_cpu_cores") + 1
    assert pq.read_table(sweep / SUMMARY_PARQUET).column("contended").to_pylist() == [True] * 3
    assert all(row["contended"] is True for row in build_summary(sweep).rows)  # the plots' rows
    jobs = json.loads((sweep / SUMMARY_JSON).read_text())["jobs"]
    assert [j["metrics"]["contended"] for j in jobs] == [True] * 3
    for path in sorted(sweep.glob("*/result.json")):
        (window,) = _result(path).cpu_contention
        assert window.contended is True and window.threshold_cores == 0.25
        assert window.waited_s is None and window.quiet_reached is None  # no wait by default


@pytest.mark.slow
@pytest.mark.usefixtures("solo")
def test_contended_jobs_are_re_measured_once_the_machine_is_quiet(tmp_path: Path) -> None:
    sweep = tmp_path / "s"
    args = (*STUDY, "hydra.launcher.max_attempts=3", "contention.max_wait_s=4")
    calm = wait_for_quiet(lambda: others_cpu_s(PROC, os.getpid()), 0.25, 2.0, 20.0)
    if not calm.quiet:  # a precondition: solo keeps other tests away, not other programs
        pytest.skip("this host was busy before the test began (other programs, not tests)")
    busy = _busy()
    proc = subprocess.Popen(
        [str(LLEM), *args, "contention.settle_s=1", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 400
        for line in proc.stdout:
            seen.append(line.rstrip("\n"))
            if "re-measuring" in line:
                busy.kill()  # the machine goes quiet after the first attempt
            assert time.monotonic() < deadline, "\n".join(seen)
        assert proc.wait(timeout=60) == 0, "\n".join(seen)
    finally:
        busy.kill()
        busy.wait(timeout=10)
        proc.kill()
        proc.wait(timeout=60)
    out = "\n".join(seen)
    assert "[llem] job 1/3 re-measuring (attempt 2/3): contended" in out
    first = sweep / "0_tiny-llama_pytorch"
    kept = first / ATTEMPTS_DIR / "1"
    (window,) = _result(kept / "result.json").cpu_contention
    assert window.contended is True and window.quiet_reached is False
    assert window.waited_s is not None and window.waited_s >= 4.0
    assert "CPU contention in repeat-1" in (kept / ATTEMPT_LOG).read_text()
    (window,) = _result(first / "result.json").cpu_contention
    assert window.contended is False and window.quiet_reached is True
    rows = _csv_rows(sweep)
    assert len(rows) == 3 and [r["status"] for r in rows] == ["ok"] * 3
    assert [r["contended"] for r in rows] == ["false"] * 3
    assert "3 jobs: 3 ok" in (sweep / SUMMARY_MD).read_text()
    assert "CPU contended:" not in (sweep / SUMMARY_MD).read_text()


def test_max_attempts_below_one_is_one_error_line(tmp_path: Path) -> None:
    proc = run_llem(
        "-m", "batch=1,2", "n=2", "hydra.launcher.max_attempts=0",
        f"hydra.sweep.dir={tmp_path}/s", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "Error: hydra.launcher.max_attempts must be >= 1 (1 = no re-measuring)"
    ]
    assert not (tmp_path / "s").exists()


def test_the_slurm_launcher_refuses_max_attempts_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = run_llem(
        "-m", "batch=1,2", "n=2", "hydra/launcher=llem_slurm", "hydra.launcher.max_attempts=2",
        f"hydra.sweep.dir={tmp_path}/s", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "Error: unknown key 'hydra.launcher.max_attempts' (the default hydra.launcher has it, the "
        "one chosen has not): check the spelling; `llem --cfg hydra -p hydra.launcher` lists every "
        "key"
    ]
    assert not (tmp_path / "s").exists()
