"""Issue 20, items 7 (the schema part), 9 and 10: a sweep's pre-flight composes once per distinct
set of group choices (and validates exactly what Hydra's per-job composition validates), every
value that implies a duration, a count or a memory size is bounded before anything runs, and the
messages name what is wrong."""

from __future__ import annotations

import os

import pytest

from llem.errors import UsageError
from llem.preflight import Plan, compose_jobs, parse, validated
from llem.preflight_sweep import simple_override

# ----------------------------------------------------------------------- pre-flight scales (9)

SIMPLE = [
    "n=4",
    "n=-0",
    "n=+5",
    "n=0",
    "seed=4294967295",
    "repeat_gap_s=1.50",
    "x=-0.0",
    "quiet=True",
    "quiet=fALSE",
    "model.slug=NULL",
    "model.slug=abc-d_e",
    "a-b.c_d=_x",
    # not simple: Hydra's parser reads them
    "n=007",
    "n=1_000",
    "x=1e-09",
    "x=inf",
    "x=NaN",
    "x=.5",
    "x=1.",
    "+n=4",
    "~n",
    "n=a b",
    "n='4'",
    "n=${batch}",
    "backend=vllm",
    "x=a,b",
    "x=[1]",
    "x=a.b",
    "x@y=1",
    "1x=2",
    "x=",
]


@pytest.mark.parametrize("text", SIMPLE)
def test_simple_overrides_read_as_hydras_grammar_reads_them(text):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    simple = simple_override(text)
    if simple is None:
        return  # left to Hydra's parser
    parsed = OverridesParser.create().parse_override(text)
    assert parsed.type == OverrideType.CHANGE and parsed.package is None
    value = parsed.value()
    assert simple == (parsed.key_or_group, value) and type(simple[1]) is type(value)


def _both(*args: str) -> tuple[Plan | str, Plan | str]:
    """The pre-flight of a command line composed the fast way and job by job (or its error)."""
    outcomes: list[Plan | str] = []
    for per_job in (False, True):
        try:
            outcomes.append(compose_jobs(parse(list(args)), per_job=per_job))
        except UsageError as exc:
            outcomes.append(str(exc))
    return outcomes[0], outcomes[1]


SWEEPS = [
    # group choices, plain keys of several types, a decimal, a word that is a bool, null
    [
        "-m",
        "dataset=builtin,synthetic",
        "seed=1,2",
        "max_new_tokens=4,8",
        "decoding.strategy=greedy,sample",
        "n=4",
        "energy.baseline.duration_s=2.5",
        "quiet=TRUE",
        "flops.max_batches=null",
        "model.slug=ab-c",
    ],
    # interpolations, + and ~ beside plain keys (composed job by job or in the shared part)
    ["-m", "n=4,8", "max_input_tokens=${n},16", "~record_hostname", "+energy.foo=1,2"],
    ["-m", "n=4,6", "batch=2,3", "repeat_gap_s=0.5,1e-3", "decoding.top_k=3"],
    # invalid jobs of every kind: unknown key for one group, missing value, type, cross-field
    ["-m", "dataset=builtin,synthetic,jsonl", "dataset.input_tokens=8,x", "batch=1,5", "n=4"],
    ["-m", "batch=1,0,x,true", "n=4,2", "max_new_tokens=7"],
    ["-m", "n=3,4", "n=5", "decoding.strategy=sample", "decoding=greedy"],
]


@pytest.mark.parametrize("args", SWEEPS, ids=[" ".join(a[1:3]) for a in SWEEPS])
def test_the_fast_preflight_validates_what_per_job_composition_validates(args):
    fast, whole = _both(*args)
    if isinstance(whole, str):
        assert fast == whole  # the same jobs named, the same messages
        return
    assert isinstance(fast, Plan)
    assert [job for job, _ in fast.jobs] == [job for job, _ in whole.jobs]
    for (_, a), (_, b) in zip(fast.jobs, whole.jobs, strict=True):
        assert a.model_dump() == b.model_dump()  # key by key
    assert fast.compositions < whole.compositions


def test_an_experiment_file_with_an_interpolation_is_composed_as_hydra_does(tmp_path):
    (tmp_path / "exp.yaml").write_text(
        "defaults: [llem, _self_]\nn: 8\nmax_input_tokens: ${n}\nmodel:\n  slug: s-${seed}\n"
    )
    from llem.cli import experiment_file_args

    fast, whole = _both(
        *experiment_file_args([str(tmp_path / "exp.yaml"), "-m", "n=4,6", "seed=1,2"])
    )
    assert isinstance(fast, Plan) and isinstance(whole, Plan)
    dumps = [exp.model_dump() for _, exp in fast.jobs]
    assert dumps == [exp.model_dump() for _, exp in whole.jobs]
    assert [(d["max_input_tokens"], d["model"]["slug"]) for d in dumps] == [
        (4, "s-1"),
        (4, "s-2"),
        (6, "s-1"),
        (6, "s-2"),
    ]


def test_an_experiment_file_without_interpolation_takes_the_fast_way(tmp_path):
    from llem.cli import experiment_file_args

    (tmp_path / "exp.yaml").write_text("defaults: [llem, _self_]\nn: 8\nmodel:\n  slug: s\n")
    args = experiment_file_args([str(tmp_path / "exp.yaml"), "-m", "n=4,6", "batch=1,2,x"])
    fast, whole = _both(*args)
    assert fast == whole and "2 of 6 jobs are invalid" in str(fast)  # batch=x: the same message
    args = experiment_file_args([str(tmp_path / "exp.yaml"), "-m", "n=4,6", "batch=1,2"])
    fast, whole = _both(*args)
    assert isinstance(fast, Plan) and isinstance(whole, Plan)
    assert [e.model_dump() for _, e in fast.jobs] == [e.model_dump() for _, e in whole.jobs]
    assert fast.compositions == 2 < whole.compositions


def test_a_large_sweep_composes_once_per_group_choice():
    plan = compose_jobs(parse(["-m", "seed=range(0,2000)", "dataset=builtin,synthetic", "n=4"]))
    assert len(plan.jobs) == 4000
    assert plan.compositions <= 3  # Hydra's node, then one per dataset
    assert sorted({exp.seed for _, exp in plan.jobs}) == list(range(2000))
    job, exp = plan.jobs[-1]
    assert validated(job) is exp and exp.dataset.name == "synthetic" and exp.n == 4


# ----------------------------------------------------------------- every value bounded (7)

SERVED = ("backend=openai", "backend.launch=none", "backend.url=http://127.0.0.1:9", "load=poisson")
BOUNDS = [
    # (group choices, key, a value past the bound, the bound the message names)
    ((), "batch", 2_000_000, "batch<=1000000"),
    ((), "decoding.top_k", 2**21, "decoding.top_k<=1048576"),
    ((), "flops.max_batches", 2_000_000, "flops.max_batches<=1000000"),
    ((), "energy.sample_interval_ms", 10**9, "energy.sample_interval_ms<=60000"),
    ((), "energy.baseline.duration_s", 1e9, "energy.baseline.duration_s<=3600.0"),
    ((), "energy.baseline.max_age_h", 1e300, "energy.baseline.max_age_h<=8760.0"),
    ((), "backend.num_threads", 10**6, "backend.num_threads<=4096"),
    (("backend=vllm",), "backend.tensor_parallel_size", 10**6, "<=1024"),
    (("backend=vllm",), "backend.pipeline_parallel_size", 10**6, "<=1024"),
    (("backend=vllm",), "backend.max_model_len", 2**40, "backend.max_model_len<=1048576"),
    (("backend=vllm",), "backend.max_num_seqs", 10**9, "backend.max_num_seqs<=1000000"),
    (("backend=vllm",), "backend.max_num_batched_tokens", 2**40, "<=16777216"),
    (("backend=tensorrt",), "backend.max_batch_size", 10**9, "<=1000000"),
    (("backend=tensorrt",), "backend.max_num_tokens", 2**40, "<=16777216"),
    (("backend=tensorrt",), "backend.max_seq_len", 2**40, "<=1048576"),
    (("backend=tensorrt",), "backend.tensor_parallel_size", 10**6, "<=1024"),
    (SERVED, "backend.health_timeout_s", 1e300, "backend.health_timeout_s<=86400.0"),
    (SERVED, "backend.stop_timeout_s", 1e300, "backend.stop_timeout_s<=3600.0"),
    (SERVED, "backend.metrics_interval_s", 1e-9, "backend.metrics_interval_s>=0.05"),
    (SERVED, "backend.metrics_interval_s", 1e9, "backend.metrics_interval_s<=3600.0"),
    (SERVED, "backend.request_timeout_s", 10**9, "backend.request_timeout_s<=86400"),
]


def _validated_with(groups: tuple[str, ...], key: str, value: object) -> str:
    from omegaconf import OmegaConf

    from llem.config import validate
    from tests.helpers import compose_config

    data = OmegaConf.to_container(compose_config(*groups), resolve=True)
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    with pytest.raises(UsageError) as err:
        validate(data)
    return str(err.value)


@pytest.mark.parametrize(
    "groups,key,value,bound", BOUNDS, ids=[f"{k}={v}" for _, k, v, _ in BOUNDS]
)
def test_every_duration_count_and_size_has_an_upper_and_lower_bound(groups, key, value, bound):
    message = _validated_with(groups, key, value)
    assert message.startswith(f"{key}=") and "is out of range: set " in message, message
    assert bound in message and "\n" not in message


@pytest.mark.parametrize("value", [float("inf"), float("nan")], ids=["inf", "nan"])
def test_inf_and_nan_are_not_numbers(value):
    message = _validated_with((), "decoding.temperature", value)
    assert message.startswith("decoding.temperature=") and "is not a finite number" in message


def test_a_slug_too_long_for_a_folder_name_is_refused():
    message = _validated_with((), "model.slug", "a" * 300)
    assert message == "model.slug is 300 characters long: use at most 100"


# ------------------------------------------------ through the real llem: one line, exit 2, nothing


def _refused(tmp_path, *args: str) -> str:
    from tests.helpers import run_llem

    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_llem(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no result folder
    return proc.stderr


@pytest.mark.e2e
def test_a_bound_stops_the_preflight(tmp_path):
    err = _refused(tmp_path, "energy.baseline.max_age_h=1e300")
    assert (
        "energy.baseline.max_age_h=1e+300 is out of range: set energy.baseline.max_age_h<=" in err
    )


@pytest.mark.e2e
def test_a_load_key_is_named_without_the_union_tag(tmp_path):
    err = _refused(tmp_path, *SERVED, "energy=none", "load.rate=-1", "n=2")
    assert "load.rate=-1 is out of range" in err and "poisson" not in err


@pytest.mark.e2e
def test_an_interpolation_loop_is_named_as_one(tmp_path):
    err = _refused(tmp_path, "n=${batch}", "batch=${n}")
    assert "self-referencing interpolation" in err and "has no value" not in err


@pytest.mark.e2e
def test_a_fifo_dataset_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "prompts.jsonl"
    os.mkfifo(fifo)
    err = _refused(tmp_path, "dataset=jsonl", f"dataset.path={fifo}")
    assert f"dataset.path={fifo} is not a regular file (a named pipe)" in err
    assert "no such file" not in err


@pytest.mark.e2e
def test_chdir_with_a_relative_dataset_path_stops_before_the_run(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n{"prompt": "yo"}\n')
    err = _refused(tmp_path, "hydra.job.chdir=true", "dataset=jsonl", "dataset.path=p.jsonl", "n=2")
    assert "dataset.path=p.jsonl is relative" in err and f"{tmp_path / 'p.jsonl'}" in err


# ------------------------------------------------------------- out of memory at model load (7)


def _limit_address_space() -> None:
    import resource

    limit = 32 * 2**30  # a safety net: the model asks for 1 TiB at once, refused either way
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.e2e
def test_a_model_too_large_for_memory_is_one_error_line(tmp_path, tmp_path_factory):
    """A complete model folder whose config asks for a 1 TiB embedding (the weights file holds no
    tensor, so transformers allocates every weight itself): torch's allocator refuses it."""
    import json
    import shutil
    import subprocess

    from safetensors.torch import save_file

    from llem.models.tiny import ensure_tiny_llama
    from tests.helpers import LLEM

    model = tmp_path_factory.mktemp("huge") / "model"
    shutil.copytree(ensure_tiny_llama(), model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "vocab_size": 2**31}))
    for weights in model.glob("*.safetensors"):
        weights.unlink()
    save_file({}, str(model / "model.safetensors"))
    proc = subprocess.run(
        [str(LLEM), f"model.name_or_path={model}", "n=2", "warmup_batches=0", "energy=none"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        preexec_fn=_limit_address_space,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "does not fit in memory" in errors[0], proc.stderr
    assert "choose a smaller model" in errors[0]
