"""Faults of a served run: dead or failing servers, hostile answers, stop signals, bad load values.

A served run counts only completed requests; one with none (or too many failed) is a failed run
(``error.json``, exit 1, no result). Every way a server's answer can go wrong is one classified
failed request, never a traceback. Stop signals reach the asyncio loop. Every server here is the
fake one (tests/fake_openai_server.py) on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llem.errors import ConfigError
from llem.preflight import experiment
from llem.serving.stream import StreamClient, StreamRecord, bounded_lines, request
from tests.fake_openai_server import Program, fake_server
from tests.helpers import LLEM, run_llem
from tests.serving_helpers import BASE, ENV, command, survivors

MAX_TOKENS = 8


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send(url: str, timeout_s: int = 30) -> StreamRecord:
    async def go() -> StreamRecord:
        async with StreamClient(url, timeout_s=timeout_s) as client:
            return await client.send(request(0, 4, "m", MAX_TOKENS, prompt=[1, 2, 3, 4]), 0.0)

    return asyncio.run(go())


@pytest.mark.parametrize(
    "mode,kind,needle",
    [
        ("status500", "http_status", "HTTP 500"),
        ("no_done", "truncated", "without [DONE]"),
        ("long_line", "protocol", "longer than"),
        ("deep_json", "protocol", "nests too deep"),
        ("bad_json", "protocol", "not JSON"),
        ("error_event", "server_error", "fake engine error"),
    ],
)
def test_every_bad_answer_is_one_classified_failed_request(
    mode: str, kind: str, needle: str
) -> None:
    with fake_server(Program(ttft_ms=1, chunk_gap_ms=0, mode=mode)) as url:
        rec = send(url)
    assert not rec.ok and rec.failure == kind, rec.error
    assert rec.error is not None and needle in rec.error


def test_a_stream_cut_mid_way_and_a_refused_connection_are_classified() -> None:
    with fake_server(Program(ttft_ms=1, chunk_gap_ms=0, cut_after=3, cut="abort")) as url:
        cut = send(url)
    assert (cut.ok, cut.failure) == (False, "truncated"), cut.error
    refused = send(f"http://127.0.0.1:{dead_port()}")
    assert (refused.ok, refused.failure) == (False, "connection"), refused.error


def test_a_hang_is_a_timeout() -> None:
    with fake_server(Program(ttft_ms=1, mode="hang")) as url:
        t0 = time.monotonic()
        rec = send(url, timeout_s=1)
    assert (rec.ok, rec.failure) == (False, "timeout"), rec.error
    assert time.monotonic() - t0 < 15


def test_usage_claims_are_capped_at_max_tokens_and_flagged() -> None:
    with fake_server(Program(ttft_ms=1, chunk_gap_ms=0, mode="overclaim", overclaim=10**7)) as url:
        rec = send(url)
    assert rec.ok, rec.error
    assert rec.output_tokens == MAX_TOKENS and rec.overclaimed


def test_event_lines_are_bounded_across_chunks() -> None:
    async def chunks() -> list[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            yield b"data: 1\n\nda"
            yield b"ta: 2\n\n"
            yield b"x" * 50

        return [line async for line in bounded_lines(gen(), limit=40)]

    with pytest.raises(Exception, match="longer than 40 bytes"):
        asyncio.run(chunks())


def result_json(cwd: Path) -> list[Path]:
    return list(cwd.glob("results/*/result.json"))


def test_a_dead_url_stops_in_preflight(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{dead_port()}"
    out = run_llem(
        *BASE, "load=poisson", "load.rate=100", "n=2", "backend.launch=none", f"backend.url={url}",
        cwd=tmp_path, env=ENV, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: backend.url="), out.stderr
    assert "no server answers" in lines[0]
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "url,needle",
    [
        ("ftp://127.0.0.1:21", "must start with http:// or https://"),
        ("http://127.0.0.1:99999", "is malformed"),
        ("http://:8000", "has no host"),
        ("127.0.0.1:8000", "must start with http"),
    ],
)
def test_malformed_urls_are_rejected_by_the_schema(url: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        experiment(
            "backend=openai", "load=poisson", "energy=none", "backend.launch=none",
            f"backend.url='{url}'",
        )  # fmt: skip


def test_a_host_that_only_looks_local_is_not_local() -> None:
    with pytest.raises(ConfigError, match="is not on this machine"):
        experiment(
            "backend=openai", "load=poisson", "backend.launch=none",
            "backend.url=http://127.0.0.1.example.invalid:80",
        )  # fmt: skip
    exp = experiment(
        "backend=openai", "load=poisson", "backend.launch=none", "backend.url=http://localhost:8"
    )
    assert exp.load.name == "poisson"


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["load=poisson", "load.rate=1e-9"], "rate"),
        (["load=poisson", "load.duration_s=1e300"], "duration_s"),
        (["load=poisson", "load.rate=1000", "load.duration_s=86400"], "lower load.rate"),
        (["load=concurrency", "load.concurrency=1000000000"], "concurrency"),
        (["load=poisson", "load.max_concurrency=1000000000"], "max_concurrency"),
        (["load=poisson", "load.max_failed_fraction=2"], "max_failed_fraction"),
        (["load=poisson", "backend.request_timeout_s=1000000000"], "request_timeout_s"),
    ],
)
def test_load_values_that_would_hang_or_exhaust_memory_are_refused(
    overrides: list[str], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        experiment("backend=openai", "energy=none", "backend.launch=none",
                   "backend.url=http://127.0.0.1:8", *overrides)  # fmt: skip


def served(tmp_path: Path, program: Program, *extra: str) -> subprocess.CompletedProcess[str]:
    with fake_server(program) as url:
        return run_llem(
            *BASE, f"max_new_tokens={MAX_TOKENS}", "load=poisson", "load.rate=50", "n=8",
            "backend.launch=none", f"backend.url={url}", "backend.request_timeout_s=2", *extra,
            cwd=tmp_path, env=ENV, timeout=180,
        )  # fmt: skip


@pytest.mark.parametrize("mode", ["status500", "no_done", "hang"])
def test_a_run_with_no_completed_request_fails_with_error_json(tmp_path: Path, mode: str) -> None:
    out = served(tmp_path, Program(ttft_ms=1, chunk_gap_ms=0, mode=mode))
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no request completed" in errors[0], out.stderr
    assert not result_json(tmp_path)
    (err,) = tmp_path.glob("results/*/error.json")
    record = json.loads(err.read_text())
    assert record["status"] == "failed" and record["exit_code"] == 1
    assert "8 of 8 requests failed" in record["error"] and "first failure" in record["error"]


def test_failed_requests_are_counted_apart_and_only_completed_ones_measured(
    tmp_path: Path,
) -> None:
    program = Program(ttft_ms=1, chunk_gap_ms=0, mode="status500", every=4)
    out = served(tmp_path, program, "load.max_failed_fraction=0.5", "warmup_batches=0")
    assert out.returncode == 0, out.stderr
    (path,) = result_json(tmp_path)
    r = json.loads(path.read_text())
    s = r["serving"]
    assert s["failures"] == {"http_status": 2}
    assert r["tokens"]["requests"] == 6 and r["tokens"]["output"] == 6 * MAX_TOKENS
    assert len(r["requests"]) == 6
    assert s["whole_run"]["requests_completed"] == 6 and s["whole_run"]["requests_failed"] == 2
    assert s["whole_run"]["output_tokens"] == 6 * MAX_TOKENS
    assert r["throughput"]["requests_per_s"] == pytest.approx(6 / r["timing"]["measured_window_s"])


def test_more_failures_than_the_bound_fail_the_run(tmp_path: Path) -> None:
    program = Program(ttft_ms=1, chunk_gap_ms=0, mode="status500", every=4)
    out = served(tmp_path, program, "warmup_batches=0")  # default bound 0.01 < 2/8
    assert out.returncode == 1, out.stderr
    assert "more than load.max_failed_fraction=0.01" in out.stderr
    assert not result_json(tmp_path)


def test_garbage_from_metrics_is_a_counted_failed_poll(tmp_path: Path) -> None:
    out = served(tmp_path, Program(ttft_ms=1, chunk_gap_ms=0, bad_metrics=True))
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "Exception in thread" not in out.stderr, out.stderr
    (path,) = result_json(tmp_path)
    s = json.loads(path.read_text())["serving"]
    assert s["server_metrics_errors"] >= 1 and s["server_metrics_samples"] == 0


def test_an_overclaiming_server_is_capped_and_warned(tmp_path: Path) -> None:
    out = served(tmp_path, Program(ttft_ms=1, chunk_gap_ms=0, mode="overclaim"))
    assert out.returncode == 0, out.stderr
    (path,) = result_json(tmp_path)
    r = json.loads(path.read_text())
    assert r["serving"]["usage_overclaims"] == 8 and r["tokens"]["output"] == 8 * MAX_TOKENS
    assert any("claimed more output tokens" in w for w in r["warnings"])


@pytest.mark.slow
def test_a_study_records_a_failed_served_job_as_failed(tmp_path: Path) -> None:
    with fake_server(Program(ttft_ms=1, chunk_gap_ms=0, mode="status500")) as url:
        out = run_llem(
            "-m", *BASE, "load=poisson", "n=4", "load.rate=50,100", "backend.launch=none",
            f"backend.url={url}", f"hydra.sweep.dir={tmp_path / 'study'}",
            cwd=tmp_path, env=ENV, timeout=400,
        )  # fmt: skip
    assert out.returncode != 0, out.stderr
    rows = json.loads((tmp_path / "study" / "study_summary.json").read_text())["jobs"]
    assert [j["status"] for j in rows] == ["failed", "failed"]


def stop_served_run(tmp_path: Path, signals: list[signal.Signals], wait_s: float) -> None:
    """Start a long served run (llem starts the fake server), send ``signals`` once the load is on,
    and check the stop: exit 128 + the first, no swallowed stop, no server left, no result."""
    cmd, marker = command()
    proc = subprocess.Popen(
        [
            str(LLEM),
            *BASE,
            "load=poisson",
            "load.rate=300",  # a busy loop: a signal often lands inside a callback
            "load.duration_s=60",
            "n=8",
            "backend.launch=command",
            cmd,
        ],
        cwd=tmp_path,
        env={**os.environ, **ENV},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not survivors(marker) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert survivors(marker), f"the server never started: {proc.poll()}"
        time.sleep(wait_s)
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.02)
        _, err = proc.communicate(timeout=45)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signals[0], err
    assert "Exception in callback" not in err and "Traceback" not in err, err
    assert survivors(marker) == []
    assert not result_json(tmp_path)


@pytest.mark.parametrize("wait_s", [0.5, 1.5, 2.5, 3.5])
def test_sigterm_during_the_load_is_a_clean_stop(tmp_path: Path, wait_s: float) -> None:
    stop_served_run(tmp_path, [signal.SIGTERM], wait_s)


def test_repeated_signals_never_hang(tmp_path: Path) -> None:
    stop_served_run(tmp_path, [signal.SIGTERM, signal.SIGTERM, signal.SIGINT], 2.0)


def _served_so_far(server_log: Path) -> int:
    """How many requests the fake server behind ``server_log`` has received (0: not yet known)."""
    import urllib.request

    ports = [ln.split()[1] for ln in server_log.read_text().splitlines() if ln.startswith("PORT ")]
    if not ports:
        return 0
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/requests", timeout=5) as answer:
        return len(json.load(answer))


def test_a_served_run_stopped_during_its_load_is_kept_marked_interrupted(tmp_path: Path) -> None:
    """SIGTERM once the measured load is under way: exit 143, no result.json, and the run folder
    kept with error.json saying interrupted and what had been served (its .hydra/ and server log
    beside it)."""
    cmd, marker = command()
    args = [*BASE, "load=poisson", "load.rate=50", "load.duration_s=60", "n=8"]
    proc = subprocess.Popen(
        [str(LLEM), *args, "backend.launch=command", cmd],
        cwd=tmp_path,
        env={**os.environ, **ENV},
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        served = 0
        while served < 30 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            logs = list(tmp_path.rglob("server.log"))
            served = _served_so_far(logs[0]) if logs else 0
        assert served >= 30, f"the load never got going: {proc.poll()}"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=45)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert not result_json(tmp_path) and survivors(marker) == []
    (error_file,) = tmp_path.rglob("error.json")
    record = json.loads(error_file.read_text())
    assert record["status"] == "interrupted" and record["exit_code"] == 143
    assert "requests completed" in record["error"] and "not a measurement" in record["error"]
    completed = int(record["error"].split("(")[1].split()[0])
    assert completed >= 20  # at 50 req/s for over half a second, less the warm-up
    assert (error_file.parent / ".hydra" / "hydra.yaml").is_file()
    lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "recorded as interrupted" in lines[0], err
