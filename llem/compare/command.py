"""``llem compare A B [C ...] [--out DIR]``: A is the reference; each other side is compared with
it, pair by pair. Every folder is read before anything is written; ``compare.{md,json}`` go to the
current folder or ``--out``."""

from __future__ import annotations

import string
from pathlib import Path

from llem.compare.facts import config_differences, environment_differences
from llem.compare.inputs import Pair, Side, pair_up, read_side
from llem.compare.report import (
    Comparison,
    EnvDifference,
    PairReport,
    SideInfo,
    UnmatchedJob,
    print_comparison,
    write,
)
from llem.compare.verdict import contention, judge_all
from llem.errors import UsageError

USAGE = "llem compare A B [C ...] [--out DIR] (run, study job or study folders; A is the reference)"


def parse(args: list[str]) -> tuple[list[str], Path]:
    """``(folders, output folder)`` from the command line."""
    folders: list[str] = []
    out = Path.cwd()
    words = iter(args)
    for word in words:
        if word == "--out":
            value = next(words, None)
            if value is None:
                raise UsageError(f"--out needs a folder: {USAGE}")
            out = Path(value).expanduser().absolute()
        elif word.startswith("--out="):
            out = Path(word.partition("=")[2]).expanduser().absolute()
        elif word.startswith("-"):
            raise UsageError(f"unknown flag {word}: {USAGE}")
        else:
            folders.append(word)
    if len(folders) < 2:
        raise UsageError(f"llem compare needs two folders or more: {USAGE}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: give a folder for compare.md and compare.json")
    return folders, out


def letter(i: int) -> str:
    """The name of the ``i``-th folder given: A, B, ... Z, then #27, #28, ..."""
    return string.ascii_uppercase[i] if i < 26 else f"#{i + 1}"


def pair_report(pair: Pair, letters: tuple[str, str]) -> PairReport:
    a, b = pair.a.result, pair.b.result
    return PairReport(
        key=pair.key,
        reference=letters[0],
        other=letters[1],
        a_folder=str(pair.a.folder),
        b_folder=str(pair.b.folder),
        config_differences=config_differences(a.config, b.config),
        environment_differences=[
            EnvDifference(fact=f, a=x, b=y) for f, x, y in environment_differences(a, b)
        ],
        contention=contention(a, b, letters),
        metrics=judge_all(a, b, letters),
    )


def build(sides: list[Side]) -> Comparison:
    """A (``sides[0]``) against each other side."""
    from llem import __version__
    from llem.clock import now_iso

    pairs: list[PairReport] = []
    unmatched: list[UnmatchedJob] = []
    for i, side in enumerate(sides[1:], start=1):
        names = (letter(0), letter(i))
        found, alone = pair_up(sides[0], side)
        pairs += [pair_report(p, names) for p in found]
        unmatched += [
            UnmatchedJob(key=u.key, side=names[0 if u.in_reference else 1], folder=str(u.folder))
            for u in alone
        ]
    return Comparison(
        llem_version=__version__,
        created_at=now_iso(),
        sides=[
            SideInfo(
                letter=letter(i),
                folder=str(s.folder),
                kind="study" if s.study else "run",
                skipped=s.skipped,
            )
            for i, s in enumerate(sides)
        ],
        pairs=pairs,
        unmatched=unmatched,
    )


def main(args: list[str]) -> int:
    if args[:1] in (["-h"], ["--help"]):
        print(f"usage: {USAGE}\nmethod and verdicts: docs/compare.md")
        return 0
    folders, out = parse(args)
    sides = [read_side(f) for f in folders]  # every folder read before anything is written
    comparison = build(sides)
    try:  # the files first: a closed stdout (``| head``) costs the printout, not the files
        written = write(comparison, out)
    except OSError as exc:
        raise UsageError(
            f"cannot write compare.md and compare.json in {out} ({exc.strerror}): give --out DIR"
        ) from None
    print_comparison(comparison)
    print(f"\nwritten: {', '.join(str(p) for p in written)}")
    return 0
