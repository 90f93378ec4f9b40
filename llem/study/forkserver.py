"""Study jobs without paying the imports again: a pre-imported parent forks one process per job.

``python -m llem.study.forkserver <launcher pid> <module> ...`` imports the worker and each named
module (the task's module, llem's harness, the jobs' backend engines with torch and transformers
and what they import lazily, their meters and plotting; a ``module:function`` entry is also
called, to fill a cache every job would fill), runs Hydra's plugin scan, then serves the launcher
over its stdin/stdout, one JSON object a line:

- the server says ``{"ready": null}`` (or ``{"ready": "<why forking is unsafe>"}``) once imported;
- the launcher asks ``{"spec": ..., "task": ..., "log": ..., "env": {...}, "cwd": ...}``;
- the server forks, answers ``{"pid": <pid>}`` and, when the job ends, ``{"ended": <pid>,
  "code": <exit code, -signal when killed>}``.

Each job is its own process (own CUDA context, memory and crash domain) and the leader of its own
process group, so the launcher stops it with ``killpg`` exactly as a fresh interpreter; it then runs
:func:`llem.study.worker.main` as ``python -m llem.study.worker`` would. The server itself never
touches a device, runs no torch operation and starts no thread pool: it imports only. It ends when
the launcher closes its stdin.

Parent death is chained: the server dies with the launcher (``PR_SET_PDEATHSIG``, even when the
launcher is SIGKILLed), each job dies with the server and ends its own process group, exactly as a
fresh worker dies with the launcher. When the server is gone, the launcher reports its unfinished
jobs as ended by SIGTERM (what that chain sent them) instead of waiting for their timeout.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, TypedDict

PRELOAD = ("llem.study.worker",)  # every job runs it; the launcher names the rest
READY_TIMEOUT_S = 300.0
# pyarrow's bundled jemalloc starts a background purge thread when imported (by the meters'
# pandas), which would make forking unsafe: in the server (and so in its jobs) it purges inline
SERVER_ENV = {"JE_ARROW_MALLOC_CONF": "background_thread:false"}
POLL_S = 0.05


class Request(TypedDict):
    spec: str
    task: str
    log: str
    env: dict[str, str]
    cwd: str


# ---------------------------------------------------------------------------- the server


def fork_problem() -> str | None:
    """Why forking this process would be unsafe now (``None``: it is safe)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "CUDA was initialised in the fork server"
    if threading.active_count() > 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread())
        return f"threads run in the fork server ({names})"
    try:  # threads a native library started (a fork copies only the calling one)
        native = len(os.listdir("/proc/self/task"))
    except OSError:
        native = 1
    return f"{native - 1} native threads run in the fork server" if native > 1 else None


def _preload(modules: Sequence[str]) -> None:
    """Import each ``module``; a ``module:function`` entry is imported and called (no arguments)
    to fill that module's process-wide caches once for every job."""
    from hydra.core.plugins import Plugins

    for name in (*PRELOAD, *modules):
        module, _, function = name.partition(":")
        imported = importlib.import_module(module)
        if function:
            getattr(imported, function)()
    Plugins.instance()  # Hydra's plugin scan, done once for every job


def _run_job(request: Request, server_pid: int) -> int:
    """In the forked child: become a job like ``python -m llem.study.worker`` started fresh."""
    from llem.study import worker

    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    argv = [request["spec"], request["task"], str(server_pid)]  # the job dies with the server
    sys.argv = [worker.__file__ or "llem.study.worker", *argv]
    try:
        code = worker.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # what a fresh interpreter runs at exit (logging, meters)
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _say(message: dict[str, object]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def serve(launcher_pid: int, modules: Sequence[str]) -> None:
    """Preload, then fork one job per request until stdin closes (or the launcher dies)."""
    from llem.signals import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's to handle
    die_with_parent(launcher_pid)  # SIGTERM's default action ends the server; its jobs follow
    server_pid = os.getpid()
    try:
        _preload(modules)
        problem = fork_problem()
    except Exception as exc:  # a broken preload: the launcher falls back to fresh interpreters
        problem = f"the fork server could not import: {type(exc).__name__}: {exc}"
    _say({"ready": problem})
    children: set[int] = set()
    pending = b""
    open_ = problem is None
    while open_ or children:
        readable, _, _ = select.select([0] if open_ else [], [], [], POLL_S)
        if readable:
            chunk = os.read(0, 65536)
            open_ = bool(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                request: Request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    os._exit(_run_job(request, server_pid))
                children.add(pid)
                _say({"pid": pid})
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                _say({"ended": pid, "code": os.waitstatus_to_exitcode(status)})


# ---------------------------------------------------------------------------- the launcher's side


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _end_orphan(pid: int, grace_s: float = 10.0) -> None:
    """Wait for a job whose server died to end (it was sent SIGTERM); kill its group after
    ``grace_s``."""
    deadline = time.monotonic() + grace_s
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class ForkedJob:
    """A job the fork server started: polled and waited like :class:`subprocess.Popen`."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server, self.pid = server, pid

    def poll(self) -> int | None:
        return self.server.exit_code(self.pid)

    def wait(self, timeout: float | None = None) -> int:
        code = self.server.wait_exit(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"job {self.pid}", timeout or 0.0)
        return code


class ForkServer:
    """The launcher's handle on one fork server process (started at once, ready on first use).

    Its stderr is kept in memory until :meth:`keep_log` names the file (a server started before
    the study folder is locked writes nothing there until then)."""

    def __init__(self, modules: Sequence[str], log: Path | None = None) -> None:
        self.modules = sorted(modules)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llem.study.forkserver", str(os.getpid()), *self.modules],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={**SERVER_ENV, **os.environ},
        )
        self._lock = threading.Condition()
        self._pids: list[int] = []
        self._exits: dict[int, int] = {}
        self._started: set[int] = set()
        self._ready: tuple[bool, str | None] | None = None  # (answered, problem)
        self._log: IO[bytes] | None = None
        self._log_name = "the fork server's log"
        self._early: list[bytes] = []  # stderr before keep_log()
        threading.Thread(target=self._read, name="llem-forkserver", daemon=True).start()
        self._pump = threading.Thread(target=self._copy_stderr, name="llem-forkserver-log")
        self._pump.daemon = True
        self._pump.start()
        if log is not None:
            self.keep_log(log)

    def keep_log(self, log: Path) -> None:
        """Write the server's stderr (so far and from now on) to ``log``."""
        with self._lock:
            self._log, self._log_name = log.open("wb"), log.name
            self._log.write(b"".join(self._early))
            self._log.flush()
            self._early.clear()

    def _copy_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                if self._log is None:
                    self._early.append(line)
                else:
                    self._log.write(line)
                    self._log.flush()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            with self._lock:
                if "ready" in message:
                    self._ready = (True, message["ready"])
                elif "pid" in message:
                    self._pids.append(int(message["pid"]))
                    self._started.add(int(message["pid"]))
                elif "ended" in message:
                    self._exits[int(message["ended"])] = int(message["code"])
                self._lock.notify_all()
        with self._lock:  # the server is gone
            if self._ready is None:
                self._ready = (True, f"the fork server exited (code {self.proc.wait()})")
            for pid in self._started - self._exits.keys():  # ended by the parent-death chain
                _end_orphan(pid)
                self._exits[pid] = -signal.SIGTERM
            self._pids.append(-1)
            self._lock.notify_all()

    def problem(self) -> str | None:
        """``None`` once the server is ready to fork, else why jobs must start fresh instead."""
        with self._lock:
            self._lock.wait_for(lambda: self._ready is not None, READY_TIMEOUT_S)
            return (
                "the fork server did not start in time" if self._ready is None else self._ready[1]
            )

    def start(self, spec: Path, task: str, log: Path, env: dict[str, str]) -> ForkedJob:
        request: Request = {
            "spec": str(spec),
            "task": task,
            "log": str(log),
            "env": env,
            "cwd": os.getcwd(),
        }
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            self._lock.wait_for(lambda: bool(self._pids))
            pid = self._pids.pop(0)
        if pid < 0:
            raise OSError(f"the fork server exited (see {self._log_name})")
        return ForkedJob(self, pid)

    def exit_code(self, pid: int) -> int | None:
        with self._lock:
            return self._exits.get(pid)

    def wait_exit(self, pid: int, timeout: float | None) -> int | None:
        with self._lock:
            self._lock.wait_for(lambda: pid in self._exits, timeout)
            return self._exits.get(pid)

    def close(self) -> None:
        """Let the server end (it waits for its running jobs) and release its pipes."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._pump.join(5)
        if self._log is not None:
            self._log.close()


def server_modules(task: str, preloads: Iterable[str]) -> list[str]:
    """What a fork server for jobs of ``task`` (``module:function``) preloads: the jobs' preloads
    (:func:`llem.harness.preload`), the task's module (not a script's: its top level is the job's
    to run) and, for llem's own task, the harness."""
    modules = set(preloads)
    task_module = task.rsplit(":", 1)[0]
    if not task_module.endswith(".py"):
        modules.add(task_module)
    if task.startswith("llem."):
        modules.add("llem.harness")
    return sorted(modules)


_EARLY: list[ForkServer] = []  # a server started by the pre-flight, for the launcher to claim


def start_early(modules: Sequence[str]) -> None:
    """Start the study's fork server now (the pre-flight has validated every job), so that its
    imports run beside Hydra's composition of the jobs; :func:`claim` hands it to the launcher."""
    _EARLY.append(ForkServer(modules))


def claim(modules: Sequence[str], log: Path) -> ForkServer:
    """The server started early if it preloads exactly ``modules``, else a new one."""
    while _EARLY:
        early = _EARLY.pop()
        if early.modules == sorted(modules):
            early.keep_log(log)
            return early
        early.close()
    return ForkServer(modules, log)


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2:])
    sys.stdout.flush()
    os._exit(0)  # every job has ended: skip tearing down torch's modules (~1 s)
