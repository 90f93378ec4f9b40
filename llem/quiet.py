"""Silence a library's chatter on stdout/stderr in the calling thread only.

``contextlib.redirect_stdout`` swaps ``sys.stdout`` for the whole process: used in a helper thread
(llem opens its meters beside the model load) it swallows what the main thread prints meanwhile,
and two threads doing it at once can leave a swapped stream in place for good. :func:`quiet`
drops only the calling thread's writes.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TextIO, cast

_lock = threading.Lock()
_muted: dict[int, int] = {}  # thread id -> nesting depth


class _ThreadMuted:
    """Stands in for ``sys.stdout``/``sys.stderr`` while a thread is muted: that thread's writes
    are dropped, every other thread's go to the stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if threading.get_ident() in _muted:
            return len(text)
        return self.stream.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)


def _unwrap(stream: TextIO) -> TextIO:
    return stream.stream if isinstance(stream, _ThreadMuted) else stream


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Drop what this thread prints to ``sys.stdout`` and ``sys.stderr`` inside the block."""
    me = threading.get_ident()
    with _lock:
        if not _muted:
            sys.stdout = cast(TextIO, _ThreadMuted(sys.stdout))
            sys.stderr = cast(TextIO, _ThreadMuted(sys.stderr))
        _muted[me] = _muted.get(me, 0) + 1
    try:
        yield
    finally:
        with _lock:
            _muted[me] -= 1
            if not _muted[me]:
                del _muted[me]
            if not _muted:
                sys.stdout, sys.stderr = _unwrap(sys.stdout), _unwrap(sys.stderr)
