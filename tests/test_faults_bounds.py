"""Issue 20, items 7 (the schema part), 9 and 10: a sweep's pre-flight composes once per distinct
set of group choices (and validates exactly what Hydra's per-job composition validates), every
value that implies a duration, a count or a memory size is bounded before anything runs, and the
messages name what is wrong."""

from __future__ import annotations

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


def test_a_large_sweep_composes_once_per_group_choice():
    plan = compose_jobs(parse(["-m", "seed=range(0,2000)", "dataset=builtin,synthetic", "n=4"]))
    assert len(plan.jobs) == 4000
    assert plan.compositions <= 3  # Hydra's node, then one per dataset
    assert sorted({exp.seed for _, exp in plan.jobs}) == list(range(2000))
    job, exp = plan.jobs[-1]
    assert validated(job) is exp and exp.dataset.name == "synthetic" and exp.n == 4
