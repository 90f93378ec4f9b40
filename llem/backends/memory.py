"""Peak resident memory (bytes) over a window, from Linux's per-process high-water mark (VmHWM).

Writing ``5`` to ``/proc/<pid>/clear_refs`` resets a process's VmHWM; ``/proc/<pid>/status`` reads
it. Where the reset is refused the peak is since the process started, and the description says so.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path


def _vm_hwm(pid: int) -> int | None:
    """VmHWM of process ``pid`` in bytes; None without /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _clear_refs(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _process_tree() -> list[int]:
    """This process and its descendants."""
    pids = [os.getpid()]
    try:
        import psutil  # a vLLM dependency; without it only this process is measured

        pids += [c.pid for c in psutil.Process().children(recursive=True)]
    except Exception:
        pass
    return pids


class PeakRSS:
    """Peak RSS of this process, or summed over it and its children (``children`` names them, e.g.
    an engine's worker processes; each process contributes its own peak)."""

    def __init__(self, children: str | None = None) -> None:
        self.children = children
        self._reset = False

    def _pids(self) -> list[int]:
        return _process_tree() if self.children else [os.getpid()]

    def reset(self) -> None:
        """Start the window: reset every process's high-water mark."""
        self._reset = all([_clear_refs(pid) for pid in self._pids()])

    def read(self) -> tuple[int | None, str]:
        """(bytes, what was measured) for the window since :meth:`reset`."""
        when = "during the window" if self._reset else "since start"
        if not self.children:
            own = _vm_hwm(os.getpid())
            if own is None:  # no /proc: the kernel's peak since start (ru_maxrss is in KiB)
                kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                return kib * 1024, "process peak RSS since start"
            return own, f"process peak RSS {when}"
        peaks = [p for p in map(_vm_hwm, self._pids()) if p is not None]
        if not peaks:
            return None, "process peak RSS unavailable (no /proc)"
        return sum(peaks), (
            f"peak RSS {when}, summed over llem and its {len(peaks) - 1} child processes "
            f"({self.children}; each process's own peak)"
        )
