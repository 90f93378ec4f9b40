"""Every way a user or a scheduler ends llem, handled as one: Ctrl-C, SIGTERM, SIGHUP.

:func:`stop_on_signals` turns the first of them into a :class:`Stopped` exception raised in the main
thread, so ``finally`` blocks stop child processes and write what finished; further signals while
stopping are ignored (a second Ctrl-C gives no traceback). The process then exits with
``128 + signal``, the shell's convention (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).

An asyncio loop run by :func:`run_stoppable` gets the stop as a cancellation of its main task
instead (an exception raised inside one of the loop's callbacks would be logged and swallowed);
once the loop has unwound, :class:`Stopped` is raised as everywhere else.

:func:`die_with_parent` makes a child process end when its parent dies, even by SIGKILL
(Linux ``PR_SET_PDEATHSIG``; elsewhere a no-op, said in the docs).
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from sys import UnraisableHookArgs

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1
REDELIVER_S = 0.05  # a swallowed or deferred stop is raised again this much later
_IMPORT_MACHINERY = "<frozen importlib"  # the code of Python's import system
_ENDING = [False]  # a stop was raised in this process (in any, nested, stop_on_signals block)
# while run_stoppable runs a loop: how a stop reaches it (instead of raising in the main thread)
_LOOP_STOPS: list[Callable[[int], None]] = []
T = TypeVar("T")


class Stopped(BaseException):
    """Raised in the main thread by the first handled signal (a BaseException like Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.progress: str | None = None  # what a stopped served run had done (kept as its record)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def description(self) -> str:
        name = signal.Signals(self.signum).name
        return "Ctrl-C" if self.signum == signal.SIGINT else name


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Raise :class:`Stopped` on the first handled signal; ignore the rest, also after the block
    (the process is on its way out: Python would otherwise reset the handlers while exiting and a
    second Ctrl-C would kill it with no exit code of llem's).

    Python runs the handler wherever the main thread is, and a :class:`Stopped` raised inside a
    finaliser or a weakref callback (run by the garbage collector) cannot propagate: Python passes
    it to ``sys.unraisablehook`` and carries on. The hook installed here delivers that signal again
    (``_thread.interrupt_main``, :data:`REDELIVER_S` later), so it is raised where the run can
    stop. A signal that lands inside Python's import machinery is delivered again the same way:
    raised there it could leave the import lock held (the meter thread, importing, would then
    wait forever and so would the stop)."""
    stopping = False

    def deliver_later(signum: int, again: bool) -> None:
        def deliver() -> None:
            nonlocal stopping
            if again:
                stopping = False
            _thread.interrupt_main(signal.Signals(signum))

        timer = threading.Timer(REDELIVER_S, deliver)
        timer.daemon = True
        timer.start()

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        if frame is not None and frame.f_code.co_filename.startswith(_IMPORT_MACHINERY):
            # inside importlib itself (between taking the import lock and its ``try``): raising
            # here can leave the lock held and any thread that imports later waits forever
            deliver_later(signum, again=False)
            return
        stopping = _ENDING[0] = True
        if _LOOP_STOPS:  # an asyncio loop runs: cancel it (it raises Stopped once unwound)
            _LOOP_STOPS[-1](signum)
            return
        raise Stopped(signum)

    previous_hook = sys.unraisablehook

    def unraisable(args: UnraisableHookArgs) -> None:
        if not isinstance(args.exc_value, Stopped):
            previous_hook(args)
            return
        # swallowed: deliver it again once the finaliser has returned (a later one that lands in
        # another finaliser comes back here)
        deliver_later(args.exc_value.signum, again=True)

    previous = {s: signal.signal(s, handler) for s in HANDLED}
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        if _ENDING[0]:  # the process is ending: a later signal (a 2nd Ctrl-C) must not kill it
            ignore_signals()
        else:
            for s, h in previous.items():
                signal.signal(s, h)


def run_stoppable(main: Coroutine[object, object, T]) -> T:
    """``asyncio.run(main)`` inside :func:`stop_on_signals`: a stop cancels ``main`` (its tasks
    unwind, their ``finally`` blocks run), then :class:`Stopped` is raised here."""
    got: list[int] = []
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[T]]] = []

    def stop(signum: int) -> None:  # in the signal handler: only wake the loop
        got.append(signum)
        for loop, task in running:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(task.cancel)

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        running.append((asyncio.get_running_loop(), task))
        if got:  # stopped before the loop ran
            raise asyncio.CancelledError
        return await main

    _LOOP_STOPS.append(stop)
    try:
        result = asyncio.run(guarded())
    except asyncio.CancelledError:
        if not got:
            raise
    finally:
        _LOOP_STOPS.remove(stop)
        main.close()  # never awaited when stopped before the loop ran
    if got:
        raise Stopped(got[0])
    return result


def ignore_signals() -> None:
    """From now on the handled signals do nothing (while cleaning up after :class:`Stopped`)."""
    for s in HANDLED:
        signal.signal(s, signal.SIG_IGN)


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies; exit if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(128 + int(sig))
