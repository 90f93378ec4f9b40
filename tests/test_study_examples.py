"""The study examples (multirun_examples/, llem/examples/study*.yaml.example) run, or at least
compose, as documented.

Each runnable example goes through the real ``llem run <file>`` with tiny settings (2 jobs of a few
seconds each); the SLURM and Docker examples, which cannot run here, are parsed and composed.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, run_llem

pytestmark = pytest.mark.e2e

MULTIRUN = REPO / "multirun_examples"
EXAMPLES = REPO / "llem" / "examples"
# tiny and fast: 4 prompts (batch 4 is swept), 2 new tokens, no warm-up, no FLOP pass, no energy
# meter
TINY = (
    "n=4",
    "max_new_tokens=2",
    "energy=none",
    "quiet=true",
    "flops.enabled=false",
    "warmup_batches=0",
)

ALL_FILES = [
    *sorted(MULTIRUN.glob("*.yaml")),
    EXAMPLES / "study.yaml.example",
    EXAMPLES / "study_multi_backend.yaml.example",
]
# file, extra overrides, swept column, its values (job order), where the value sits in result.json's
# config
RUNNABLE = [
    (MULTIRUN / "batch_sweep.yaml", (), "batch", [1, 4], ("batch",)),
    (MULTIRUN / "precision_sweep.yaml", (), "precision", ["fp32", "bf16"], ("precision",)),
    (
        MULTIRUN / "dataset_comparison.yaml",
        (),
        "dataset",
        ["builtin", "synthetic"],
        ("dataset", "name"),
    ),
    (
        MULTIRUN / "repeats_ci.yaml",
        ("repeat_gap_s=0", "hydra.launcher.cooldown_s=0"),
        "batch",
        [1, 4],
        ("batch",),
    ),
    (EXAMPLES / "study.yaml.example", (), "batch", [1, 4], ("batch",)),
]


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _get(data: dict, path: tuple[str, ...]):
    for key in path:
        data = data[key]
    return data


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_every_example_is_a_documented_study_file(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# "), "a header comment saying what the file shows and how to run it"
    assert "llem run" in text.split("\ndefaults:")[0]
    data = _load(path)
    assert data["defaults"][0] == "llem" and data["defaults"][-1] == "_self_"
    assert data["hydra"]["mode"] == "MULTIRUN" and data["hydra"]["sweeper"]["params"]
    if path.parent == MULTIRUN:
        assert path.name in (MULTIRUN / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("path", "extra", "column", "values", "config_key"), RUNNABLE, ids=[r[0].name for r in RUNNABLE]
)
def test_runnable_example(tmp_path, path, extra, column, values, config_key):
    sweep = tmp_path / "study"
    proc = run_llem("run", str(path), *TINY, *extra, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = sorted(sweep.glob("*/result.json"))
    assert len(results) == len(values)
    configs = [json.loads(p.read_text())["config"] for p in results]
    assert [_get(c, config_key) for c in configs] == values
    assert all(
        c["n"] == 4 and c["max_new_tokens"] == 2 for c in configs
    )  # command-line overrides reach every job

    summary = json.loads((sweep / "study_summary.json").read_text())
    assert (
        summary["final"]
        and summary["counts"]["ok"] == len(values)
        and summary["n_jobs"] == len(values)
    )
    assert summary["swept"] == {column: values}
    assert column in summary["columns"]
    with (sweep / "study_summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r[column] for r in rows] == [str(v) for v in values] and {
        r["status"] for r in rows
    } == {"ok"}
    assert f"| {column} |" in (sweep / "study_summary.md").read_text()
    assert not list(tmp_path.glob("results"))  # everything went to hydra.sweep.dir

    if path.name == "repeats_ci.yaml":
        for cfg, p in zip(configs, results, strict=True):
            assert cfg["repeats"] == 3
            assert len(json.loads(p.read_text())["repeats"]["per_repeat"]) == 3
        ci = [f"output_tokens_per_s_ci95_{s}" for s in ("low", "high")]
        assert set(ci) <= set(summary["columns"])
        for r in rows:  # log-scale intervals: never <= 0
            assert 0 < float(r[ci[0]]) <= float(r[ci[1]])
        assert "95% interval of the geometric mean" in (sweep / "study_summary.md").read_text()


def test_slurm_example_composes_with_the_llem_slurm_launcher(tmp_path):
    path = MULTIRUN / "slurm.yaml"
    assert {"override hydra/launcher": "llem_slurm"} in _load(path)["defaults"]
    proc = run_llem("run", str(path), "--cfg", "hydra", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    launcher = yaml.safe_load(proc.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("llem_slurm_launcher.LlemSlurmLauncher")
    assert (
        launcher["partition"] is None
        and launcher["gres"] == "gpu:1"
        and launcher["timeout_min"] == 60
        and launcher["resume"] is True
    )
    job = run_llem("run", str(path), "--cfg", "job", cwd=tmp_path)
    assert (
        job.returncode == 0
        and yaml.safe_load(job.stdout)["model"]["name_or_path"] == "llem://tiny-llama"
    )


def _compose(folder: Path, name: str, overrides: list[str]):
    """The example composed in-process, as ``llem run`` composes it (hydra node included)."""
    from hydra import compose, initialize_config_dir

    from llem import resolvers
    from llem.plugins import register_plugins

    resolvers.register()
    register_plugins()
    with initialize_config_dir(config_dir=str(folder), version_base="1.3", job_name="llem"):
        return compose(
            name,
            overrides=["hydra.searchpath=[pkg://llem.conf]", *overrides],
            return_hydra_config=True,
        )


MULTI_BACKEND = [
    MULTIRUN / "multi_backend_docker.yaml",
    EXAMPLES / "study_multi_backend.yaml.example",
]


@pytest.mark.parametrize("path", MULTI_BACKEND, ids=lambda p: p.name)
def test_multi_backend_example_composes_and_is_refused_before_any_job(tmp_path, path):
    from omegaconf import OmegaConf

    from llem.config import validate
    from llem.study.launcher import Job, docker_argv

    data = _load(path)
    assert str(data["hydra"]["sweeper"]["params"]["backend"]).split(",") == ["pytorch", "vllm"]
    assert data["hydra"]["launcher"]["mode"] in ("docker", "auto")
    shutil.copy(path, tmp_path / "study.yaml")
    cfg = _compose(tmp_path, "study", ["backend=pytorch"])
    exp = validate(cfg)
    assert exp.backend.name == "pytorch" and exp.n == data["n"]
    docker = OmegaConf.to_object(cfg.hydra.launcher.docker)
    for backend in ("pytorch", "vllm"):
        job = Job(
            0,
            [f"backend={backend}"],
            OmegaConf.create({}),
            tmp_path / "0",
            "h",
            backend,
            slot="GPU-x",
        )
        argv = docker_argv(
            job, tmp_path / ".jobs" / "0.pkl", "llem.app:hydra_app", docker, tmp_path
        )
        assert argv[:2] == ["docker", "run"] and f"ghcr.io/llenergymeasure/{backend}:" in " ".join(
            argv
        )
        assert "--ipc=host" in argv and argv[argv.index("--ulimit") :][:2] == [
            "--ulimit",
            "memlock=-1",
        ]

    # no engine answers at this socket: refused before any job, saying so
    host = f"hydra.launcher.docker.host=unix://{tmp_path}/nobody.sock"
    proc = run_llem("run", str(path), host, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: Multi-backend studies require Docker.\n")
    assert proc.stderr.splitlines()[1].endswith("then: docker compose pull pytorch vllm")
    assert not (tmp_path / "results").exists()  # nothing ran, no folder


def test_submitit_local_runs_each_job_in_its_own_process(tmp_path):
    sweep = tmp_path / "study"
    proc = run_llem(
        "-m",
        "batch=1,2",
        "n=2",
        *TINY[1:],
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list(sweep.glob("*/result.json"))) == 2
    summary = json.loads((sweep / "study_summary.json").read_text())
    assert (
        summary["final"] and summary["counts"]["ok"] == 2 and summary["swept"] == {"batch": [1, 2]}
    )
    # submitit's local executor names each job's folder after the job's process id
    pids = sorted(int(p.name) for p in (sweep / ".submitit").iterdir() if p.name.isdigit())
    assert len(pids) == 2 and pids[0] != pids[1]
    for pid in pids:
        log = (sweep / ".submitit" / str(pid) / f"{pid}_0_log.out").read_text()
        assert (
            re.search(rf"JobEnvironment\(job_id={pid}\b", log)
            and "Job completed successfully" in log
        )


def test_every_shipped_example_is_run_or_checked():
    """Each multirun_examples/*.yaml and llem/examples/* file is run (RUNNABLE here; the experiment
    file in test_e2e) or checked against its documented failure message (Docker) or launcher
    (SLURM): a new example must join one of these lists."""
    checked = {MULTIRUN / "slurm.yaml", EXAMPLES / "experiment.yaml.example", *MULTI_BACKEND}
    covered = {row[0] for row in RUNNABLE} | checked
    assert set(MULTIRUN.glob("*.yaml")) | set(EXAMPLES.glob("*.example")) == covered
