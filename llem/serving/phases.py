"""Meter windows following a served run: ``ramp``, ``steady``, ``drain``, back to back, in a thread.

Reading meters can take milliseconds and must not delay a send on the event loop, so a thread
follows the driver's :class:`~llem.serving.driver.Marks`: it opens ``ramp`` at once, closes it and
opens ``steady`` when the run is steady, closes that and opens ``drain`` when sending stops, and
closes ``drain`` when :meth:`PhaseWindows.finish` says the last stream has ended. Each phase's span
is stamped (perf_counter) right after its meters were read at the start and right before they are
read at the end, so tokens are counted over the interval the energy covers. The whole run is the
three together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Generic, TypeVar

from llem.serving.driver import Marks
from llem.serving.window import PhaseName, Span

W = TypeVar("W")  # what a meter window yields (an EnergySession Window: its readings after closing)
PHASES: tuple[PhaseName, ...] = ("ramp", "steady", "drain")


@dataclass(frozen=True)
class Phase(Generic[W]):
    name: PhaseName
    span: Span
    window: W


class PhaseWindows(Generic[W]):
    """``open_window(name)`` is a context manager that reads the meters on entry and on exit (e.g.
    ``lambda name: energy.window(name, sync)``). Call :meth:`start` before the driver runs and
    :meth:`finish` after it returns (also when it fails)."""

    def __init__(
        self, marks: Marks, open_window: Callable[[str], AbstractContextManager[W]]
    ) -> None:
        self.marks, self.open_window = marks, open_window
        self.phases: list[Phase[W]] = []
        self._done = threading.Event()
        self._opened = threading.Event()  # the ramp window's start is stamped
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="llem-phase-windows", daemon=True)

    def _run(self) -> None:
        try:
            for name, reached in zip(
                PHASES, (self.marks.steady, self.marks.drain, self._done), strict=True
            ):
                with self.open_window(name) as win:
                    start = time.perf_counter()
                    self._opened.set()
                    reached.wait()
                    end = time.perf_counter()
                self.phases.append(Phase(name, Span(start, end), win))
        except BaseException as exc:  # re-raised by finish() in the caller's thread
            self._error = exc
        finally:
            self._opened.set()

    def start(self) -> None:
        """Open the ``ramp`` window; returns once its start is stamped, so no send precedes it."""
        self._thread.start()
        self._opened.wait()

    def finish(self) -> list[Phase[W]]:
        """Close the open window (a run that stopped early is drained at once); the phases."""
        self.marks.reach_drain()
        self._done.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.phases

    def steady(self) -> tuple[Phase[W] | None, str | None]:
        """The steady phase, or (None, why) when the run never became steady."""
        if self.marks.steady_s is None:
            return None, "the run never became steady (in-flight target or ramp-up not reached)"
        return self.phases[1], None

    def whole(self) -> Span:
        """From the ramp window's start to the drain window's end, both included."""
        return Span(self.phases[0].span.start_s, self.phases[-1].span.end_s, closed=True)
