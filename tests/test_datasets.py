"""Prompt sources: built-in set, user jsonl (and its errors), AI Energy Score, synthetic."""

from __future__ import annotations

import collections
import json

import pytest

from llem.config import AIEnergyScoreDataset, BuiltinDataset, JsonlDataset, SyntheticDataset
from llem.datasets import check_dataset, load_prompts
from llem.datasets.aienergyscore import cache_file
from llem.datasets.builtin import builtin_records
from llem.datasets.synthetic import synthetic_token_ids
from llem.errors import UsageError
from tests.helpers import AIENERGYSCORE, needs_aienergyscore


def test_builtin_prompts_are_varied():
    records = builtin_records()
    assert len(records) >= 100
    tasks = collections.Counter(r["task"] for r in records)
    assert {"summarise", "answer", "explain", "chat", "code"} <= set(tasks)
    words = sorted(len(r["prompt"].split()) for r in records)
    assert words[0] < 20 and words[-1] > 200  # short questions and long passages
    assert len({r["prompt"] for r in records}) == len(records)
    assert len({r["task"] for r in records[:8]}) >= 5  # small n is already a mix


def test_measured_and_warmup_indices_do_not_overlap():
    ps, measured, warm = load_prompts(BuiltinDataset(), n=100, n_warmup=4)
    assert measured == list(range(100)) and warm == [100, 101, 102, 103] and ps.chat_style
    _, _, warm = load_prompts(BuiltinDataset(), n=119, n_warmup=3)
    assert warm == [119, 0, 1]  # wraps when the source runs out


def test_n_larger_than_dataset_is_an_error():
    with pytest.raises(UsageError, match="n=500 but the dataset has 120 prompts"):
        load_prompts(BuiltinDataset(), n=500, n_warmup=0)


@needs_aienergyscore
def test_shared_aienergyscore_file_as_jsonl():
    ps, _, _ = load_prompts(JsonlDataset(path=str(AIENERGYSCORE)), n=1000, n_warmup=0)
    assert len(ps.texts) == 1000  # the provenance line (keys starting with _) is skipped
    assert all(isinstance(t, str) and t for t in ps.texts)


@needs_aienergyscore
def test_aienergyscore_from_a_local_path():
    cfg = AIEnergyScoreDataset(path=str(AIENERGYSCORE))
    ps, _, _ = load_prompts(cfg, n=10, n_warmup=0)
    assert len(ps.texts) == 1000 and "dataset.path" not in ps.source and not ps.chat_style


def test_aienergyscore_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLEM_CACHE_DIR", str(tmp_path))
    cached = cache_file(AIEnergyScoreDataset())
    assert cached.is_relative_to(tmp_path)
    cached.write_text(json.dumps({"prompt": "cached prompt"}) + "\n")
    ps, _, _ = load_prompts(AIEnergyScoreDataset(), n=1, n_warmup=0)
    assert ps.texts == ["cached prompt"] and "cache" in ps.source


def test_aienergyscore_offline_and_uncached_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LLEM_CACHE_DIR", str(tmp_path))
    with pytest.raises(UsageError, match=r"no network and no cached copy.*dataset\.path="):
        check_dataset(AIEnergyScoreDataset())


def test_table_formats(tmp_path):
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    table = pa.table({"text": ["a b c", "d e"], "other": [1, 2]})
    pyarrow.parquet.write_table(table, tmp_path / "p.parquet")
    pyarrow.csv.write_csv(table, tmp_path / "p.csv")
    for name in ("p.parquet", "p.csv"):
        ps, _, _ = load_prompts(AIEnergyScoreDataset(path=str(tmp_path / name)), n=2, n_warmup=0)
        assert ps.texts == ["a b c", "d e"]
    with pytest.raises(UsageError, match="has no column 'prompt'"):
        check_dataset(JsonlDataset(path=str(tmp_path / "p.csv")))


@pytest.mark.parametrize(
    "content,needle",
    [
        (None, "no such file"),
        ("", "has no prompts"),
        ('{"prompt": "ok"}\n{"prompt": "fine"\n', "line 2 is not valid JSON"),
        ('{"prompt": "ok"}\n["a list"]\n', "line 2 is not a JSON object"),
        ('{"prompt": "ok"}\n\n{"text": "x"}\n', "line 3 has no 'prompt' key (keys: text)"),
        ('{"prompt": ""}\n', "line 1: 'prompt' must be a non-empty string"),
    ],
)
def test_malformed_jsonl_names_the_line(tmp_path, content, needle):
    path = tmp_path / "prompts.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError) as err:
        check_dataset(JsonlDataset(path=str(path)))
    assert needle in str(err.value) and str(path) in str(err.value)


def test_jsonl_custom_field(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "why?"}\n{"question": "how?"}\n')
    ps, _, _ = load_prompts(
        JsonlDataset(path=str(path), field="question", style="chat"), n=2, n_warmup=0
    )
    assert ps.texts == ["why?", "how?"] and ps.chat_style


def test_synthetic_token_ids_exact_and_seeded():
    a = synthetic_token_ids(3, 16, vocab_size=50, special_ids={0, 1, 2}, seed=7, bos_id=1)
    assert a == synthetic_token_ids(3, 16, vocab_size=50, special_ids={0, 1, 2}, seed=7, bos_id=1)
    assert a != synthetic_token_ids(3, 16, vocab_size=50, special_ids={0, 1, 2}, seed=8, bos_id=1)
    assert all(len(p) == 16 and p[0] == 1 and not {0, 1, 2} & set(p[1:]) for p in a)
    ps, _, _ = load_prompts(SyntheticDataset(input_tokens=16), n=5, n_warmup=2)
    assert ps.synthetic is not None and ps.available is None
