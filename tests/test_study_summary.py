"""The study summary of a sweep folder: statuses, columns, files, Pareto front, locking, the Hydra
callback.

Synthetic sweep folders are built from one real ``result.json`` (the tiny model measured on a
simulated GPU with 3 repeats, so energy and confidence intervals are real fields); the end-to-end
tests run the real ``llem -m ... hydra/callbacks=llem_summary`` with Hydra's basic and joblib
launchers.
"""

from __future__ import annotations

import copy
import csv
import fcntl
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from llem.keymetrics import CI_COLUMNS, key_metrics
from llem.paths import write_json_atomic
from llem.records import SUMMARY_LOCK
from llem.result import Result
from llem.stats import LOG_T
from llem.stats import summarize as summarize_repeats
from llem.study import scan as scan_mod
from llem.study.summary import (
    METRIC_COLUMNS,
    PARETO_PNG,
    SUMMARY_CSV,
    SUMMARY_JSON,
    SUMMARY_MD,
    SUMMARY_PARQUET,
    pareto_front,
    read_result,
    write_summary,
)
from tests.helpers import run_llem

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SLUG = "tiny-llama_pytorch"


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def template(tiny_model_dir, tmp_path_factory) -> dict:
    """A real result.json (as a dict): tiny model, simulated 250 W GPU, 3 repeats."""
    from llem.config import validate
    from llem.harness import Harness
    from tests.fake_nvml import FakeGpu, make_nvml
    from tests.helpers import base

    cfg = base() | {
        "n": 6,
        "batch": 3,
        "max_new_tokens": 4,
        "repeats": 3,
        "quiet": True,
        "warmup_batches": 1,
    }
    cfg["energy"] |= {"meter": "nvml", "sample_interval_ms": 20}
    cfg["energy"]["baseline"] = {"enabled": False, "duration_s": 0.3, "max_age_h": 24.0}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(
            sys.modules, "pynvml", make_nvml([FakeGpu("GPU-1234-abcd", trace=[(0.0, 250.0)])])
        )
        mp.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        result = Harness(validate(cfg), tmp_path_factory.mktemp("template")).run()
    data = result.model_dump(mode="json")
    assert (
        data["energy"]["per_output_token_j"] is not None and len(data["repeats"]["per_repeat"]) == 3
    )
    return data


def _interval(point: float, low: float, high: float) -> dict:
    """A 3-repeat log-scale interval with chosen bounds."""
    return {
        "n": 3,
        "mean": point,
        "std": 1.0,
        "point": point,
        "estimate": "geometric mean",
        "method": LOG_T,
        "ci95_low": low,
        "ci95_high": high,
        "reason": None,
    }


def variant(
    template: dict, overrides: list[str], *, tps: float, jpt: float | None = None, repeats: int = 1
) -> dict:
    """A copy of the real result with chosen throughput, J/token (None: not measured) and repeats
    (1, 2 or 3)."""
    data = copy.deepcopy(template)
    data["overrides"] = overrides
    data["throughput"]["output_tokens_per_s"] = tps
    energy = data["energy"]
    if jpt is None:
        for key in (
            "total_j",
            "gpu_j",
            "per_output_token_j",
            "per_request_j",
            "wh_per_1k_requests",
            "covers",
        ):
            energy[key] = None
        energy["reason"] = "no hardware meter"
    else:
        energy["per_output_token_j"] = jpt
    stats = data["repeats"]["stats"]
    if repeats < 3:
        data["repeats"]["per_repeat"] = data["repeats"]["per_repeat"][:repeats]
        for name, iv in stats.items():
            if iv is not None:
                stats[name] = summarize_repeats([iv["mean"]] * repeats).model_dump()
    else:
        stats["output_tokens_per_s"] = _interval(tps, tps - 5, tps + 5)
        if jpt is not None:
            stats["energy_per_output_token_j"] = _interval(jpt, jpt * 0.9, jpt * 1.1)
    return data


def make_job(
    sweep: Path,
    num: int,
    overrides: list[str],
    *,
    result: dict | None = None,
    error: dict | None = None,
) -> Path:
    """A job folder as Hydra + llem leave it: .hydra/overrides.yaml, then result.json or
    error.json."""
    folder = sweep / f"{num}_{SLUG}"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if result is not None:
        write_json_atomic(folder / "result.json", result)
    if error is not None:
        write_json_atomic(
            folder / "error.json",
            {
                "status": "failed",
                "error": "RuntimeError: boom",
                "exit_code": 1,
                "overrides": overrides,
                "ended_at": "2026-01-01T00:00:00+00:00",
            }
            | error,
        )
    return folder


def write_study_json(sweep: Path, jobs: list[list[str]]) -> None:
    write_json_atomic(
        sweep / "study.json",
        {
            "llem_version": "9.9.9",
            "created_at": "2026-01-01T00:00:00+00:00",
            "sweep_dir": str(sweep),
            "launcher": "llem",
            "mode": "subprocess",
            "jobs": [
                {"num": i, "subdir": f"{i}_{SLUG}", "overrides": o, "config_hash": f"hash{i}"}
                for i, o in enumerate(jobs)
            ],
        },
    )


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def load_summary(sweep: Path) -> dict:
    return json.loads((sweep / SUMMARY_JSON).read_text())


def summarize(sweep: Path, **options: bool) -> dict:
    """Rebuild the summary, then read it back from study_summary.json."""
    write_summary(sweep, **options)
    return load_summary(sweep)


# ----------------------------------------------------------------------------------------- statuses


def test_statuses_from_study_json_and_folders(tmp_path, template):
    sweep = tmp_path / "study"
    sweep.mkdir()
    plan = [[f"batch={b}", "n=8"] for b in (1, 2, 4, 8)]
    write_study_json(sweep, plan)
    make_job(sweep, 0, plan[0], result=variant(template, plan[0], tps=100.0, jpt=0.5))
    make_job(
        sweep,
        1,
        plan[1],
        error={"status": "timeout", "error": "timed out after 60 s", "exit_code": None},
    )
    make_job(sweep, 2, plan[2])  # started, no outcome yet; job 3 has no folder

    s = summarize(sweep)
    assert [j["status"] for j in s["jobs"]] == ["ok", "timeout", "running", "pending"]
    assert (s["counts"]["ok"], s["counts"]["timeout"]) == (1, 1)
    assert (s["counts"]["running"], s["counts"]["pending"], s["n_jobs"]) == (1, 1, 4)
    assert s["llem_version"] == "9.9.9" and s["launcher"] == "llem" and s["final"] is False
    assert s["swept"] == {"batch": [1, 2, 4, 8]} and s["fixed"] == {"n": "8"}
    assert s["jobs"][1]["error"] == "timed out after 60 s"
    assert s["jobs"][0]["result"] == f"0_{SLUG}/result.json" and s["jobs"][3]["result"] is None
    assert s["jobs"][3]["config_hash"] == "hash3"  # from the plan
    assert s["jobs"][0]["config_hash"] == template["config_hash"]  # from result.json
    assert (
        "4 jobs: 1 ok, 0 failed, 1 timeout, 1 running, 1 pending"
        in (sweep / SUMMARY_MD).read_text()
    )

    s = summarize(sweep, final=True)
    assert [j["status"] for j in s["jobs"]] == ["ok", "timeout", "incomplete", "pending"]
    assert s["final"] is True and load_summary(sweep)["final"] is True

    write_summary(sweep, interrupted=True)
    md = (sweep / SUMMARY_MD).read_text()
    assert "4 jobs: 1 ok, 0 failed, 1 timeout, 1 incomplete, 1 pending (interrupted)" in md
    assert load_summary(sweep)["interrupted"] is True


def test_jobs_from_folders_without_study_json(tmp_path, template):
    """Hydra's own launchers (basic, joblib, submitit): the jobs are the folders holding
    .hydra/overrides.yaml."""
    sweep = tmp_path / "study"
    combos = [
        ("llem://tiny-llama", 1),
        ("llem://tiny-llama", 4),
        ("/models/gpt2", 1),
        ("/models/gpt2", 4),
    ]
    for i, (model, batch) in enumerate(combos):
        o = [f"model.name_or_path={model}", f"batch={batch}", "n=8", "quiet=true"]
        make_job(
            sweep,
            i,
            o,
            **(
                {"result": variant(template, o, tps=50.0 * (i + 1))}
                if i != 2
                else {"error": {"error": "ValueError: bad model"}}
            ),
        )
    (sweep / "not_a_job").mkdir()  # no .hydra/overrides.yaml: ignored
    (sweep / ".jobs").mkdir()

    s = summarize(sweep, final=True)
    assert [j["job"] for j in s["jobs"]] == [f"{i}_{SLUG}" for i in range(4)]
    assert [j["status"] for j in s["jobs"]] == ["ok", "ok", "failed", "ok"]
    assert s["swept"] == {
        "model.name_or_path": ["llem://tiny-llama", "/models/gpt2"],
        "batch": [1, 4],
    }
    assert s["fixed"] == {"n": "8", "quiet": "true"}

    rows = read_csv(sweep / SUMMARY_CSV)
    names = list(rows[0])
    assert names[:5] == ["num", "job", "model.name_or_path", "batch", "status"]
    assert names[5 : 5 + len(METRIC_COLUMNS)] == [c for c, _ in METRIC_COLUMNS]
    assert names[-3:] == ["config_hash", "result", "error"]
    assert not set(CI_COLUMNS) & set(names)  # one repeat everywhere: no CI columns
    assert [(r["model.name_or_path"], r["batch"]) for r in rows] == [(m, str(b)) for m, b in combos]
    assert rows[2]["error"] == "ValueError: bad model" and rows[2]["output_tokens_per_s"] == ""
    assert float(rows[3]["output_tokens_per_s"]) == 200.0
    assert rows[0]["result"] == f"0_{SLUG}/result.json"

    table = pq.read_table(sweep / SUMMARY_PARQUET)
    assert str(table.schema.field("batch").type) == "int64"
    assert str(table.schema.field("model.name_or_path").type) == "string"
    assert str(table.schema.field("output_tokens_per_s").type) == "double"
    assert table.column("batch").to_pylist() == [1, 4, 1, 4]
    assert table.column("status").to_pylist() == ["ok", "ok", "failed", "ok"]


def test_metrics_and_ci_columns_with_repeats(tmp_path, template):
    sweep = tmp_path / "study"
    o1, o2 = ["batch=1"], ["batch=2"]
    make_job(sweep, 0, o1, result=variant(template, o1, tps=100.0, jpt=0.4, repeats=3))
    make_job(sweep, 1, o2, result=variant(template, o2, tps=150.0, jpt=0.3, repeats=1))
    o3 = ["batch=3"]
    make_job(sweep, 2, o3, result=variant(template, o3, tps=170.0, jpt=0.2, repeats=2))
    s = summarize(sweep)

    m = s["jobs"][0]["metrics"]
    t = template
    assert m["energy_total_j"] == t["energy"]["total_j"] and m["energy_covers"] == "GPU board"
    assert (
        m["ttft_p50_ms"] == t["latency"]["ttft_ms"]["p50"]
        and m["e2e_p99_ms"] == t["latency"]["e2e_ms"]["p99"]
    )
    assert m["itl_p50_ms"] == t["latency"]["itl_ms"]["p50"]
    assert m["peak_memory_bytes"] == t["memory"]["peak_bytes"]
    assert m["window_flops_per_output_token"] == t["flops"]["window_per_output_token"]
    assert m["measured_window_s"] == t["timing"]["measured_window_s"]
    assert m["wh_per_1k_requests"] == t["energy"]["wh_per_1k_requests"]
    assert m["repeats"] == 3 and s["jobs"][1]["metrics"]["repeats"] == 1

    table = pq.read_table(sweep / SUMMARY_PARQUET).to_pylist()
    assert (
        table[0]["output_tokens_per_s_ci95_low"] == 95.0
        and table[0]["output_tokens_per_s_ci95_high"] == 105.0
    )
    assert table[0]["energy_per_output_token_j_ci95_low"] == pytest.approx(0.36)
    assert table[0]["energy_per_output_token_j_ci95_high"] == pytest.approx(0.44)
    assert table[1]["output_tokens_per_s_ci95_low"] is None  # one repeat: no interval
    assert table[0]["energy_per_output_token_j"] == 0.4 and table[1]["repeats"] == 1
    md = (sweep / SUMMARY_MD).read_text()
    assert "100 [95, 105]" in md and "95% interval of the geometric mean" in md
    assert table[2]["output_tokens_per_s_ci95_low"] is None  # two repeats: too few
    assert "| 170 (n<3) |" in md and "(n<3): too few repeats for an interval" in md


def test_swept_key_named_like_a_metric_shares_the_column(tmp_path, template):
    sweep = tmp_path / "study"
    for i, r in enumerate((1, 3)):
        o = [f"repeats={r}"]
        make_job(sweep, i, o, result=variant(template, o, tps=10.0 * (i + 1), repeats=r))
    make_job(sweep, 2, ["repeats=5"])
    write_summary(sweep)
    table = pq.read_table(sweep / SUMMARY_PARQUET)
    assert table.column_names.count("repeats") == 1
    assert table.column("repeats").to_pylist() == [1, 3, 5]  # measured where there is a result


def test_override_values_are_typed_per_column(tmp_path):
    sweep = tmp_path / "study"
    for i, o in enumerate(
        [["x=1", "y=0.5", "z=true", "w='a b'"], ["x=2", "y=1", "z=false", "w=7"]]
    ):
        make_job(sweep, i, o)
    write_summary(sweep)
    table = pq.read_table(sweep / SUMMARY_PARQUET)
    types = {name: str(table.schema.field(name).type) for name in ("x", "y", "z", "w")}
    assert types == {"x": "int64", "y": "double", "z": "bool", "w": "string"}
    assert table.column("w").to_pylist() == ["a b", "7"]
    assert [r["z"] for r in read_csv(sweep / SUMMARY_CSV)] == ["true", "false"]


# -------------------------------------------------------------------------------------------- files


def test_every_file_is_written_and_readable(tmp_path, template):
    sweep = tmp_path / "study"
    for i, (b, tps, jpt) in enumerate(
        [(1, 100.0, 0.5), (2, 180.0, 0.3), (4, 150.0, 0.6), (8, 250.0, 0.4)]
    ):
        o = [f"batch={b}"]
        make_job(
            sweep, i, o, result=variant(template, o, tps=tps, jpt=jpt, repeats=3 if i % 2 else 1)
        )
    make_job(
        sweep,
        4,
        ["batch=16"],
        error={"error": "torch.OutOfMemoryError: CUDA out of memory | tried"},
    )
    s = summarize(sweep, final=True)

    assert s["pareto_front"] == [f"1_{SLUG}", f"3_{SLUG}"]  # (180, 0.3) and (250, 0.4)
    assert s["plot"] == PARETO_PNG
    assert (sweep / PARETO_PNG).read_bytes()[:8] == PNG_MAGIC
    assert (
        len(read_csv(sweep / SUMMARY_CSV)) == 5
        and pq.read_table(sweep / SUMMARY_PARQUET).num_rows == 5
    )
    on_disk = load_summary(sweep)
    assert (
        on_disk["counts"]["ok"] == 4
        and on_disk["counts"]["failed"] == 1
        and len(on_disk["jobs"]) == 5
    )
    assert on_disk["sweep_dir"] == str(sweep.resolve()) and on_disk["updated_at"]
    meta = json.loads(pq.read_table(sweep / SUMMARY_PARQUET).schema.metadata[b"llem.study"])
    assert meta["n_jobs"] == 5

    md = (sweep / SUMMARY_MD).read_text().splitlines()
    assert "5 jobs: 4 ok, 1 failed" in md
    header = next(line for line in md if line.startswith("| #"))
    assert header.split(" | ")[1:4] == ["batch", "status", "out tok/s"] and "J/out tok" in header
    table = [line for line in md if line.startswith("| ") and not line.startswith("| #")]
    assert len(table) == 5 and table[4].startswith("| 4 | 16 | failed |")
    assert "CUDA out of memory \\| tried" in table[4]  # pipes escaped
    assert all(line.count(" | ") == header.count(" | ") for line in table)
    assert not list(sweep.glob(".*.tmp")) and not list(sweep.glob("*.tmp"))


def test_plot_variants(tmp_path, template):
    """No energy: throughput vs the one swept parameter; no completed job: no png."""
    sweep = tmp_path / "a"
    for i, b in enumerate((1, 2, 4)):
        make_job(
            sweep, i, [f"batch={b}"], result=variant(template, [f"batch={b}"], tps=100.0 * (i + 1))
        )
    assert summarize(sweep)["plot"] == PARETO_PNG
    assert (sweep / PARETO_PNG).read_bytes()[:8] == PNG_MAGIC
    assert load_summary(sweep)["pareto_front"] == []

    sweep = tmp_path / "b"
    make_job(sweep, 0, ["batch=1"], error={})
    make_job(sweep, 1, ["batch=2"])
    s = summarize(sweep)
    assert "plot" not in s and not (sweep / PARETO_PNG).exists()
    assert (sweep / SUMMARY_CSV).exists() and (sweep / SUMMARY_MD).exists()


def test_pareto_front_by_hand():
    # (throughput, J/token): higher throughput, lower energy is better
    points = [
        (100, 1.0),
        (200, 2.0),
        (150, 0.5),
        (300, 2.0),
        (300, 3.0),
        (50, 0.5),
        (None, 0.1),
        (400, None),
    ]
    assert pareto_front(points) == [2, 3]
    assert pareto_front([]) == []
    assert pareto_front([(10, 1.0)]) == [0]
    # equal points are all kept; ties on one axis: only the better on the other axis
    assert pareto_front([(10, 1.0), (10, 1.0), (10, 2.0), (5, 1.0)]) == [0, 1]
    # a strictly monotone trade-off: everyone is on the front, by ascending throughput
    assert pareto_front([(3, 3.0), (1, 1.0), (2, 2.0)]) == [1, 2, 0]
    assert pareto_front([(1, float("nan")), (2, 1.0)]) == [1]


def _brute_front(points):
    def dominates(q, p):
        return q[0] >= p[0] and q[1] <= p[1] and q != p

    return sorted(i for i, p in enumerate(points) if not any(dominates(q, p) for q in points))


def test_pareto_front_matches_brute_force():
    import random

    rng = random.Random(1)
    for _ in range(200):
        points = [(rng.randint(0, 6), float(rng.randint(0, 6))) for _ in range(rng.randint(1, 12))]
        assert sorted(pareto_front(points)) == _brute_front(points), points


def test_read_result_matches_a_full_parse(tmp_path, template):
    path = tmp_path / "result.json"
    write_json_atomic(path, template)
    full = key_metrics(Result.model_validate(template))
    assert key_metrics(read_result(path)) == full
    path.write_text(json.dumps(template))  # any layout
    assert key_metrics(read_result(path)) == full
    path.write_text("{not json")
    assert read_result(path) is None
    path.write_text(json.dumps({k: v for k, v in template.items() if k != "energy"}))
    assert read_result(path) is None  # not a result


def test_unchanged_results_are_not_read_again(tmp_path, template, monkeypatch):
    sweep = tmp_path / "study"
    for i in range(3):
        o = [f"batch={i + 1}"]
        make_job(sweep, i, o, result=variant(template, o, tps=10.0 + i))
    write_summary(sweep)
    calls = []
    real = scan_mod.read_result
    monkeypatch.setattr(scan_mod, "read_result", lambda p: calls.append(p) or real(p))
    write_summary(sweep)
    assert calls == []
    o = ["batch=2"]
    write_json_atomic(sweep / f"1_{SLUG}" / "result.json", variant(template, o, tps=999.0))
    s = summarize(sweep)
    assert [Path(p).parent.name for p in calls] == [f"1_{SLUG}"]
    assert [j["metrics"]["output_tokens_per_s"] for j in s["jobs"]] == [10.0, 999.0, 12.0]


# -------------------------------------------------------------------------------------- concurrency


def test_concurrent_writers_leave_valid_files(tmp_path, template):
    sweep = tmp_path / "study"
    for i in range(12):
        o = [f"batch={i + 1}"]
        make_job(sweep, i, o, result=variant(template, o, tps=10.0 * (i + 1), jpt=1.0 / (i + 1)))
    code = f"from llem.study.summary import write_summary; write_summary({str(sweep)!r})"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors: list[BaseException] = []

    def writer():
        try:
            for _ in range(3):
                write_summary(sweep)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    assert not errors
    s = load_summary(sweep)
    assert s["counts"]["ok"] == 12 and len(s["jobs"]) == 12
    assert (
        len(read_csv(sweep / SUMMARY_CSV)) == 12
        and pq.read_table(sweep / SUMMARY_PARQUET).num_rows == 12
    )
    assert (sweep / PARETO_PNG).read_bytes()[:8] == PNG_MAGIC
    assert not [p for p in sweep.iterdir() if p.name.endswith(".tmp")]


def test_a_rebuild_waits_for_the_study_lock(tmp_path, template):
    sweep = tmp_path / "study"
    make_job(sweep, 0, ["batch=1"], result=variant(template, ["batch=1"], tps=1.0))
    code = (
        f"from llem.study.summary import write_summary; write_summary({str(sweep)!r}, plot=False)"
    )
    with open(sweep / SUMMARY_LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        proc = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(2.0)
        assert proc.poll() is None and not (sweep / SUMMARY_JSON).exists()
        fcntl.flock(fh, fcntl.LOCK_UN)
        assert proc.wait(timeout=60) == 0
    assert load_summary(sweep)["counts"]["ok"] == 1


# ----------------------------------------------------------------------------------------- callback


def _job_config(sweep: Path, subdir: str, mode: str = "MULTIRUN"):
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {
            "hydra": {
                "mode": mode,
                "runtime": {"output_dir": str(sweep / subdir)},
                "sweep": {"dir": str(sweep), "subdir": subdir},
            }
        }
    )


def _failed_return(overrides: list[str]):
    from hydra.core.utils import JobReturn, JobStatus

    ret = JobReturn(overrides=overrides, status=JobStatus.FAILED)
    ret.return_value = RuntimeError("boom:\n  the second line")
    return ret


def test_callback_records_a_failed_job_and_rebuilds(tmp_path, template):
    from hydra.core.utils import JobReturn, JobStatus

    from llem.study.callback import StudySummaryCallback

    sweep = tmp_path / "study"
    make_job(sweep, 0, ["batch=1"], result=variant(template, ["batch=1"], tps=5.0))
    failed = make_job(sweep, 1, ["batch=2"])
    cb = StudySummaryCallback()

    cb.on_job_end(_job_config(sweep, failed.name), _failed_return(["batch=2"]))
    error = json.loads((failed / "error.json").read_text())
    assert error["status"] == "failed" and error["error"] == "RuntimeError: boom: the second line"
    assert error["overrides"] == ["batch=2"] and error["exit_code"] is None and error["ended_at"]
    s = load_summary(sweep)
    assert [j["status"] for j in s["jobs"]] == ["ok", "failed"] and s["final"] is False

    # an existing error.json (e.g. from llem's launcher) is kept
    write_json_atomic(failed / "error.json", error | {"status": "killed", "error": "SIGKILL"})
    cb.on_job_end(_job_config(sweep, failed.name), _failed_return(["batch=2"]))
    assert json.loads((failed / "error.json").read_text())["error"] == "SIGKILL"

    ok = JobReturn(overrides=["batch=1"], status=JobStatus.COMPLETED, _return_value={})
    cb.on_multirun_end(_job_config(sweep, f"0_{SLUG}"))
    assert load_summary(sweep)["final"] is True
    (sweep / SUMMARY_JSON).unlink()
    cb.on_job_end(_job_config(sweep, f"0_{SLUG}", mode="RUN"), ok)  # single runs: nothing
    assert not (sweep / SUMMARY_JSON).exists()


@pytest.mark.parametrize(
    "target",
    [
        "hydra_plugins.llem_plugins.llem_launcher.LlemLauncher",
        "hydra_plugins.llem_plugins.llem_slurm_launcher.LlemSlurmLauncher",
    ],
)
def test_callback_leaves_the_summary_to_llem_launchers(tmp_path, template, target):
    """llem's launchers write the summary themselves: the callback must not write it again."""
    from omegaconf import OmegaConf

    from llem.study.callback import StudySummaryCallback

    sweep = tmp_path / "study"
    make_job(sweep, 0, ["batch=1"], result=variant(template, ["batch=1"], tps=5.0))
    failed = make_job(sweep, 1, ["batch=2"])
    config = _job_config(sweep, failed.name)
    OmegaConf.update(config, "hydra.launcher", {"_target_": target})
    cb = StudySummaryCallback()
    cb.on_job_end(config, _failed_return(["batch=2"]))
    cb.on_multirun_end(config)
    assert not (sweep / SUMMARY_JSON).exists() and not (failed / "error.json").exists()
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    OmegaConf.update(config, "hydra.launcher._target_", basic)
    cb.on_multirun_end(config)
    assert load_summary(sweep)["final"] is True


def test_callback_logs_its_own_errors(tmp_path, caplog):
    from hydra.core.utils import JobReturn, JobStatus

    from llem.study.callback import StudySummaryCallback

    missing = tmp_path / "gone"
    ret = JobReturn(overrides=[], status=JobStatus.COMPLETED, _return_value={})
    with caplog.at_level("ERROR", logger="llem.study"):
        StudySummaryCallback().on_job_end(_job_config(missing, "0_x"), ret)  # must not raise
    assert "could not update the study summary" in caplog.text and "does not exist" in caplog.text


def test_callback_config_composes():
    from hydra import compose, initialize_config_module

    from llem import hydra_options, resolvers

    resolvers.register()
    hydra_options.store()
    with initialize_config_module("llem.conf", version_base="1.3"):
        cfg = compose("llem", overrides=["hydra/callbacks=llem_summary"], return_hydra_config=True)
    assert cfg.hydra.callbacks.llem_summary._target_ == "llem.study.callback.StudySummaryCallback"


# --------------------------------------------------------------------------------------- end to end

E2E = [
    "-m",
    "batch=1,2",
    "n=2",
    "max_new_tokens=2",
    "warmup_batches=0",
    "quiet=true",
    "energy=none",
    "flops.enabled=false",
    "hydra/callbacks=llem_summary",
]


def _check_sweep(tmp_path: Path) -> dict:
    sweeps = list((tmp_path / "results").glob("study_*"))
    assert len(sweeps) == 1, sweeps
    sweep = sweeps[0]
    s = load_summary(sweep)
    assert [(j["num"], j["status"]) for j in s["jobs"]] == [(0, "ok"), (1, "ok")]
    assert s["swept"] == {"batch": [1, 2]} and s["final"] is True  # on_multirun_end ran
    rows = read_csv(sweep / SUMMARY_CSV)
    assert [r["batch"] for r in rows] == ["1", "2"] and all(
        float(r["output_tokens_per_s"]) > 0 for r in rows
    )
    assert "2 jobs: 2 ok, 0 failed" in (sweep / SUMMARY_MD).read_text()
    assert (sweep / PARETO_PNG).read_bytes()[:8] == PNG_MAGIC
    return s


@pytest.mark.e2e
def test_e2e_basic_launcher(tmp_path, tiny_model_dir):
    proc = run_llem(*E2E, "hydra/launcher=basic", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Callback" not in proc.stderr and "could not" not in proc.stderr, proc.stderr
    _check_sweep(tmp_path)


@pytest.mark.e2e
def test_e2e_joblib_launcher(tmp_path, tiny_model_dir):
    """Jobs in two parallel worker processes, each rebuilding the summary from its own process as it
    ends."""
    proc = run_llem(*E2E, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Callback" not in proc.stderr and "could not" not in proc.stderr, proc.stderr
    _check_sweep(tmp_path)


@pytest.mark.e2e
def test_e2e_failed_jobs_get_error_json_from_the_callback(tmp_path):
    """A job whose task raises (a model folder transformers cannot load): the callback writes its
    error.json and the summary lists it; Hydra skips on_multirun_end after a failure, so the job-end
    rebuilds must do."""
    bad = tmp_path / "badmodel"  # complete on disk (passes pre-flight), unknown to transformers
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "no-such-architecture"}')
    (bad / "tokenizer.json").write_text("{}")
    (bad / "model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
    proc = run_llem(
        "-m",
        "batch=1,2",
        "n=2",
        "max_new_tokens=2",
        "quiet=true",
        "energy=none",
        f"model.name_or_path={bad}",
        "hydra/launcher=basic",
        "hydra/callbacks=llem_summary",
        cwd=tmp_path,
    )
    sweep = next((tmp_path / "results").glob("study_*"))
    s = load_summary(sweep)
    assert [j["status"] for j in s["jobs"]] == ["failed", "failed"], proc.stderr
    for job in s["jobs"]:
        error = json.loads((sweep / job["job"] / "error.json").read_text())
        assert error["status"] == "failed" and error["error"] and job["error"] == error["error"]
    assert "2 jobs: 0 ok, 2 failed" in (sweep / SUMMARY_MD).read_text()
    assert not (sweep / PARETO_PNG).exists()


def test_the_summary_reads_the_result_models_own_sections():
    """ResultMetrics (what the summary validates) is a view of Result: same names, same types."""
    from llem.result import ResultMetrics

    for name, field in ResultMetrics.model_fields.items():
        assert Result.model_fields[name].annotation == field.annotation, name
