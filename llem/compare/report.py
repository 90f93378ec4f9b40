"""What ``llem compare`` prints and writes: the console text, ``compare.md`` and ``compare.json``
(:class:`Comparison`, one document for every pair)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from llem.compare.difference import RatioInterval
from llem.compare.verdict import MetricComparison, span

COMPARE_MD = "compare.md"
COMPARE_JSON = "compare.json"


class SideInfo(BaseModel):
    letter: str = Field(description="A (the reference), B, C, ...")
    folder: str
    kind: str = Field(description="run | study")
    skipped: list[str] = Field(description="study jobs without a result, with their status")


class EnvDifference(BaseModel):
    fact: str
    a: str
    b: str


class PairReport(BaseModel):
    """One run (or study job) against its reference."""

    key: str = Field(description="the study jobs' swept values ('' for two runs)")
    reference: str = Field(description="the reference side's letter")
    other: str
    a_folder: str
    b_folder: str
    config_differences: list[str] = Field(description="'key: A -> B' per resolved config key")
    environment_differences: list[EnvDifference]
    contention: str | None = Field(description="which side was contended: nothing is compared")
    metrics: list[MetricComparison]


class UnmatchedJob(BaseModel):
    key: str
    side: str = Field(description="the letter of the only side that has this job")
    folder: str


class Comparison(BaseModel):
    """``compare.json``."""

    llem_version: str
    created_at: str = Field(description="ISO 8601, UTC")
    sides: list[SideInfo]
    pairs: list[PairReport]
    unmatched: list[UnmatchedJob]


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _diff(m: MetricComparison) -> str:
    return "n/a" if m.difference_pct is None else f"{m.difference_pct:+.1f}%"


def _ci(iv: RatioInterval | None) -> str:
    return "" if iv is None else span(iv) or "none"


def _title(p: PairReport) -> str:
    return f"{p.other} vs {p.reference}" + (f" ({p.key})" if p.key else "")


def _facts(p: PairReport) -> list[str]:
    """The lines before a pair's table: config and environment differences, contention."""
    lines = [f"{p.reference}: {p.a_folder}", f"{p.other}: {p.b_folder}"]
    if p.config_differences:
        lines.append(f"config differs in {len(p.config_differences)} key(s):")
        lines += [f"  {d}" for d in p.config_differences]
    else:
        lines.append("config: identical")
    if p.environment_differences:
        lines.append(f"environment differs in {len(p.environment_differences)} fact(s):")
        lines += [f"  {e.fact}: {e.a} -> {e.b}" for e in p.environment_differences]
    else:
        lines.append("environment: the same host CPU, GPU, driver, threads and versions")
    if p.contention:
        lines.append(f"not comparable: {p.contention}")
    return lines


def verdict_lines(metrics: list[MetricComparison], *, said_above: bool = False) -> list[str]:
    """``'  energy per output token: B uses 23% less ... : better'`` per measured metric;
    ``said_above``: the contention that makes a pair not comparable was printed once already, each
    line only refers to it."""
    return [
        f"  {m.noun}: "
        + (
            "not comparable (CPU contention, above)"
            if said_above and m.outcome == "not comparable"
            else m.verdict
        )
        for m in metrics
    ]


def print_metrics(metrics: list[MetricComparison], names: tuple[str, str], title: str) -> None:
    """The table of values (A, B, difference, interval), then the verdicts in words."""
    from rich.console import Console
    from rich.table import Table

    table = Table("metric", names[0], names[1], "difference", "95% CI of the difference",
                  title=title)  # fmt: skip
    for m in metrics:
        label = f"{m.label} ({m.unit})" if m.unit else m.label
        table.add_row(label, _num(m.a), _num(m.b), _diff(m), _ci(m.interval))
    Console().print(table)
    print("verdicts:")
    print("\n".join(verdict_lines(metrics, said_above=True)))


def print_comparison(c: Comparison) -> None:
    """The whole comparison on stdout."""
    for side in c.sides:
        if side.skipped:
            print(f"{side.letter}: jobs without a result: {', '.join(side.skipped)}")
    for p in c.pairs:
        print(f"\n== {_title(p)} ==")
        print("\n".join(_facts(p)))
        print_metrics(p.metrics, (p.reference, p.other), _title(p))
    for u in c.unmatched:
        print(f"unmatched: {u.key} only in {u.side} ({u.folder})")


def md_text(c: Comparison) -> str:
    """``compare.md``: per pair, the differences and one table with the verdicts."""
    out = ["# llem compare", ""]
    out += [f"- **{s.letter}**{' (reference)' if i == 0 else ''}: `{s.folder}` ({s.kind})"
            for i, s in enumerate(c.sides)]  # fmt: skip
    for p in c.pairs:
        out += ["", f"## {_title(p)}", ""]
        out += [f"  - {ln.strip()}" if ln.startswith("  ") else f"- {ln}" for ln in _facts(p)]
        out += [
            "",
            f"| metric | {p.reference} | {p.other} | difference | 95% CI | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for m in p.metrics:
            label = f"{m.label} ({m.unit})" if m.unit else m.label
            out.append(
                f"| {label} | {_num(m.a)} | {_num(m.b)} | {_diff(m)} | {_ci(m.interval)} "
                f"| {m.verdict} |"
            )
    if c.unmatched:
        out += ["", "## Unmatched jobs", ""]
        out += [f"- {u.key}: only in {u.side} (`{u.folder}`)" for u in c.unmatched]
    return "\n".join(out) + "\n"


def write(c: Comparison, folder: Path) -> list[Path]:
    """``compare.md`` and ``compare.json`` in ``folder`` (made if missing), each atomically."""
    from llem.paths import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / COMPARE_MD, folder / COMPARE_JSON
    write_atomic(md, md_text(c))
    write_atomic(js, c.model_dump_json(indent=2) + "\n")
    return [md, js]
