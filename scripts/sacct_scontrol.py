#!/usr/bin/env python3
"""A ``sacct`` stand-in for a SLURM cluster without accounting storage (scripts/slurm_local.sh).

Answers the query submitit makes, ``sacct -o JobID,State,NodeList --parsable2 -j ID [-j ID ...]``,
from ``scontrol -o show job ID``: one ``|``-separated line per job (array tasks as
``<array>_<task>``, a pending range as ``<array>_[2-5%2]``). Jobs SLURM has forgotten (older than
MinJobAge) are left out, as sacct leaves out jobs it does not know. Other options are ignored.
"""

from __future__ import annotations

import subprocess
import sys

FIELDS = {"JobID": "JobId", "State": "JobState", "NodeList": "NodeList", "ExitCode": "ExitCode"}


def parse_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(field names, job ids) from a sacct command line."""
    fields, ids = ["JobID", "State", "NodeList"], []
    it = iter(argv)
    for arg in it:
        if arg in ("-o", "--format"):
            fields = next(it, "").split(",")
        elif arg.startswith("--format="):
            fields = arg.split("=", 1)[1].split(",")
        elif arg in ("-j", "--jobs"):
            ids += next(it, "").split(",")
        elif arg.startswith("--jobs="):
            ids += arg.split("=", 1)[1].split(",")
    return [f for f in fields if f], [i for i in ids if i]


def records(job_id: str) -> list[dict[str, str]]:
    """``scontrol -o show job`` as one key=value dict per line (empty when SLURM forgot the job)."""
    proc = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    out = []
    for line in proc.stdout.splitlines():
        pairs = (token.split("=", 1) for token in line.split() if "=" in token)
        out.append({k: v for k, v in pairs})
    return out


def job_id_of(rec: dict[str, str]) -> str:
    array, task = rec.get("ArrayJobId"), rec.get("ArrayTaskId")
    if not array or not task:
        return rec.get("JobId", "")
    return f"{array}_{task}" if task.isdigit() else f"{array}_[{task}]"


def main(argv: list[str]) -> int:
    fields, ids = parse_args(argv)
    lines = ["|".join(fields)]
    for job_id in ids:
        for rec in records(job_id):
            values = {"JobID": job_id_of(rec)}
            values |= {f: rec.get(FIELDS.get(f, f), "") for f in fields if f != "JobID"}
            lines.append("|".join(values.get(f, "") for f in fields))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
