"""Is a local model folder complete? Checked in pre-flight, without torch, before anything runs.

A folder saved with ``save_pretrained`` holds ``config.json`` (a JSON object with ``model_type``),
tokenizer files, and weights (``*.safetensors`` whose headers parse and whose data fits in the
file, or ``pytorch_model*.bin``). Each gap is named in one line: what to re-download or re-save.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

TOKENIZER_FILES = (
    ("tokenizer.json",),
    ("tokenizer.model",),
    ("vocab.json", "merges.txt"),
    ("vocab.txt",),
)
_MAX_HEADER = 100 * 1024 * 1024  # safetensors caps its JSON header at 100 MB


def _safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable safetensors file (None when header and sizes check out)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{path.name} is truncated ({size} bytes)"
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or 8 + n > size:
                return f"{path.name} has a damaged header"
            header = json.loads(fh.read(n))
    except OSError as exc:
        return f"{path.name} cannot be read ({exc.strerror})"
    except (ValueError, UnicodeDecodeError):
        return f"{path.name} has a damaged header"
    if not isinstance(header, dict):
        return f"{path.name} has a damaged header"
    ends = [
        int(v["data_offsets"][1])
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v
    ]
    if 8 + n + max(ends, default=0) > size:
        return f"{path.name} is truncated ({size} bytes, its header needs {8 + n + max(ends)})"
    return None


def folder_problems(folder: Path) -> list[str]:
    """What is missing or broken in the model folder ``folder`` (empty when it looks loadable)."""
    problems: list[str] = []
    config = folder / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ["no config.json (save the model with save_pretrained())"]
    except (OSError, ValueError, UnicodeDecodeError):
        return ["config.json is not valid JSON"]
    if not isinstance(data, dict) or not data.get("model_type"):
        problems.append("config.json has no model_type")
    if not any(all((folder / f).is_file() for f in group) for group in TOKENIZER_FILES):
        problems.append(
            "no tokenizer files (tokenizer.json, tokenizer.model or vocab.json + merges.txt)"
        )
    shards = sorted(folder.glob("*.safetensors"))
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if not shards and not bins:
        problems.append("no weights (*.safetensors or pytorch_model*.bin)")
    problems += [p for s in shards if (p := _safetensors_problem(s))]
    problems += [f"{b.name} is empty" for b in bins if b.stat().st_size == 0]
    return problems
