"""The study summary of a multirun sweep folder: one row per job, rebuilt from the files on disk.

:func:`write_summary` scans ``<sweep_dir>`` and writes, each atomically (temp file + rename):

- ``study_summary.json``: study metadata, counts per status, swept parameters and every job (status,
  overrides, result path, error, key metrics); one job per line;
- ``study_summary.csv`` / ``study_summary.parquet``: one row per job, each swept parameter as its own column
  (named after the override key, e.g. ``batch``), then the key metrics (:data:`METRIC_COLUMNS`);
- ``study_summary.md``: a readable table;
- ``study_pareto.png``: see :mod:`llem.study.plot`.

Jobs come from ``study.json`` (written by llem's launcher at study start: planned jobs without a folder are
``pending``) or, without it, from the sub-folders holding ``.hydra/overrides.yaml``. A job is ``ok`` (its
``result.json``), ``failed``/``timeout``/``killed``/``interrupted`` (its ``error.json``), ``running`` (folder, no
outcome yet) or ``incomplete`` (the same in a final or interrupted summary).

Rebuilds are serialised with an exclusive ``flock`` on ``.study_summary.lock`` (parallel jobs each rebuild as
they end) and reuse the metrics stored in the previous ``study_summary.json`` for every ``result.json`` whose
(path, mtime_ns, size) did not change, so a rebuild reads only new results.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import logging
import math
import operator
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from llem.paths import write_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

SUMMARY_VERSION = 1
STUDY_FILE = "study.json"
SUMMARY_JSON = "study_summary.json"
SUMMARY_CSV = "study_summary.csv"
SUMMARY_PARQUET = "study_summary.parquet"
SUMMARY_MD = "study_summary.md"
PARETO_PNG = "study_pareto.png"
LOCK_FILE = ".study_summary.lock"
RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
OVERRIDES_FILE = ".hydra/overrides.yaml"

# display order; error.json statuses are failed | timeout | killed | interrupted
STATUSES = ("ok", "failed", "timeout", "killed", "interrupted", "incomplete", "running", "pending")
ERROR_STATUSES = frozenset({"failed", "timeout", "killed", "interrupted"})

# key metrics, in column order: (column, type)
METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("output_tokens_per_s", "float"),
    ("total_tokens_per_s", "float"),
    ("requests_per_s", "float"),
    ("ttft_p50_ms", "float"),
    ("ttft_p99_ms", "float"),
    ("itl_p50_ms", "float"),
    ("e2e_p50_ms", "float"),
    ("e2e_p99_ms", "float"),
    ("energy_total_j", "float"),
    ("energy_per_output_token_j", "float"),
    ("wh_per_1k_requests", "float"),
    ("energy_covers", "str"),
    ("energy_reason", "str"),
    ("estimate_j", "float"),
    ("co2_kg", "float"),
    ("flops_per_output_token", "float"),
    ("peak_memory_bytes", "int"),
    ("measured_window_s", "float"),
    ("repeats", "int"),
)
# 95% confidence bounds across repeats (columns present when some job has repeats >= 2)
CI_METRICS = ("output_tokens_per_s", "energy_per_output_token_j")
CI_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (f"{m}_ci95_{side}", "float") for m in CI_METRICS for side in ("low", "high")
)
TAIL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("config_hash", "str"),
    ("result", "str"),
    ("error", "str"),
)


# ---------------------------------------------------------------------------------------------- helpers


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value)


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def result_metrics(data: dict) -> dict:
    """The key metrics of one parsed ``result.json`` (``null`` where the run did not measure them)."""
    throughput, latency = _dict(data.get("throughput")), _dict(data.get("latency"))
    energy, flops = _dict(data.get("energy")), _dict(data.get("flops"))
    repeats = _dict(data.get("repeats"))
    stats, per_repeat = _dict(repeats.get("stats")), repeats.get("per_repeat")
    n_repeats = (
        len(per_repeat)
        if isinstance(per_repeat, list)
        else _int(_dict(data.get("config")).get("repeats"))
    )
    per_token = flops.get("counted_per_output_token")
    if per_token is None:
        per_token = flops.get("analytic_per_output_token")
    metrics = {
        "output_tokens_per_s": _float(throughput.get("output_tokens_per_s")),
        "total_tokens_per_s": _float(throughput.get("total_tokens_per_s")),
        "requests_per_s": _float(throughput.get("requests_per_s")),
        "ttft_p50_ms": _float(_dict(latency.get("ttft_ms")).get("p50")),
        "ttft_p99_ms": _float(_dict(latency.get("ttft_ms")).get("p99")),
        "itl_p50_ms": _float(_dict(latency.get("itl_ms")).get("p50")),
        "e2e_p50_ms": _float(_dict(latency.get("e2e_ms")).get("p50")),
        "e2e_p99_ms": _float(_dict(latency.get("e2e_ms")).get("p99")),
        "energy_total_j": _float(energy.get("total_j")),
        "energy_per_output_token_j": _float(energy.get("per_output_token_j")),
        "wh_per_1k_requests": _float(energy.get("wh_per_1k_requests")),
        "energy_covers": _str(energy.get("covers")),
        "energy_reason": _str(energy.get("reason")),
        "estimate_j": _float(energy.get("estimate_j")),
        "co2_kg": _float(_dict(energy.get("co2")).get("emissions_kg_co2eq")),
        "flops_per_output_token": _float(per_token),
        "peak_memory_bytes": _int(_dict(data.get("memory")).get("peak_bytes")),
        "measured_window_s": _float(_dict(data.get("timing")).get("measured_window_s")),
        "repeats": n_repeats,
    }
    for name in CI_METRICS:
        interval = _dict(stats.get(name))
        metrics[f"{name}_ci95_low"] = _float(interval.get("ci95_low"))
        metrics[f"{name}_ci95_high"] = _float(interval.get("ci95_high"))
    return metrics


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """Indices of the non-dominated ``(throughput, energy_per_token)`` points, by ascending throughput.

    Higher throughput and lower energy are better: a point is dominated when another one is at least as good
    on both and strictly better on one. Equal points are all kept; points with a missing or non-finite
    coordinate are ignored.
    """
    valid = [
        (x, y, i)
        for i, (x, y) in enumerate(points)
        if _float(x) is not None and _float(y) is not None
    ]
    valid.sort(key=lambda p: (-p[0], p[1]))
    front: list[int] = []
    best_y = math.inf  # lowest energy among points with strictly higher throughput
    k = 0
    while k < len(valid):
        j = k
        while j < len(valid) and valid[j][0] == valid[k][0]:
            j += 1
        group_min = valid[k][1]  # sorted by y within equal x
        if group_min < best_y:
            front.extend(i for _, y, i in valid[k:j] if y == group_min)
        best_y = min(best_y, group_min)
        k = j
    order = {i: (points[i][0], points[i][1]) for i in front}
    return sorted(front, key=lambda i: (order[i][0], -order[i][1], i))


# ---------------------------------------------------------------------------------------------- overrides

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def split_override(override: str) -> tuple[str, str]:
    """``'batch=4'`` -> ``('batch', '4')``; ``'+x=1'`` -> ``('x', '1')``; quotes around the value are dropped."""
    key, _, value = str(override).partition("=")
    key = key.lstrip("+~").strip()
    if str(override).lstrip().startswith("~") and not value:
        value = "(deleted)"
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return key, value


def parse_value(text: str) -> object:
    """An override value as YAML would type it (int, float, bool, null), else the text."""
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~"):
        return None
    return text


def _column_values(raw: list[str | None]) -> tuple[list[object], str]:
    """Typed values of one parameter column (one type for the whole column) and that type."""
    parsed = [None if r is None else parse_value(r) for r in raw]
    kinds = {type(v) for v in parsed if v is not None}
    if kinds <= {int}:
        return parsed, "int"
    if kinds <= {int, float}:
        return [None if v is None else float(v) for v in parsed], "float"
    if kinds <= {bool}:
        return parsed, "bool"
    return raw, "str"


def _read_overrides(path: str) -> list[str] | None:
    """``.hydra/overrides.yaml`` (a YAML list of strings); a plain ``- item`` list is read without YAML."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError):
        return None
    items: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if (
            not line.startswith("- ")
            or line[2:3] in ("'", '"', "[", "{", "|", ">", "&", "*", "!", "?")
            or ": " in line
            or " #" in line
        ):
            break
        items.append(line[2:].rstrip())
    else:
        return items
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return None
    return [str(x) for x in data] if isinstance(data, list) else None


# ---------------------------------------------------------------------------------------------- scanning

_NUM_PREFIX = re.compile(r"(\d+)(?:_|$)")
_HYDRA_NUM = re.compile(r"^  job:\n(?:    .*\n|      .*\n)*?    num: (\d+)$", re.M)


def _job_num(folder: str) -> int | None:
    m = _NUM_PREFIX.match(os.path.basename(folder))
    if m:
        return int(m.group(1))
    with contextlib.suppress(OSError):
        m = _HYDRA_NUM.search(Path(folder, ".hydra", "hydra.yaml").read_text(encoding="utf-8"))
        if m:
            return int(m.group(1))
    return None


def _read_json(path: str | Path) -> dict | None:
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# the top-level keys of result.json that the summary uses
_RESULT_KEYS = (
    "status",
    "config_hash",
    "throughput",
    "latency",
    "timing",
    "memory",
    "flops",
    "energy",
    "repeats",
)
_DECODER = json.JSONDecoder()


def read_result(path: str | Path) -> dict | None:
    """The parts of a ``result.json`` the summary needs (None if unreadable).

    llem writes result.json indented by 2 (:func:`llem.paths.write_json_atomic`), so a top-level key is the
    only place where a line starts with exactly two spaces and a quote: each needed value is decoded where it
    starts, skipping the per-request list, the config and the environment (about 5x faster on big results).
    Any other layout is parsed whole.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError):
        return None
    data = {}
    try:
        if text.startswith('{\n  "'):
            pos = 0
            for key in _RESULT_KEYS:  # in the order the schema writes them; any order works
                needle = f'\n  "{key}": '
                at = text.find(needle, pos)
                if at < 0:
                    at = text.find(needle)
                    if at < 0:
                        break
                data[key], pos = _DECODER.raw_decode(text, at + len(needle))
            else:
                return data
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _load_previous(sweep_dir: Path) -> dict[str, dict]:
    """Job entries of the last summary (the metrics cache), by job folder; empty if unusable."""
    data = _read_json(sweep_dir / SUMMARY_JSON)
    if (
        not data
        or data.get("summary_version") != SUMMARY_VERSION
        or not isinstance(data.get("jobs"), list)
    ):
        return {}
    return {
        job["job"]: job
        for job in data["jobs"]
        if isinstance(job, dict) and isinstance(job.get("job"), str)
    }


def _planned_jobs(study: dict | None) -> list[dict]:
    jobs = []
    for job in (study or {}).get("jobs") or []:
        if isinstance(job, dict) and isinstance(job.get("subdir"), str) and job["subdir"]:
            jobs.append(job)
    return jobs


def _strings(value: object) -> list[str] | None:
    return [str(v) for v in value] if isinstance(value, list) else None


def _job_entry(
    sweep_dir: str,
    name: str,
    planned: dict | None,
    previous: dict | None,
    exists: bool,
    settled: bool,
) -> dict:
    """One job's entry (status, overrides, result, error, metrics) from its folder.

    Overrides come from study.json, else ``.hydra/overrides.yaml``, else the job's error.json.
    """
    folder = os.path.join(sweep_dir, name)
    entry: dict = {
        "num": None,
        "job": name,
        "status": "pending",
        "overrides": None,
        "config_hash": None,
        "result": None,
        "result_stat": None,
        "error": None,
        "exit_code": None,
        "metrics": None,
    }
    if planned is not None:
        entry["num"] = _int(planned.get("num"))
        entry["overrides"] = _strings(planned.get("overrides"))
        entry["config_hash"] = _str(planned.get("config_hash"))
    if not exists:
        return entry
    if entry["num"] is None and previous:
        entry["num"] = _int(previous.get("num"))
    if (
        entry["overrides"] is None
        and previous
        and previous.get("status") not in ("running", "incomplete", "pending")
    ):
        # a job with an outcome: its .hydra/overrides.yaml was complete when last read and never changes
        entry["overrides"] = _strings(previous.get("overrides"))
    if entry["overrides"] is None:
        entry["overrides"] = _read_overrides(os.path.join(folder, OVERRIDES_FILE))

    result_path = os.path.join(folder, RESULT_FILE)
    try:
        st = os.stat(result_path)
    except OSError:
        st = None
    if st is not None:
        stat = [st.st_mtime_ns, st.st_size]
        entry["result"] = f"{name}/{RESULT_FILE}"
        entry["result_stat"] = stat
        if (
            previous
            and previous.get("result_stat") == stat
            and isinstance(previous.get("metrics"), dict)
        ):
            # unchanged result.json: reuse what the last rebuild read from it
            for key in ("status", "config_hash", "error", "metrics"):
                entry[key] = previous.get(key)
        else:
            data = read_result(result_path)
            if data is None:
                entry.update(
                    status="failed", error=f"{RESULT_FILE} is unreadable or not a JSON object"
                )
            else:
                status = data.get("status")
                entry["status"] = status if isinstance(status, str) and status else "ok"
                entry["config_hash"] = _str(data.get("config_hash")) or entry["config_hash"]
                entry["metrics"] = result_metrics(data)
    else:
        error = _read_json(os.path.join(folder, ERROR_FILE))
        if error is not None:
            status = error.get("status")
            entry["status"] = status if status in ERROR_STATUSES else "failed"
            entry["error"] = _str(error.get("error"))
            entry["exit_code"] = _int(error.get("exit_code"))
            if entry["overrides"] is None:
                entry["overrides"] = _strings(error.get("overrides"))
        else:
            entry["status"] = "incomplete" if settled else "running"
    if entry["num"] is None:
        entry["num"] = _job_num(folder)
    return entry


def _relative(sweep_dir: Path, subdir: str) -> str:
    """A job folder relative to the sweep folder, as a posix path ('0_tiny-llama_pytorch')."""
    path = Path(subdir)
    if path.is_absolute():
        with contextlib.suppress(ValueError):
            path = path.resolve().relative_to(sweep_dir)
    return path.as_posix().strip("/")


def scan(
    sweep_dir: Path,
    *,
    final: bool = False,
    interrupted: bool = False,
    previous: dict[str, dict] | None = None,
) -> tuple[dict | None, list[dict]]:
    """``(study.json or None, job entries sorted by job number)`` of a sweep folder."""
    study = _read_json(sweep_dir / STUDY_FILE)
    previous = previous or {}
    settled = final or interrupted
    try:
        with os.scandir(sweep_dir) as it:
            folders = {e.name for e in it if not e.name.startswith(".") and e.is_dir()}
    except OSError:
        folders = set()
    root = str(sweep_dir)
    entries: list[dict] = []
    seen: set[str] = set()
    for job in _planned_jobs(study):
        name = _relative(sweep_dir, job["subdir"])
        if name in seen:
            continue
        seen.add(name)
        exists = name in folders if "/" not in name else os.path.isdir(os.path.join(root, name))
        entries.append(_job_entry(root, name, job, previous.get(name), exists, settled))
    for name in sorted(folders - seen):
        if os.path.isfile(os.path.join(root, name, OVERRIDES_FILE)):
            entries.append(_job_entry(root, name, None, previous.get(name), True, settled))
    entries.sort(
        key=lambda e: (e["num"] is None, e["num"] if e["num"] is not None else 0, e["job"])
    )
    return study, entries


def swept_parameters(entries: list[dict]) -> tuple[list[str], dict[str, str]]:
    """(keys whose value differs between jobs, in first-seen order; {key: value} common to every job).

    With nothing varying (a one-job study), every override key counts as swept so that the table shows it.
    """
    per_job = [dict(split_override(o) for o in (e["overrides"] or [])) for e in entries]
    keys: dict[str, None] = {}
    for params in per_job:
        keys.update(dict.fromkeys(params))
    swept = [k for k in keys if len({p.get(k) for p in per_job}) > 1]
    if not swept and len(entries) <= 1:
        return list(keys), {}
    fixed = {k: per_job[0][k] for k in keys if k not in swept}
    return swept, fixed


# ---------------------------------------------------------------------------------------------- rows


def build_rows(entries: list[dict], swept: list[str]) -> tuple[list[dict], list[tuple[str, str]]]:
    """One flat row per job and the columns ``[(name, type)]``: num, job, swept parameters, status, metrics,
    the CI bounds (when some job has repeats >= 2), config_hash, result, error.

    A swept key named like a metric (``repeats``) shares its column: the measured value where there is one.
    """
    per_job = [dict(split_override(o) for o in (e["overrides"] or [])) for e in entries]
    metric_cols = list(METRIC_COLUMNS)
    if any(
        (e["metrics"] or {}).get("repeats") is not None and e["metrics"]["repeats"] >= 2
        for e in entries
    ):
        metric_cols += CI_COLUMNS
    param_cols: list[tuple[str, str]] = []
    param_values: dict[str, list[object]] = {}
    for key in swept:
        values, kind = _column_values([p.get(key) for p in per_job])
        if key in {"num", "job", "status", "config_hash", "result", "error"}:
            key = f"param.{key}"
        param_values[key] = values
        param_cols.append((key, kind))
    columns = [
        ("num", "int"),
        ("job", "str"),
        *param_cols,
        ("status", "str"),
        *[c for c in metric_cols if c[0] not in param_values],
        *TAIL_COLUMNS,
    ]
    rows = []
    for i, e in enumerate(entries):
        metrics = e["metrics"] or {}
        row: dict = {"num": e["num"], "job": e["job"]}
        for key, values in param_values.items():
            row[key] = values[i]
            if key in metrics and metrics[key] is not None:
                row[key] = metrics[key]
        row["status"] = e["status"]
        for name, _ in metric_cols:
            if name not in param_values:
                row[name] = metrics.get(name)
        row.update(config_hash=e["config_hash"], result=e["result"], error=e["error"])
        rows.append(row)
    return rows, columns


def _counts(entries: list[dict]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for e in entries:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    return counts


def status_line(counts: dict[str, int], interrupted: bool = False) -> str:
    """``'4 jobs: 2 ok, 1 failed, 1 pending'`` (ok and failed always shown), ``' (interrupted)'`` when so."""
    total = sum(counts.values())
    parts = [f"{counts.get(s, 0)} {s}" for s in ("ok", "failed")]
    parts += [f"{n} {s}" for s, n in counts.items() if s not in ("ok", "failed") and n]
    return f"{total} job{'' if total == 1 else 's'}: {', '.join(parts)}" + (
        " (interrupted)" if interrupted else ""
    )


# ---------------------------------------------------------------------------------------------- writers


@functools.cache
def _file_mode() -> int:
    umask = os.umask(0)  # read once per process
    os.umask(umask)
    return 0o666 & ~umask


def _replace_with(path: Path, write: Callable[[str], None]) -> None:
    """Have ``write(tmp_path)`` produce the file in the same folder, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600; like write_atomic, an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_text(meta: dict, jobs: list[dict]) -> str:
    """The summary as JSON: metadata keys indented, one job per line (fast to write, easy to diff)."""
    lines = ["{"]
    lines += [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in meta.items()]
    lines.append('  "jobs": [')
    lines += [
        f"    {json.dumps(job)}{',' if i < len(jobs) - 1 else ''}" for i, job in enumerate(jobs)
    ]
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def _csv_text(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """CSV with a header; missing values are empty cells, booleans ``true``/``false``."""
    names = [c for c, _ in columns]
    bools = [c for c, kind in columns if kind == "bool"]
    if bools:
        rows = [
            {**r, **{c: None if r[c] is None else str(r[c]).lower() for c in bools}} for r in rows
        ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(map(operator.itemgetter(*names), rows))
    return buf.getvalue()


def _write_parquet(
    path: Path, rows: list[dict], columns: list[tuple[str, str]], meta: dict
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}
    arrays = {
        name: pa.array([row.get(name) for row in rows], type=types[kind]) for name, kind in columns
    }
    table = pa.table(arrays).replace_schema_metadata({"llem.study": json.dumps(meta)})
    _replace_with(path, lambda tmp: pq.write_table(table, tmp))


def _fmt(value: object, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e6 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def _with_ci(row: dict, name: str) -> str:
    value, low, high = row.get(name), row.get(f"{name}_ci95_low"), row.get(f"{name}_ci95_high")
    if value is None:
        return ""
    if low is None or high is None:
        return _fmt(value)
    return f"{_fmt(value)} [{_fmt(low, 3)}, {_fmt(high, 3)}]"


def _md_cell(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _md_text(meta: dict, rows: list[dict], columns: list[tuple[str, str]], swept: list[str]) -> str:
    has_energy = any(r.get("energy_per_output_token_j") is not None for r in rows)
    lines = [
        f"# llem study: {Path(meta['sweep_dir']).name}",
        "",
        status_line(meta["counts"], meta["interrupted"]),
        "",
        f"- folder: `{meta['sweep_dir']}`",
        f"- updated: {meta['updated_at']}{' (final)' if meta['final'] else ''}",
    ]
    if meta.get("fixed"):
        lines.append("- fixed: " + ", ".join(f"`{k}={v}`" for k, v in meta["fixed"].items()))
    if meta.get("pareto_front"):
        lines.append(
            "- Pareto front (higher tokens/s, lower J/token): " + ", ".join(meta["pareto_front"])
        )
    if not has_energy:
        reasons = [r["energy_reason"] for r in rows if r.get("energy_reason")]
        lines.append(
            "- energy: not measured" + (f" ({_md_cell(reasons[0], 160)})" if reasons else "")
        )
    lines.append("")
    param_names = [c for c, _ in columns if c in swept or c.removeprefix("param.") in swept]
    header = ["#", *param_names, "status", "out tok/s"]
    if has_energy:
        header += ["J/out tok", "Wh/1k req"]
    header += ["TTFT p50 ms", "ITL p50 ms", "E2E p99 ms", "peak mem MiB", "note"]
    lines += ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        mem = row["peak_memory_bytes"]
        cells = ["" if row["num"] is None else str(row["num"])]
        cells += [_md_cell(_fmt(row[p])) for p in param_names]
        cells += [row["status"], _with_ci(row, "output_tokens_per_s")]
        if has_energy:
            cells += [_with_ci(row, "energy_per_output_token_j"), _fmt(row["wh_per_1k_requests"])]
        cells += [
            _fmt(row["ttft_p50_ms"]),
            _fmt(row["itl_p50_ms"]),
            _fmt(row["e2e_p99_ms"]),
            "" if mem is None else f"{mem / 2**20:.0f}",
            _md_cell(row["error"]) if row["error"] else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(r.get("repeats") and r["repeats"] >= 2 for r in rows):
        lines += ["", "Brackets: 95% confidence interval across repeats (Student's t)."]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def study_lock(sweep_dir: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``<sweep_dir>/.study_summary.lock`` (between processes and threads)."""
    fd = os.open(sweep_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def build_summary(
    sweep_dir: Path,
    *,
    final: bool = False,
    interrupted: bool = False,
    previous: dict[str, dict] | None = None,
) -> tuple[dict, list[dict], list[dict], list]:
    """(metadata, job entries, rows, columns) of a sweep folder, writing nothing."""
    from llem import __version__

    study, entries = scan(sweep_dir, final=final, interrupted=interrupted, previous=previous)
    swept, fixed = swept_parameters(entries)
    rows, columns = build_rows(entries, swept)
    front = pareto_front(
        [
            (r.get("output_tokens_per_s"), r.get("energy_per_output_token_j"))
            if r["status"] == "ok"
            else (None, None)
            for r in rows
        ]
    )
    swept_values: dict[str, list] = {}
    for name, _ in columns:
        key = name.removeprefix("param.")
        if key in swept:
            swept_values[key] = list(dict.fromkeys(r[name] for r in rows))
    study = study or {}
    meta = {
        "summary_version": SUMMARY_VERSION,
        "sweep_dir": str(sweep_dir),
        "llem_version": study.get("llem_version") or __version__,
        "created_at": study.get("created_at"),
        "updated_at": _now(),
        "final": bool(final),
        "interrupted": bool(interrupted),
        "launcher": study.get("launcher"),
        "mode": study.get("mode"),
        "n_jobs": len(entries),
        "counts": _counts(entries),
        "swept": swept_values,
        "fixed": fixed,
        "pareto_front": [rows[i]["job"] for i in front],
        "columns": [c for c, _ in columns],
    }
    return meta, entries, rows, columns


def write_summary(
    sweep_dir: Path, *, final: bool = False, interrupted: bool = False, plot: bool = True
) -> dict:
    """Rebuild every summary file of ``sweep_dir`` (under the study lock); returns the JSON summary.

    ``final``: the sweep has ended (a job folder with no outcome is then ``incomplete``, not ``running``);
    ``interrupted``: it was stopped early (the same, and the header says so); ``plot=False`` skips the png.
    """
    sweep_dir = Path(sweep_dir).resolve()
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep folder {sweep_dir} does not exist")
    with study_lock(sweep_dir):
        meta, entries, rows, columns = build_summary(
            sweep_dir, final=final, interrupted=interrupted, previous=_load_previous(sweep_dir)
        )
        _write_parquet(sweep_dir / SUMMARY_PARQUET, rows, columns, meta)
        write_atomic(sweep_dir / SUMMARY_CSV, _csv_text(rows, columns))
        write_atomic(sweep_dir / SUMMARY_MD, _md_text(meta, rows, columns, list(meta["swept"])))
        if plot:
            try:
                from llem.study.plot import write_plot

                if write_plot(sweep_dir / PARETO_PNG, rows, list(meta["swept"])):
                    meta["plot"] = PARETO_PNG
            except Exception:
                log.exception(
                    "llem: could not draw %s (the tables are written)", sweep_dir / PARETO_PNG
                )
        # written last: its presence with these counts means every other file is at least this recent
        write_atomic(sweep_dir / SUMMARY_JSON, _json_text(meta, entries))
    return {**meta, "jobs": entries}
