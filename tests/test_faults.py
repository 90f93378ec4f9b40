"""Fault injection (issue 9): real signals to real llem processes, real damaged files, two real
studies racing for one folder, folders that cannot be written, hostile input files.

Each test names the fault it injects; the counts in docs/reliability.md come from this module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import LLEM, REPO, command_lines, gone_within, run_llem

pytestmark = pytest.mark.e2e
APP = REPO / "tests" / "apps" / "trivial_app.py"
WAIT_S = 60.0


def _start_app(sweep: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), "-m", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SWEEP_DIR": str(sweep)},
        stdin=subprocess.DEVNULL,
    )


def _wait_for(path: Path) -> None:
    deadline = time.time() + WAIT_S
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    time.sleep(0.3)


def _worker_pid(job_folder: Path) -> int:
    return int(json.loads((job_folder / "job.json").read_text())["pid"])


def _summary(sweep: Path) -> dict[str, object]:
    data = json.loads((sweep / "study_summary.json").read_text())
    assert isinstance(data, dict)
    return data


# ------------------------------------------------------------------------------------ signals

STOPS = [
    (signal.SIGTERM, 1),  # kill, timeout, SLURM time limit / preemption
    (signal.SIGHUP, 1),  # a closed terminal
    (signal.SIGINT, 2),  # Ctrl-C twice
]


@pytest.mark.parametrize("sig,times", STOPS, ids=[f"{s.name}x{n}" for s, n in STOPS])
def test_a_signal_stops_the_study_like_ctrl_c(tmp_path, sig, times):
    proc = _start_app(tmp_path, "sleep_s=0,60,0")
    _wait_for(tmp_path / "1" / "job.json")
    for _ in range(times):
        proc.send_signal(sig)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert gone_within(_worker_pid(tmp_path / "1"))
    error = json.loads((tmp_path / "1" / "error.json").read_text())
    assert (error["status"] == "interrupted" and sig.name in error["error"]) or sig == signal.SIGINT
    summary = _summary(tmp_path)
    assert summary["final"] is True and summary["interrupted"] is True
    assert not (tmp_path / "2").exists() and not (tmp_path / ".llem.lock").exists()


def test_workers_die_when_the_launcher_is_killed(tmp_path):
    proc = _start_app(tmp_path, "sleep_s=60")
    _wait_for(tmp_path / "0" / "job.json")
    proc.kill()  # SIGKILL: no handler runs in the launcher
    proc.communicate(timeout=WAIT_S)
    assert gone_within(_worker_pid(tmp_path / "0"))


@pytest.mark.slow
def test_sigterm_stops_a_single_run_and_leaves_nothing(tmp_path):
    proc = _start_long_run(tmp_path)
    _when(tmp_path / "results" / "*" / "llem.log")
    time.sleep(3)  # the model is loading or generating
    deadline = time.time() + 120
    while not _started_by(proc.pid) and time.time() < deadline:
        time.sleep(0.1)  # the helper drawing timeseries.png, waiting for the end
    assert _started_by(proc.pid), "no plot helper started"
    err = _stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("Error: stopped by SIGTERM")
    assert "Traceback" not in err and not (tmp_path / "results").exists()
    assert not _started_by(proc.pid)  # the plot helper included


def _started_by(pid: int) -> list[str]:
    """Command lines of live llem helpers started for the llem process ``pid`` (they are given
    its pid as their argument)."""
    found = []
    for _, argv in command_lines():
        if b"llem.plotworker" in argv and str(pid).encode() in argv:
            found.append(" ".join(a.decode() for a in argv))
    return found


# ------------------------------------------------------------------------- counts and resume


def test_on_failure_stop_console_summary_and_exit_code_agree(tmp_path):
    proc = _start_app(tmp_path, "action=fail,none,none", "hydra.launcher.on_failure=stop")
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 1
    assert "1/3 jobs failed, 2 not run (on_failure=stop)" in err
    counts = _summary(tmp_path)["counts"]
    assert isinstance(counts, dict) and counts["failed"] == 1 and counts["pending"] == 2


def _study(sweep: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_llem(
        "-m",
        "n=2,3",
        "batch=1",
        "max_new_tokens=4",
        "warmup_batches=0",
        "energy.baseline.enabled=false",
        "flops.enabled=false",
        f"hydra.sweep.dir={sweep}",
        *args,
        cwd=sweep.parent,
    )


@pytest.mark.slow
def test_each_planned_job_is_counted_once_and_damaged_results_rerun(tmp_path):
    sweep = tmp_path / "study"
    assert _study(sweep).returncode == 0
    first, second = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    (first / "result.json").write_text('{"truncated": ')  # damaged result
    series = second / "timeseries.parquet"
    if series.exists():
        series.write_bytes(series.read_bytes()[:20])  # truncated time series
    proc = _study(sweep)
    assert proc.returncode == 0, proc.stderr
    assert f"job {first.name.split('_')[0]} will run again: its result.json is damaged" in (
        proc.stdout
    )
    summary = _summary(sweep)
    assert summary["n_jobs"] == 2 and summary["counts"]["ok"] == 2  # type: ignore[index]
    assert (sweep / ".jobs" / "replaced").is_dir()
    proc = _study(sweep, "hydra.launcher.resume=false")  # never mixes old and new
    assert proc.returncode == 0, proc.stderr
    summary = _summary(sweep)
    assert summary["n_jobs"] == 2 and summary["counts"]["ok"] == 2  # type: ignore[index]
    jobs = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(jobs) == 2 and len(list((sweep / ".jobs" / "replaced").iterdir())) >= 3


# ------------------------------------------------------------------------------------- locks


def test_a_second_study_on_the_same_folder_stops_naming_the_first(tmp_path):
    first = _start_app(tmp_path, "sleep_s=4")
    _wait_for(tmp_path / "0" / "job.json")
    second = _start_app(tmp_path, "sleep_s=0")
    _, err = second.communicate(timeout=WAIT_S)
    assert second.returncode == 2 and err.count("\n") == 1, err
    assert err.startswith("Error: ") and f"pid {first.pid}" in err
    _, err = first.communicate(timeout=WAIT_S)
    assert first.returncode == 0, err
    assert json.loads((tmp_path / "0" / "job.json").read_text())["x"] == 0


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    lock = {"pid": int(dead.stdout), "host": os.uname().nodename, "started_unix_s": 0.0}
    (tmp_path / ".llem.lock").write_text(json.dumps(lock))
    proc = _start_app(tmp_path, "x=1")
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    assert "took over a stale lock" in out and not (tmp_path / ".llem.lock").exists()


# ---------------------------------------------------------------------- bad input, one line

BAD = [
    (["seed=-5"], "seed=-5 is out of range"),
    (["seed=4294967296"], "seed=4294967296 is out of range"),
    (["warmup_batches=1000000000"], "warmup_batches=1000000000 is out of range"),
    (["dataset=synthetic", "dataset.input_tokens=1000000000"], "dataset.input_tokens="),
    (["dataset=synthetic", "dataset.input_tokens=5000"], "has a context of 4096 tokens"),
    (["repeats=2", "repeat_gap_s=1e300"], "repeat_gap_s=1e+300 is out of range"),
    (["repeats=100000"], "repeats=100000 is out of range"),
    (["energy.baseline.duration_s=1e12"], "energy.baseline.duration_s="),
    (["energy.country_iso_code=XX"], "is not a country code: use three capital letters"),
    (["energy.country_iso_code=QQQ"], "not a country CodeCarbon knows"),
    (["model.slug=../../../x"], "model.slug='../../../x' cannot name a folder"),
    (["model.slug=a/b"], "cannot name a folder"),
    (["hydra.run.dir=/proc/x"], "/proc/x cannot be written"),
    (["output_dir=/proc/x"], "output_dir /proc/x cannot be written"),
    (["-m", "hydra.launcher.timeout_s=-1", "batch=1,2"], "timeout_s must be > 0"),
    (["-m", "batch=1,2", "--cfg", "job"], "-m cannot be combined with --cfg"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_error_line_before_anything_runs(tmp_path, args, needle):
    proc = run_llem(*args, "n=2", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("Error: ") and needle in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_study_checks_n_against_the_dataset_before_any_job(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(20)))
    proc = run_llem(
        "-m", "batch=1,4,16", "n=32", "dataset=jsonl", f"dataset.path={prompts}", cwd=tmp_path
    )
    assert proc.returncode == 2 and "3 of 3 jobs are invalid; nothing was run" in proc.stderr
    assert "n=32 but the dataset has 20 prompts" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["p.jsonl"]


def test_an_output_path_through_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = run_llem("output_dir=afile/results", "n=2", cwd=tmp_path)
    assert proc.returncode == 2 and "afile is not a folder" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


@pytest.mark.parametrize(
    "data,needle",
    [
        (b'{"prompt": "ok"}\n{"prompt": "bad \xff byte"}\n', "line 2 is not UTF-8 text"),
        (b'{"prompt": "ok"}\n{"prompt": "x \\ud800 y"}\n', "line 2: 'prompt' holds an unpaired"),
    ],
    ids=["bad-byte", "lone-surrogate"],
)
def test_undecodable_prompt_files_name_file_and_line(tmp_path, data, needle):
    prompts = tmp_path / "p.jsonl"
    prompts.write_bytes(data)
    proc = run_llem("dataset=jsonl", f"dataset.path={prompts}", "n=1", cwd=tmp_path)
    assert proc.returncode == 2 and needle in proc.stderr and str(prompts) in proc.stderr
    assert "Traceback" not in proc.stderr and [p.name for p in tmp_path.iterdir()] == ["p.jsonl"]


def _broken_copy(tiny_model_dir: Path, folder: Path, damage: str) -> Path:
    shutil.copytree(tiny_model_dir, folder)
    if damage == "empty-config":
        (folder / "config.json").write_text("{}")
    elif damage == "no-tokenizer":
        for name in ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt"):
            (folder / name).unlink(missing_ok=True)
    else:
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    return folder


@pytest.mark.parametrize(
    "damage,needle",
    [
        ("empty-config", "config.json has no model_type"),
        ("no-tokenizer", "no tokenizer files"),
        ("truncated-weights", "model.safetensors"),
    ],
)
def test_an_incomplete_model_folder_says_what_is_missing(tmp_path, tiny_model_dir, damage, needle):
    model = _broken_copy(tiny_model_dir, tmp_path / "model", damage)
    proc = run_llem(f"model.name_or_path={model}", "n=1", cwd=tmp_path)
    assert proc.returncode == 2 and "is not a complete model folder" in proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.slow
def test_a_damaged_builtin_model_cache_is_rebuilt(tmp_path, tiny_model_dir):
    cache = tmp_path / "cache"
    _broken_copy(tiny_model_dir, cache / "models" / tiny_model_dir.name, "truncated-weights")
    proc = run_llem(
        "n=1",
        "max_new_tokens=2",
        "warmup_batches=0",
        "flops.enabled=false",
        "energy.baseline.enabled=false",
        cwd=tmp_path,
        env={"LLEM_CACHE_DIR": str(cache)},
    )
    assert proc.returncode == 0, proc.stderr
    weights = cache / "models" / tiny_model_dir.name / "model.safetensors"
    assert weights.stat().st_size == (tiny_model_dir / "model.safetensors").stat().st_size


# ---------------------------------------------------------------------------- hostile files

HOSTILE = {
    "alias-bomb": "defaults: [llem, _self_]\n"
    + 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    + "".join(
        f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    ),
    "3-MB": "defaults: [llem, _self_]\n" + "".join(f"k{i}: {i}\n" for i in range(300_000)),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_experiment_files_stop_at_once(tmp_path, name):
    (tmp_path / "exp.yaml").write_text(HOSTILE[name])
    proc = run_llem("run", "exp.yaml", cwd=tmp_path, timeout=20)  # the old llem ran for minutes
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert ("aliases" in proc.stderr) if name == "alias-bomb" else ("too large" in proc.stderr)
    assert [p.name for p in tmp_path.iterdir()] == ["exp.yaml"]


# --------------------------------------------------------------------------------- reproduce


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("finished")
    proc = run_llem(
        "n=1",
        "max_new_tokens=2",
        "warmup_batches=0",
        "flops.enabled=false",
        "energy.baseline.enabled=false",
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr
    (run,) = (root / "results").iterdir()
    return run


@pytest.mark.parametrize(
    "damage,needle",
    [
        ("empty-result", "is not a valid llem result"),
        ("garbage-result", "is not a valid llem result"),
        ("garbage-hydra", "hydra.yaml is damaged"),
    ],
)
def test_reproduce_checks_its_folder_before_making_one(tmp_path, finished_run, damage, needle):
    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder)
    target = folder / (".hydra/hydra.yaml" if damage == "garbage-hydra" else "result.json")
    target.write_bytes(b"" if damage == "empty-result" else b"\x00{[ not: [yaml")
    before = sorted(finished_run.parent.iterdir())
    proc = run_llem("reproduce", str(folder), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("Error: ") and needle in proc.stderr
    assert "Traceback" not in proc.stderr and sorted(finished_run.parent.iterdir()) == before


def test_a_result_that_cannot_be_written_goes_to_a_fallback_folder(
    tmp_path, finished_run, capsys, monkeypatch
):
    from llem.app import _keep
    from llem.result import Result

    monkeypatch.setenv("LLEM_CACHE_DIR", str(tmp_path / "cache"))
    result = Result.model_validate_json((finished_run / "result.json").read_bytes())
    path = _keep(result, Path("/proc/llem-cannot-write"))  # a real write that fails
    assert path.parent.parent == tmp_path / "cache" / "unsaved"
    assert Result.model_validate_json(path.read_bytes()) == result
    assert str(path) in capsys.readouterr().err


@pytest.fixture
def signal_state():
    """The pytest process's signal handlers (and llem's process-wide 'stopping' mark) as they
    were."""
    import llem.signals

    handlers = {s: signal.getsignal(s) for s in llem.signals.HANDLED}
    yield
    llem.signals._ENDING[0] = False
    for s, h in handlers.items():
        signal.signal(s, h)


def test_a_stop_swallowed_by_a_finaliser_is_raised_again(signal_state):
    """A signal whose handler runs inside a finaliser (as the garbage collector runs them) would be
    lost: Python cannot propagate an exception from there. It is delivered again."""
    from llem.signals import Stopped, stop_on_signals

    class SignalledWhileFinalised:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # the handler runs here, inside the finaliser
                pass

    with pytest.raises(Stopped), stop_on_signals():
        SignalledWhileFinalised()
        deadline = time.time() + 5
        while time.time() < deadline:
            pass
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # stopping: until the exit


def test_a_stop_inside_the_import_machinery_is_raised_just_after_it(signal_state):
    """Raised inside importlib's own code, a stop can leave the import lock held, and the meter
    thread, importing, then waits forever (and the stop with it): it is delivered again once the
    main thread is out of there."""
    from llem.signals import Stopped, stop_on_signals

    where: dict[str, object] = {}
    exec(
        compile("import sys; frame = sys._getframe()", "<frozen importlib._bootstrap>", "exec"),
        where,
    )
    returned = False
    with pytest.raises(Stopped), stop_on_signals():
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, where["frame"])  # as if it landed there: nothing raised
        returned = True
        deadline = time.time() + 5
        while time.time() < deadline:
            pass
    assert returned


def _start_long_run(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(LLEM), "dataset=synthetic", "n=100000", "max_new_tokens=64", "batch=1", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[str], sig: int) -> str:
    """Send ``sig`` to ``proc``, wait for its end (killed after :data:`WAIT_S`), return its
    stderr."""
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        proc.kill()
        proc.communicate()
    return err


def _when(path_glob: Path) -> None:
    deadline = time.time() + 120
    while not list(path_glob.parent.glob(path_glob.name)) and time.time() < deadline:
        time.sleep(0.01)


@pytest.mark.slow
def test_a_signal_while_the_run_starts_leaves_nothing(tmp_path):
    """SIGTERM as soon as Hydra has made the run folder, before llem's run has begun (Hydra is
    still writing .hydra/ and the log): exit 143, one line, no folder left."""
    proc = _start_long_run(tmp_path)
    _when(tmp_path / "results" / "*" / "llem.log")
    err = _stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "Error: stopped by SIGTERM; nothing was recorded"
    assert "Traceback" not in err and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_stopped_run_in_the_users_own_folder_removes_only_its_own_files(tmp_path):
    (tmp_path / "notes.txt").write_text("the user's")
    proc = _start_long_run(tmp_path, "hydra.run.dir=.")
    _when(tmp_path / "llem.log")
    time.sleep(3)  # the model is loading or generating
    err = _stop(proc, signal.SIGINT)
    assert proc.returncode == 130, err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
