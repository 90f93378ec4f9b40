"""Fault injection in a study's machinery (issue 20): a Ctrl-C while a job is being forked, a
plugin that prints into the fork server, a fork server killed mid-study, launcher options that
would wait forever, a resume that cannot move a job folder, two studies racing for a stale lock,
a Ctrl-C while the fork server imports.

Real launchers, real signals, real files; the counts in docs/reliability.md come from these tests
too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import LLEM, REPO, alive, command_lines, gone_within, run_llem

pytestmark = pytest.mark.e2e
APP = REPO / "tests" / "apps" / "trivial_app.py"
WAIT_S = 60.0
FORK_DELAY_S = 2.0  # how long the test plugin holds each fork of the fork server


def _plugin(root: Path, name: str, code: str) -> Path:
    """A Hydra plugin module (Hydra's plugin scan imports it in every llem process, the fork
    server included); returns the folder to put on PYTHONPATH."""
    package = root / "hydra_plugins" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(code)
    return root


def _start_app(sweep: Path, *args: str, path: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "SWEEP_DIR": str(sweep)}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), str(REPO)])
    return subprocess.Popen(
        [sys.executable, str(APP), "-m", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def _wait_for(path: Path, poll_s: float = 0.05) -> None:
    deadline = time.time() + WAIT_S
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(poll_s)


def _summary(sweep: Path) -> dict[str, object]:
    data = json.loads((sweep / "study_summary.json").read_text())
    assert isinstance(data, dict)
    return data


def _forkserver_processes(launcher: int) -> list[int]:
    """Live processes that are the fork server of ``launcher`` or were forked from it (a forked
    job keeps the server's command line)."""
    found = []
    for pid, argv in command_lines():
        if b"llem.study.forkserver" in argv and str(launcher).encode() in argv and alive(pid):
            found.append(pid)
    return found


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return [
            int(c)
            for t in tasks
            for c in (t / "children").read_text().split()
            if (t / "children").exists()
        ]
    except OSError:
        return []


# ------------------------------------------------------------------------- the fork server


def test_ctrl_c_while_a_job_is_forked_stops_and_records_it_at_once(tmp_path):
    """The plugin holds each fork for FORK_DELAY_S: the Ctrl-C, sent as soon as the launcher has
    written the job's spec, lands while the launcher waits for the forked job's pid. Repeated:
    where it lands in that window varies."""
    path = _plugin(
        tmp_path / "plugin",
        "slow_fork",
        f"import os, time\nos.register_at_fork(before=lambda: time.sleep({FORK_DELAY_S}))\n",
    )
    for attempt in range(2):
        sweep = tmp_path / f"try{attempt}"
        proc = _start_app(sweep, "sleep_s=6,0", path=path)
        _wait_for(sweep / ".jobs" / "0.pkl", poll_s=0.002)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=WAIT_S)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and not _forkserver_processes(proc.pid)
        error = json.loads((sweep / "0" / "error.json").read_text())
        assert error["status"] == "interrupted", error
        assert not (sweep / "0" / "done.json").exists()  # stopped, not run to its end
        summary = _summary(sweep)
        assert summary["final"] is True and summary["interrupted"] is True
        counts = summary["counts"]
        assert isinstance(counts, dict) and counts.get("ok", 0) == 0, counts


def test_a_plugin_that_prints_at_import_cannot_corrupt_the_fork_server(tmp_path):
    path = _plugin(
        tmp_path / "plugin", "chatty", 'print("hello from a chatty plugin", flush=True)\n'
    )
    sweep = tmp_path / "s"
    proc = _start_app(sweep, "x=1,2", path=path)
    try:
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "JSONDecodeError" not in err
    plan = json.loads((sweep / "study.json").read_text())["jobs"]
    assert {j["process"] for j in plan} == {"fork server"}
    for num in (0, 1):  # where a fresh interpreter would have printed it
        assert "hello from a chatty plugin" in (sweep / ".jobs" / f"{num}.log").read_text()


def test_a_killed_fork_server_never_fails_a_finished_study(tmp_path):
    proc = _start_app(tmp_path, "x=1,2,3", "hydra.launcher.cooldown_s=3")
    assert proc.stdout is not None
    seen = [proc.stdout.readline()]  # its lines until job 1 is booked
    while "job 1/3 ok in" not in seen[-1]:
        seen.append(proc.stdout.readline())
        assert seen[-1], seen  # the launcher ended first
    servers = [p for p in _forkserver_processes(proc.pid) if p in _children(proc.pid)]
    assert len(servers) == 1
    os.kill(servers[0], signal.SIGKILL)  # between jobs: job 0 is done, job 1 waits its cooldown
    out, err = proc.communicate(timeout=WAIT_S)
    out = "".join(seen) + out
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert [f"job {n}/3 ok in" in out for n in (1, 2, 3)] == [True] * 3, out
    summary = _summary(tmp_path)  # the app writes no result.json: its jobs count as incomplete
    assert summary["final"] is True and summary["interrupted"] is False
    counts = summary["counts"]
    assert isinstance(counts, dict) and {k: n for k, n in counts.items() if n} == {"incomplete": 3}
    plan = json.loads((tmp_path / "study.json").read_text())["jobs"]
    assert plan[0]["process"] == "fork server"
    assert all(j["process"].startswith("fresh interpreter (the fork server") for j in plan[1:])


@pytest.mark.slow
def test_ctrl_c_while_the_fork_server_imports_leaves_no_helper(tmp_path, tiny_model_dir):
    """CodeCarbon's cache fill starts ``cpuinfo`` processes in the fork server: a Ctrl-C while it
    runs ends them with llem, none outlives it."""
    proc = subprocess.Popen(
        [str(LLEM), "-m", "batch=1,2", "n=2", f"hydra.sweep.dir={tmp_path / 's'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )  # fmt: skip
    helpers: set[int] = set()
    deadline = time.time() + WAIT_S
    while not helpers and time.time() < deadline and proc.poll() is None:
        for server in _forkserver_processes(proc.pid):
            helpers.update(_children(server))
        time.sleep(0.01)
    assert helpers, "the fork server started no helper process"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 130, err
    assert [pid for pid in helpers if alive(pid)] == []
    assert not _forkserver_processes(proc.pid)


# ------------------------------------------------------------------------- launcher options

BOUNDS = [
    ("cooldown_s=1e300", "hydra.launcher.cooldown_s=1e+300 is out of range: at most 3600"),
    ("timeout_s=1e300", "hydra.launcher.timeout_s=1e+300 is out of range: at most 604800"),
    ("timeout_s=nan", "hydra.launcher.timeout_s must be > 0"),
    ("cooldown_s=inf", "hydra.launcher.cooldown_s=inf is out of range"),
    ("gpus_per_job=100000", "hydra.launcher.gpus_per_job=100000 is out of range: at most 256"),
    ("max_parallel=100000", "hydra.launcher.max_parallel=100000 is out of range: at most 1024"),
]


@pytest.mark.parametrize("option,message", BOUNDS, ids=[o for o, _ in BOUNDS])
def test_a_launcher_option_beyond_its_bound_stops_in_preflight(tmp_path, option, message):
    proc = run_llem(
        "-m", "batch=1,2", "n=2", f"hydra.launcher.{option}", f"hydra.sweep.dir={tmp_path}/s",
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"Error: {proc.stderr[7:].strip()}"]
    assert proc.stderr.startswith(f"Error: {message}"), proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "key,value", [("poll_s", 1e300), ("grace_min", 1e9), ("lost_after_s", float("inf"))]
)
def test_slurm_waits_are_bounded(key, value):
    from llem.errors import UsageError
    from llem.study.slurm_launcher import MAXIMA, Watch

    params: dict[str, object] = {
        "poll_s": 1.0, "timeout_min": 60, "grace_min": 5.0, "lost_after_s": 300.0,
        "array_parallelism": 256, "pending_timeout_min": None,
    }  # fmt: skip
    assert Watch.of(params).poll_s == 1.0
    with pytest.raises(UsageError, match=f"hydra.launcher.{key}=.* is out of range: at most"):
        Watch.of(params | {key: value})
    assert set(params) <= set(MAXIMA)


# ------------------------------------------------------------------------- resume and locks


def test_a_resume_that_cannot_move_a_job_folder_is_one_error_line(tmp_path):
    first = _start_app(tmp_path, "action=fail")
    first.communicate(timeout=WAIT_S)
    assert first.returncode == 1 and (tmp_path / "0" / "error.json").exists()
    replaced = tmp_path / ".jobs" / "replaced"
    if replaced.exists():
        replaced.rmdir()
    replaced.write_text("a file where the folder of replaced jobs goes")
    second = _start_app(tmp_path, "action=none")
    out, err = second.communicate(timeout=WAIT_S)
    assert second.returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err + out, err
    assert err.startswith("Error: cannot move the earlier outcome of job 0"), err
    assert str(tmp_path / "0") in err
    assert (tmp_path / "0" / "error.json").exists()  # left as it was
    assert not (tmp_path / ".llem.lock").exists()


_RACER = """
import sys, time
from pathlib import Path
from llem.errors import UsageError
from llem.lock import FolderLock
lock = FolderLock(Path(sys.argv[1]))
while time.time() < float(sys.argv[2]):
    pass
try:
    lock.acquire()
except UsageError as exc:
    print("lost:", exc, flush=True)
    sys.exit(2)
print("won", lock.warning, flush=True)
time.sleep(3)
lock.release()
"""


def test_of_racers_for_a_stale_lock_one_wins_and_the_others_name_it(tmp_path):
    for attempt in range(3):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              check=True, capture_output=True, text=True)  # fmt: skip
        stale = {"pid": int(dead.stdout), "host": os.uname().nodename, "started_unix_s": 0.0}
        (folder / ".llem.lock").write_text(json.dumps(stale))
        go = str(time.time() + 3)  # the racers start together, after their imports
        argv = [sys.executable, "-c", _RACER, str(folder), go]
        racers = [
            subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=REPO) for _ in range(3)
        ]
        outs = {r.pid: r.communicate(timeout=WAIT_S)[0] for r in racers}
        winners = [pid for pid, out in outs.items() if out.startswith("won")]
        assert len(winners) == 1, outs
        assert "took over a stale lock" in outs[winners[0]]
        for pid, out in outs.items():
            if pid != winners[0]:
                assert out.startswith("lost:") and f"pid {winners[0]} on " in out, outs
                assert "since " in out
        assert not (folder / ".llem.lock").exists()
        assert all(gone_within(pid, 5) for pid in outs)


@pytest.mark.slow
def test_an_llem_plugin_that_prints_goes_to_the_job_logs(tmp_path, tiny_model_dir):
    """The issue's case: ``LLEM_PLUGINS`` names a module that prints when imported (llem's app,
    which the fork server preloads, imports it)."""
    (tmp_path / "chatty_llem_plugin.py").write_text('print("chatty llem plugin", flush=True)\n')
    sweep = tmp_path / "s"
    proc = run_llem(
        "-m", "batch=1,2", "n=2", "max_new_tokens=2", "energy=none", f"hydra.sweep.dir={sweep}",
        cwd=tmp_path, timeout=240,
        env={"LLEM_PLUGINS": "chatty_llem_plugin", "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "JSONDecodeError" not in proc.stderr
    plan = json.loads((sweep / "study.json").read_text())["jobs"]
    assert {j["process"] for j in plan} == {"fork server"}
    for num in (0, 1):
        assert "chatty llem plugin" in (sweep / ".jobs" / f"{num}.log").read_text()
