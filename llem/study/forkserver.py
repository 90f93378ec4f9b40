"""Study jobs without paying the imports again: a pre-imported parent forks one process per job.

``python -m llem.study.forkserver <launcher pid> <protocol fd> <module> ...`` imports the worker
and each named module (the task's module, llem's harness, the jobs' backend engines with torch and
transformers and what they import lazily, their meters and plotting; a ``module:function`` entry
is also called, to fill a cache every job would fill), runs Hydra's plugin scan, then serves the
launcher: requests on its stdin, answers on its own pipe (the ``protocol fd``, never stdout, so
nothing a plugin prints can corrupt it), one JSON object a line:

- the server says ``{"ready": null}`` (or ``{"ready": "<why forking is unsafe>"}``) once imported;
- the launcher asks ``{"spec": ..., "task": ..., "log": ..., "env": {...}, "cwd": ...}``;
- the server forks, answers ``{"pid": <pid>}`` and, when the job ends, ``{"ended": <pid>,
  "code": <exit code, -signal when killed>}``;
- once its stdin is closed and every request read is forked, it says ``{"closed": null}``.

What the imports print (a plugin's banner) is written at the top of each job's log, where a fresh
interpreter would have printed it. Each job is its own process (own CUDA context, memory and crash
domain) leading its own process group, so the launcher stops it with ``killpg`` as a fresh
interpreter; it runs :func:`llem.study.worker.main` as ``python -m llem.study.worker`` would. The
server never touches a device, runs no torch operation and starts no thread pool: it imports only.

Parent death is chained: the server dies with the launcher (``PR_SET_PDEATHSIG``, even when the
launcher is SIGKILLed), each job with the server (ending its own process group); when the server is
gone its unfinished jobs are reported as ended by SIGTERM at once. A stop
(:meth:`ForkServer.stop_jobs`) reaches every forked job, also one whose pid a Ctrl-C kept from the
launcher; helpers the server's imports started (``cpuinfo``) end with the server, also when the
launcher exits without closing it.
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
import tempfile
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
STOPS = {signal.SIGINT, signal.SIGTERM}  # held back in a new job until its handlers are set


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


def _preload_captured(modules: Sequence[str]) -> tuple[bytes, str | None]:
    """Preload with file descriptor 1 captured: (what the imports printed, why forking is unsafe or
    ``None``). From then on the server's own output goes to its log (fd 2)."""
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        try:
            _preload(modules)
            problem = fork_problem()
        except Exception as exc:  # a broken preload: the launcher falls back to fresh interpreters
            problem = f"the fork server could not import: {type(exc).__name__}: {exc}"
        finally:
            sys.stdout.flush()
            os.dup2(2, 1)
        capture.seek(0)
        return capture.read(), problem


def _run_job(request: Request, server_pid: int, protocol: int, printed: bytes) -> int:
    """In the forked child: become a job like ``python -m llem.study.worker`` started fresh."""
    from llem.study import worker

    os.close(protocol)  # the server's pipe: its end-of-file tells the launcher the server is gone
    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)  # a stop sent meanwhile arrives now
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    if printed:
        os.write(1, printed)
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


def _say(protocol: int, message: dict[str, object]) -> None:
    with contextlib.suppress(BrokenPipeError):  # the launcher is gone: so is this server soon
        os.write(protocol, (json.dumps(message) + "\n").encode())


def _fork(request: Request, server_pid: int, protocol: int, printed: bytes) -> int:
    """Fork one job; a stop signal sent to it before its handlers are set waits for them."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    pid = os.fork()
    if pid == 0:
        os._exit(_run_job(request, server_pid, protocol, printed))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
    return pid


def serve(launcher_pid: int, protocol: int, modules: Sequence[str]) -> None:
    """Preload, then fork one job per request until stdin closes (or the launcher dies)."""
    from llem.signals import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's to handle
    die_with_parent(launcher_pid)  # SIGTERM's default action ends the server; its jobs follow
    os.set_inheritable(protocol, False)  # what the imports start never holds the pipe open
    server_pid = os.getpid()
    printed, problem = _preload_captured(modules)
    _say(protocol, {"ready": problem})
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
                pid = _fork(json.loads(line), server_pid, protocol, printed)
                children.add(pid)
                _say(protocol, {"pid": pid})
            if not open_:
                _say(protocol, {"closed": None})
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                _say(protocol, {"ended": pid, "code": os.waitstatus_to_exitcode(status)})


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

    Its output is kept in memory until :meth:`keep_log` names the file (a server started before
    the study folder is locked writes nothing there until then)."""

    def __init__(self, modules: Sequence[str], log: Path | None = None) -> None:
        self.modules = sorted(modules)
        answers, protocol = os.pipe()
        argv = [sys.executable, "-m", "llem.study.forkserver", str(os.getpid()), str(protocol)]
        try:
            self.proc = subprocess.Popen(
                [*argv, *self.modules],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(protocol,),
                start_new_session=True,
                env={**SERVER_ENV, **os.environ},
            )
        finally:
            os.close(protocol)
        _LIVE.add(self)
        self._answers = os.fdopen(answers, "rb")
        self._lock = threading.Condition()
        self._pids: list[int] = []
        self._exits: dict[int, int] = {}
        self._started: set[int] = set()
        self._ready: tuple[bool, str | None] | None = None  # (answered, problem)
        self._closed = False  # the server has forked every request it will get
        self._log: IO[bytes] | None = None
        self._log_name = "the fork server's log"
        self._early: list[bytes] = []  # output before keep_log()
        self._reader = threading.Thread(target=self._read, name="llem-forkserver", daemon=True)
        self._reader.start()
        self._pump = threading.Thread(target=self._copy_log, name="llem-forkserver-log")
        self._pump.daemon = True
        self._pump.start()
        if log is not None:
            self.keep_log(log)

    def keep_log(self, log: Path) -> None:
        """Write the server's output (so far and from now on) to ``log``."""
        with self._lock:
            self._log, self._log_name = log.open("wb"), log.name
            self._log.write(b"".join(self._early))
            self._log.flush()
            self._early.clear()

    def _copy_log(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                if self._log is None:
                    self._early.append(line)
                else:
                    self._log.write(line)
                    self._log.flush()

    def _read(self) -> None:
        for line in self._answers:
            try:
                message = json.loads(line)
            except ValueError:  # not the server's (it writes only whole JSON lines here)
                continue
            with self._lock:
                if "ready" in message:
                    self._ready = (True, message["ready"])
                elif "pid" in message:
                    self._pids.append(int(message["pid"]))
                    self._started.add(int(message["pid"]))
                elif "ended" in message:
                    self._exits[int(message["ended"])] = int(message["code"])
                elif "closed" in message:
                    self._closed = True
                self._lock.notify_all()
        with self._lock:  # the server is gone
            if self._ready is None:
                self._ready = (True, f"the fork server exited (code {self.proc.wait()})")
            for pid in self._started - self._exits.keys():  # ended by the parent-death chain
                _end_orphan(pid)
                self._exits[pid] = -signal.SIGTERM
            self._pids.append(-1)
            self._closed = True
            self._lock.notify_all()

    def problem(self) -> str | None:
        """``None`` once the server is ready to fork, else why jobs must start fresh instead."""
        with self._lock:
            self._lock.wait_for(lambda: self._ready is not None, READY_TIMEOUT_S)
            return "the fork server did not start in time" if not self._ready else self._ready[1]

    def start(self, spec: Path, task: str, log: Path, env: dict[str, str]) -> ForkedJob:
        request = Request(spec=str(spec), task=task, log=str(log), env=env, cwd=os.getcwd())
        assert self.proc.stdin is not None
        with self._lock:
            try:
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
            except OSError:  # its end of the pipe is closed: it is gone
                self._pids.insert(0, -1)
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

    def _close_requests(self) -> None:
        """No more requests (a dead server's pipe may refuse what is still buffered)."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def stop_jobs(self, sig: int, grace_s: float) -> None:
        """Stop every job the server forked and has not seen end (also one whose start was
        interrupted before its pid was handed out): ``sig`` to its process group, SIGKILL after
        ``grace_s`` (s). No request is taken after this."""
        self._close_requests()
        deadline = time.monotonic() + grace_s
        with self._lock:
            self._lock.wait_for(lambda: self._closed, grace_s)
            running = self._started - self._exits.keys()
        for stop in (sig, signal.SIGKILL):
            for pid in running:
                _signal_job(pid, stop)
            with self._lock:
                left = max(0.0, deadline - time.monotonic()) if stop == sig else grace_s
                if self._lock.wait_for(lambda: running <= self._exits.keys(), left):
                    return

    def _end_group(self, sig: int) -> None:
        """``sig`` to the server's process group: the server and the helpers its imports started
        (jobs lead groups of their own)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def close(self, kill: bool = False) -> None:
        """Let the server end (it waits for its running jobs; ``kill``: now, its jobs die with it),
        end what its imports started and release its pipes; a dead server is no error."""
        if kill:
            self._end_group(signal.SIGKILL)
        self._close_requests()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self._end_group(signal.SIGKILL)
            self.proc.wait()
        self._end_group(signal.SIGKILL)
        _LIVE.discard(self)
        self._pump.join(5)
        self._reader.join(5)
        if not self._reader.is_alive():
            self._answers.close()
        with self._lock:
            if self._log is not None:
                self._log.close()


def _signal_job(pid: int, sig: int) -> None:
    """``sig`` to a forked job's process group, or to the job alone before it has made its group
    (it holds the signal back until its handlers are set)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    except PermissionError:
        pass


_LIVE: set[ForkServer] = set()  # servers not closed yet: killed when this process exits


@atexit.register
def _kill_live() -> None:
    for server in list(_LIVE):
        server.close(kill=True)


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
    serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
    sys.stdout.flush()
    os._exit(0)  # every job has ended: skip tearing down torch's modules (~1 s)
