"""Served runs end to end: real ``llem backend=openai`` subprocesses against the fake
OpenAI-compatible server (started by llem with ``backend.launch=command``, or already running with
``launch=none``), real result files; and that no server process outlives a run (``ps``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from llem.errors import ConfigError
from llem.preflight import experiment
from tests.fake_openai_server import Program, fake_server
from tests.helpers import LLEM, REPO, run_llem
from tests.serving_helpers import BASE, ENV, command, overrides_list, survivors


def result_of(cwd: Path) -> tuple[Path, dict]:
    (path,) = cwd.glob("results/*/result.json")
    return path.parent, json.loads(path.read_text())


def test_poisson_run_with_a_server_llem_starts(tmp_path: Path) -> None:
    cmd, marker = command()
    out = run_llem(
        *BASE, "load=poisson", "load.rate=40", "n=24", "load.slo.ttft_ms=1000",
        "backend.launch=command", cmd, cwd=tmp_path, env=ENV, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert survivors(marker) == []
    folder, r = result_of(tmp_path)
    s = r["serving"]
    assert (s["load"], s["launch"], s["errors"]) == ("poisson", "command", [])
    assert s["usage_mismatches"] == s["input_mismatches"] == 0
    assert (folder / s["server_log"]).read_text().startswith("PORT ")
    whole, steady = s["whole_run"], s["steady"]
    assert whole["requests_sent"] == whole["requests_completed"] == 24
    assert whole["output_tokens"] == 24 * 8 == r["tokens"]["output"]
    assert whole["energy_j"] is None and whole["energy_reason"]
    assert (
        whole["latency"]["ttft_ms"]["count"] == 24 and whole["latency"]["itl_ms"]["count"] == 24 * 7
    )
    assert 0 < steady["duration_s"] < whole["duration_s"]
    assert steady["requests_sent"] <= 24 and steady["output_tokens"] < whole["output_tokens"]
    assert steady["goodput_requests_per_s"] is not None
    assert len(r["requests"]) == 24 and r["energy"]["total_j"] is None
    rows = pq.read_table(folder / "timeseries.parquet").to_pylist()
    server = [row for row in rows if row["device"] == "server"]
    assert server and all(row["server_requests_running"] is not None for row in server)


def test_concurrency_run_against_a_running_server(tmp_path: Path) -> None:
    with fake_server(Program(ttft_ms=5, chunk_gap_ms=1, max_running=4)) as url:
        out = run_llem(
            *BASE, "load=concurrency", "load.concurrency=4", "n=20",
            "backend.launch=none", f"backend.url={url}", cwd=tmp_path, env=ENV, timeout=120,
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    _, r = result_of(tmp_path)
    s = r["serving"]
    assert s["launch"] == "none" and s["server_log"] is None and s["server_startup_s"] is None
    assert s["whole_run"]["requests_completed"] == 20 and s["whole_run"]["output_tokens"] == 160
    assert s["steady"] is not None and s["steady_reason"] is None


def test_a_server_that_never_gets_healthy_is_one_error_with_its_log_tail(tmp_path: Path) -> None:
    marker = f"never-healthy-{uuid.uuid4().hex}"
    script = f'print("booting {marker}", flush=True); import time; time.sleep(120)'
    cmd = overrides_list([sys.executable, "-c", script])
    out = run_llem(
        *BASE, "load=poisson", "n=4", "backend.launch=command", cmd,
        "backend.health_timeout_s=2", cwd=tmp_path, env=ENV, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("Error:")]
    assert len(errors) == 1, out.stderr
    first, *tail = lines[errors[0] :]
    assert first.startswith("Error: the server was not healthy after 2 s")
    assert any(f"booting {marker}" in line for line in tail)
    assert "Traceback" not in out.stderr
    assert survivors(marker) == []
    assert not list(tmp_path.glob("results/*/result.json"))


@pytest.mark.slow
def test_a_server_that_dies_mid_run_fails_the_job_with_its_status(tmp_path: Path) -> None:
    cmd, marker = command("--die-after-ms", "2500")
    out = run_llem(
        *BASE, "load=poisson", "load.rate=4", "n=40", "backend.launch=command", cmd,
        cwd=tmp_path, env=ENV, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "\nError: the server exited with status 3 during the run" in "\n" + out.stderr
    assert "Traceback" not in out.stderr
    assert survivors(marker) == []


def test_sigterm_stops_the_run_and_its_server(tmp_path: Path) -> None:
    cmd, marker = command()
    proc = subprocess.Popen(
        [str(LLEM), *BASE, "load=poisson", "load.rate=2", "n=100", "backend.launch=command", cmd],
        cwd=tmp_path,
        env={**os.environ, **ENV},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not survivors(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert survivors(marker), "the server never started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert survivors(marker) == []


def test_without_vllm_the_error_names_the_extra(tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    if __import__("importlib.util").util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    out = run_llem("backend=openai", "load=poisson", "n=4", cwd=tmp_path, env=ENV, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "Error: backend=openai with backend.launch=vllm needs vLLM: pip install "
        "llenergymeasure[vllm] (or backend.launch=none backend.url=<running server>)"
    ]
    assert not list(tmp_path.glob("results/*"))


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["backend=openai"], "backend=openai measures a server under a load"),
        (["load=concurrency"], "load=concurrency needs a server: use backend=openai"),
        (
            [
                "backend=openai",
                "load=poisson",
                "backend.launch=none",
                "backend.url=http://10.1.2.3:80",
            ],
            "is not on this machine",
        ),
        (
            ["backend=openai", "load=poisson", "backend.launch=none"],
            "launch=none needs backend.url",
        ),
        (["backend=openai", "load=poisson", "backend.launch=command"], "needs backend.command"),
        (["backend=openai", "load=poisson", "repeats=3"], "a served run is measured once"),
    ],
)
def test_load_and_server_rules(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        experiment(*overrides)


def test_remote_server_is_allowed_without_meters() -> None:
    exp = experiment(
        "backend=openai", "load=poisson", "energy=none", "backend.launch=none",
        "backend.url=http://10.1.2.3:80",
    )  # fmt: skip
    assert exp.load.name == "poisson"


def test_best_load_is_the_lowest_j_per_token_meeting_the_slos(tmp_path: Path) -> None:
    from llem.study.plot import best_load_row, write_plot

    def job(rate: float, tok_s: float, j: float | None, slo: float | None) -> dict:
        return {
            "num": int(rate), "status": "ok", "param.load.rate": rate, "output_tokens_per_s": tok_s,
            "steady_output_tokens_per_s": tok_s, "steady_energy_per_output_token_j": j,
            "steady_slo_attainment": slo, "steady_e2e_p50_ms": 50.0, "steady_e2e_p99_ms": 90.0,
        }  # fmt: skip

    rows = [
        job(1, 30, 0.9, 1.0),
        job(2, 60, 0.5, 1.0),
        job(4, 110, 0.3, 0.7),
        job(8, 120, None, 1.0),
    ]
    assert best_load_row(rows)["param.load.rate"] == 2  # rate 4 is cheaper but misses its SLOs
    assert best_load_row([job(1, 30, 0.9, None), job(2, 60, 0.4, None)])["param.load.rate"] == 2
    assert best_load_row([job(1, 30, None, None)]) is None
    png = tmp_path / "study_pareto.png"
    assert write_plot(png, rows, ["load.rate"]) and png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_a_rate_sweep_writes_the_summary_and_the_load_plot(tmp_path: Path) -> None:
    cmd, marker = command()
    out = run_llem(
        "-m", *BASE, "load=poisson", "n=12", "load.rate=5,20", "backend.launch=command", cmd,
        f"hydra.sweep.dir={tmp_path / 'study'}", cwd=tmp_path, env=ENV, timeout=400,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    study = tmp_path / "study"
    rows = json.loads((study / "study_summary.json").read_text())["jobs"]
    assert [j["status"] for j in rows] == ["ok", "ok"]
    csv = (study / "study_summary.csv").read_text().splitlines()
    assert "steady_output_tokens_per_s" in csv[0] and "load.rate" in csv[0]
    assert (study / "study_pareto.png").read_bytes().startswith(b"\x89PNG")
    assert survivors(marker) == []


def test_serving_doc_load_table_is_generated_from_the_schema() -> None:
    from llem.schema_docs import main

    assert main(["--check", str(REPO / "docs" / "serving.md")]) == 0
