"""What ``llem compare`` is given: run folders, study job folders (both hold ``result.json``) and
study folders (their finished jobs, each named by the values of the study's swept keys).

Everything is read before anything is written: a folder that cannot be read is a
:class:`~llem.errors.UsageError` naming it and what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from llem.errors import UsageError
from llem.records import RESULT_FILE, JobStatus
from llem.result import Result

GIVE = "give a run folder, a study job folder or a study folder"


@dataclass(frozen=True)
class Run:
    """One finished run: its folder, its result and (for a study job) its swept keys' values."""

    folder: Path
    result: Result
    params: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``'batch=1 dtype=bf16'`` for a study job, ``''`` for a lone run."""
        return " ".join(f"{k}={v}" for k, v in self.params.items())


@dataclass(frozen=True)
class Side:
    """One folder given to ``llem compare``: a lone run, or a study's finished jobs."""

    folder: Path
    study: bool
    runs: list[Run]
    skipped: list[str] = field(default_factory=list)  # study jobs without a result, with status


@dataclass(frozen=True)
class Pair:
    """Two runs compared: ``a`` the reference, ``key`` the study jobs' swept values (or '')."""

    key: str
    a: Run
    b: Run


@dataclass(frozen=True)
class Unmatched:
    """A study job without a twin on the other side (``in_reference``: it is on side A)."""

    key: str
    in_reference: bool
    folder: Path


def load_result(path: Path) -> Result:
    """A ``result.json``, or a :class:`UsageError` naming it and why it cannot be used."""
    try:
        return Result.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror})") from None
    except ValidationError as exc:
        raise UsageError(
            f"{path} is not a valid llem result ({exc.error_count()} problems): {GIVE} "
            "whose run finished"
        ) from None


def read_side(text: str) -> Side:
    """The run or study at ``text`` (a :class:`UsageError` when it is neither)."""
    folder = Path(text).expanduser().absolute()
    if not folder.exists():
        raise UsageError(f"{text} does not exist: {GIVE}")
    if not folder.is_dir():
        raise UsageError(f"{text} is not a folder: {GIVE}")
    if (folder / RESULT_FILE).is_file():
        return Side(folder, study=False, runs=[Run(folder, load_result(folder / RESULT_FILE))])
    return _read_study(folder, text)


def _read_study(folder: Path, text: str) -> Side:
    from llem.study.scan import scan
    from llem.study.table import job_params, swept_parameters

    plan, entries = scan(folder, settled=True)
    if plan is None and not entries:
        raise UsageError(
            f"{text} has no {RESULT_FILE} and is not a study (no study.json, no job folders): "
            f"{GIVE}"
        )
    params = job_params(entries)
    swept, _ = swept_parameters(params)
    runs: list[Run] = []
    skipped: list[str] = []
    for entry, values in zip(entries, params, strict=True):
        if entry.status is JobStatus.OK and entry.result is not None:
            result = load_result(folder / entry.result)
            runs.append(
                Run(folder / entry.job, result, {k: values[k] for k in swept if k in values})
            )
        else:
            skipped.append(f"{entry.job} ({entry.status.value})")
    if not runs:
        raise UsageError(f"{text} is a study without a finished job (no job has a {RESULT_FILE})")
    return Side(folder, study=True, runs=runs, skipped=skipped)


def pair_up(a: Side, b: Side) -> tuple[list[Pair], list[Unmatched]]:
    """The pairs to compare and the study jobs left unmatched.

    Two studies: jobs with the same values of the keys either study sweeps. A lone run against a
    study: the run against each job.
    """
    if not (a.study and b.study):
        return [Pair(y.key or x.key, x, y) for x in a.runs for y in b.runs], []
    keys = list(dict.fromkeys([k for r in [*a.runs, *b.runs] for k in r.params]))

    def match(run: Run) -> tuple[str | None, ...]:
        return tuple(run.params.get(k) for k in keys)

    others: dict[tuple[str | None, ...], Run] = {}
    for run in b.runs:
        others.setdefault(match(run), run)
    pairs: list[Pair] = []
    unmatched: list[Unmatched] = []
    for run in a.runs:
        twin = others.pop(match(run), None)
        if twin is None:
            unmatched.append(Unmatched(run.key, True, run.folder))
        else:
            pairs.append(Pair(run.key, run, twin))
    unmatched += [Unmatched(run.key, False, run.folder) for run in others.values()]
    return pairs, unmatched
