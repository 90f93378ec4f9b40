"""The host CPU a run used: threads in use, the thread policy, and what other processes took
meanwhile.

Torch's CPU thread count decides throughput by up to 10x on a busy machine, so it is never left
implicit: :func:`thread_policy` picks it deterministically and the result records it. Per measured
window, :class:`CpuWindow` reads ``/proc/stat`` (all CPUs) and the CPU time of llem's own process
tree at both ends; the difference is the CPU time *other* processes took. More than
:data:`CONTENTION_CORES` of one core on average is a warning: the window competed for the CPU and
its figures are not comparable.

All CPU times are in seconds (kernel ticks / ``SC_CLK_TCK``); ``cores`` = CPU seconds per wall
second. Linux only: elsewhere the figures are ``None`` with a reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from llem.strict import MAX_GAP_S, Strict

PROC = Path("/proc")
CONTENTION_CORES = 0.25  # other processes' average CPU use (cores) above which a window is flagged
QUIET_POLL_S = 0.25  # how often the wait for quiet reads /proc/stat (s)
_ENV_THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _tick_s() -> float:
    try:
        return 1.0 / os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 0.01


def affinity() -> list[int]:
    """CPUs this process may run on (sorted logical ids)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def physical_cores(cpus: list[int], sys_cpu: Path = Path("/sys/devices/system/cpu")) -> int:
    """Distinct (package, core) pairs among ``cpus`` (``len(cpus)`` when unreadable)."""
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            cores.add(
                (
                    (topo / "physical_package_id").read_text().strip(),
                    (topo / "core_id").read_text().strip(),
                )
            )
        except OSError:
            return len(cpus)
    return len(cores) or len(cpus)


class ThreadPolicy(BaseModel):
    """The CPU thread count torch uses for this run, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threads: int = Field(description="torch intra-op threads set for the run")
    rule: str = Field(
        description="which rule chose it (backend.num_threads, OMP_NUM_THREADS, cores)"
    )


@runtime_checkable
class SetsThreads(Protocol):
    """A backend that applied a :class:`ThreadPolicy` (the harness records it)."""

    thread_policy: ThreadPolicy


def thread_policy(requested: int | None, environ: dict[str, str] | None = None) -> ThreadPolicy:
    """``backend.num_threads`` when set; else ``OMP_NUM_THREADS`` when the user exported it;
    else the physical cores in this process's affinity set. Never "whatever torch picked"."""
    env = os.environ if environ is None else environ
    if requested is not None:
        return ThreadPolicy(threads=requested, rule="backend.num_threads")
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return ThreadPolicy(threads=int(omp), rule="OMP_NUM_THREADS")
    cpus = affinity()
    return ThreadPolicy(
        threads=physical_cores(cpus), rule=f"physical cores in the affinity set ({len(cpus)} CPUs)"
    )


class HostCpu(BaseModel):
    """Threads and cores as the run saw them (recorded in ``environment.host_cpu``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    torch_threads: int | None = Field(
        description="torch.get_num_threads() (None: torch not loaded)"
    )
    torch_interop_threads: int | None = Field(description="torch.get_num_interop_threads()")
    policy: ThreadPolicy | None = Field(description="how the thread count was chosen")
    env: dict[str, str | None] = Field(
        description="OMP_NUM_THREADS and MKL_NUM_THREADS as exported"
    )
    affinity: list[int] = Field(description="logical CPUs the process may run on")
    logical_cores: int = Field(description="logical CPUs in the affinity set")
    physical_cores: int = Field(description="physical cores in the affinity set")


def host_cpu(policy: ThreadPolicy | None) -> HostCpu:
    """Read the threads actually in use (torch only when it is already imported)."""
    import sys

    torch = sys.modules.get("torch")
    intra = inter = None
    if torch is not None:
        intra, inter = int(torch.get_num_threads()), int(torch.get_num_interop_threads())
    cpus = affinity()
    return HostCpu(
        torch_threads=intra,
        torch_interop_threads=inter,
        policy=policy,
        env={k: os.environ.get(k) for k in _ENV_THREADS},
        affinity=cpus,
        logical_cores=len(cpus),
        physical_cores=physical_cores(cpus),
    )


# --------------------------------------------------------------------------- contention per window


def _system_busy_s(proc: Path) -> float | None:
    """CPU seconds all CPUs spent not idle since boot (``/proc/stat``, iowait counted as idle)."""
    try:
        first = (proc / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    ticks = [int(v) for v in first[1:9]]
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
    return busy * _tick_s()


def _stat_fields(proc: Path, pid: int) -> list[str] | None:
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()  # fields from 'state' on (comm may hold spaces)


def _cpu_s(fields: list[str]) -> float:
    """CPU seconds of one process and its reaped children from its stat ``fields``."""
    # utime stime cutime cstime = fields 14-17 of stat = index 11-14 after 'state'
    return sum(int(v) for v in fields[11:15]) * _tick_s()


class CpuContention(BaseModel):
    """CPU use during one measured window, split into llem's process tree and everything else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: str = Field(description="the measured window this covers (e.g. repeat-1)")
    duration_s: float = Field(description="wall time of the window (s)")
    llem_cores: float | None = Field(description="llem's process tree CPU time / wall time (cores)")
    other_cores: float | None = Field(
        description="CPU time of all other processes / wall time (cores); > 0.25 is flagged"
    )
    loadavg_1m_start: float | None = Field(
        description="1-minute load average when the window opened"
    )
    loadavg_1m_end: float | None = Field(description="1-minute load average when it closed")
    reason: str | None = Field(None, description="why the CPU figures are null")
    threshold_cores: float | None = Field(
        None, description="contention.threshold_cores the window was judged by (cores)"
    )
    contended: bool | None = Field(
        None, description="other_cores > threshold_cores (null: not measured)"
    )
    waited_s: float | None = Field(
        None,
        description="time spent waiting for quiet before the window (s); null: no wait "
        "(contention.max_wait_s=0)",
    )
    quiet_reached: bool | None = Field(
        None,
        description="whether the wait saw settle_s of quiet (false: it gave up after max_wait_s)",
    )


def _loadavg(proc: Path) -> float | None:
    try:
        return float((proc / "loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class CpuWindow:
    """Reads system and own-tree CPU time at :meth:`start` and :meth:`stop`; :meth:`wait_quiet`
    before :meth:`start` waits for the other processes to go quiet."""

    name: str
    threshold_cores: float = CONTENTION_CORES
    proc: Path = PROC
    root_pid: int = 0
    wait: QuietWait | None = None
    _t0: float = 0.0
    _busy0: float | None = None
    _own0: float = 0.0
    _load0: float | None = None

    def wait_quiet(self, conf: ContentionConfig, phase: Callable[[str], None]) -> None:
        """Wait for quiet per ``conf`` (nothing when ``max_wait_s`` is 0), as the time series phase
        ``quiet-wait`` (``phase`` names it); recorded by stop()."""
        if conf.max_wait_s <= 0:
            return
        phase("quiet-wait")
        self.root_pid = self.root_pid or os.getpid()
        self.wait = wait_for_quiet(
            lambda: others_cpu_s(self.proc, self.root_pid),
            conf.threshold_cores,
            conf.settle_s,
            conf.max_wait_s,
        )

    def start(self) -> None:
        self.root_pid = self.root_pid or os.getpid()
        self._load0 = _loadavg(self.proc)
        self._busy0 = _system_busy_s(self.proc)
        self._own0 = _tree_cpu_s(self.proc, self.root_pid) if self._busy0 is not None else 0.0
        self._t0 = time.perf_counter()

    def stop(self) -> CpuContention:
        wall = time.perf_counter() - self._t0
        busy1 = _system_busy_s(self.proc)
        load1 = _loadavg(self.proc)
        common = {
            "window": self.name,
            "duration_s": wall,
            "loadavg_1m_start": self._load0,
            "loadavg_1m_end": load1,
            "threshold_cores": self.threshold_cores,
            "waited_s": None if self.wait is None else round(self.wait.waited_s, 3),
            "quiet_reached": None if self.wait is None else self.wait.quiet,
        }
        if self._busy0 is None or busy1 is None or wall <= 0:
            reason = "/proc/stat is not readable (not Linux?)"
            return CpuContention(llem_cores=None, other_cores=None, reason=reason, **common)
        own = _tree_cpu_s(self.proc, self.root_pid) - self._own0
        other = round(max(0.0, (busy1 - self._busy0) - own) / wall, 4)
        return CpuContention(
            llem_cores=round(own / wall, 4),
            other_cores=other,
            contended=other > self.threshold_cores,
            **common,
        )


def threshold_of(c: CpuContention) -> float:
    """The window's threshold (cores; :data:`CONTENTION_CORES` for results written before it was
    recorded)."""
    return CONTENTION_CORES if c.threshold_cores is None else c.threshold_cores


def is_contended(c: CpuContention) -> bool | None:
    """Whether other processes took more than the window's threshold; None when not measured."""
    return None if c.other_cores is None else c.other_cores > threshold_of(c)


def contention_warning(c: CpuContention) -> str | None:
    """The warning for a window where other processes used more than its threshold."""
    if c.other_cores is None or not is_contended(c):
        return None
    return (
        f"CPU contention in {c.window}: other processes used {c.other_cores:.2f} cores on average "
        f"(> {threshold_of(c):g} flagged); throughput and energy of this window are not comparable "
        "with an idle machine's"
    )


def _descendants(proc: Path, pid: int) -> list[int]:
    """Live descendants of ``pid`` from each thread's ``children`` list (no scan of /proc)."""
    out: list[int] = []
    tasks = f"{proc}/{pid}/task"  # plain strings: this runs at every sample
    try:
        tids = os.listdir(tasks)
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"{tasks}/{tid}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except (OSError, ValueError):
            continue
        for kid in kids:
            out += [kid, *_descendants(proc, kid)]
    return out


def _tree_cpu_s(proc: Path, root: int) -> float:
    """CPU seconds of ``root`` (incl. its reaped children) and every live descendant."""
    own = 0.0
    if root == os.getpid():
        own = sum(os.times()[:4])  # a system call: cheaper than reading our own stat file
    else:
        fields = _stat_fields(proc, root)
        own = _cpu_s(fields) if fields is not None and len(fields) >= 15 else 0.0
    for pid in _descendants(proc, root):
        fields = _stat_fields(proc, pid)
        own += _cpu_s(fields) if fields is not None and len(fields) >= 15 else 0.0
    return own


def others_cpu_s(proc: Path = PROC, root: int = 0) -> float | None:
    """CPU seconds every process but llem's tree (``root``, default this process, and its live
    descendants) has used since boot: all CPUs' busy time minus the tree's. Cheap enough for every
    time-series sample (a few small files); the difference between two reads over their wall time
    is other processes' CPU use in cores. None where ``/proc/stat`` is not readable."""
    busy = _system_busy_s(proc)
    return None if busy is None else busy - _tree_cpu_s(proc, root or os.getpid())


# --------------------------------------------------------------------------- waiting for quiet


class ContentionConfig(Strict):
    """``contention.*``: when a measured window counts as contended, and the wait for quiet
    before each one (docs/measurement.md, "Waiting for quiet")."""

    threshold_cores: float = Field(
        CONTENTION_CORES,
        gt=0,
        le=1024,
        description="other processes' average CPU use (cores) above which a window is contended",
    )
    settle_s: float = Field(
        2.0,
        gt=0,
        le=MAX_GAP_S,
        description="quiet means other processes stayed under threshold_cores for this long (s)",
    )
    max_wait_s: float = Field(
        0.0,
        ge=0,
        le=MAX_GAP_S,
        description="longest wait for quiet before each measured window (s); 0 = no wait",
    )


@dataclass(frozen=True)
class QuietWait:
    """How a wait for quiet went: ``quiet`` False when it gave up (or None: not measurable)."""

    waited_s: float
    quiet: bool | None


def wait_for_quiet(
    read_other_s: Callable[[], float | None],
    threshold_cores: float,
    settle_s: float,
    max_wait_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> QuietWait:
    """Poll other processes' CPU time every :data:`QUIET_POLL_S` until, over the last
    ``settle_s``, they used at most ``threshold_cores`` on average; give up after ``max_wait_s``
    (s). ``read_other_s``: their CPU seconds so far (a counter; None when unreadable)."""
    t0 = clock()
    first = read_other_s()
    if first is None:
        return QuietWait(0.0, None)
    samples = [(t0, first)]
    while True:
        sleep(QUIET_POLL_S)
        now, other = clock(), read_other_s()
        if other is None:
            return QuietWait(now - t0, None)
        samples.append((now, other))
        # the latest sample at least settle_s old opens the span that is judged
        while len(samples) > 2 and now - samples[1][0] >= settle_s:
            samples.pop(0)
        since, before = samples[0]
        if now - since >= settle_s and (other - before) / (now - since) <= threshold_cores:
            return QuietWait(now - t0, True)
        if now - t0 >= max_wait_s:
            return QuietWait(now - t0, False)
