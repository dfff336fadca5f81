"""Paced: run a refresh at most once a period, and once more when a burst ends.

While a live scan runs, the controller applies thousands of updates a second, ten drains a
second. The table takes them as patches of its source; every other pane that changes (the
stats, the progress bar, the signal counts, the alerts panel) makes the browser lay out the
whole page again, and those layouts, not the table's patches, held the rows back: at 4,000
ticks a second, feed to row in Chromium took 2.3 s at the median with the panes refreshed
on every drain, 0.15 s with them refreshed once a second (benchmarks/bench_live.py). So the
dashboard refreshes them through a :class:`Paced`: the first call after a quiet period runs
at once; calls within the period leave one run scheduled for its end, so the panes never
lag the table by more than the period, however the updates arrive.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import panel as pn

Schedule = Callable[[Callable[[], None], int], None]
"""Run a callable once, after the given milliseconds, on the document's thread."""


def panel_schedule(action: Callable[[], None], delay_ms: int) -> None:
    """Run ``action`` once after ``delay_ms`` through Panel (the document's or kernel's loop)."""
    pn.state.add_periodic_callback(action, period=max(delay_ms, 1), count=1)


class Paced:
    """Run ``action`` at most once per ``period`` seconds through :meth:`soon`; never drop the last.

    :meth:`now` runs it at once (a scan started or ended, a filter changed). Not thread-safe:
    call it on the document's thread, as ``schedule`` runs the deferred run.
    """

    def __init__(self, action: Callable[[], None], period: float,
                 schedule: Schedule = panel_schedule,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self._action, self._schedule, self._clock = action, schedule, clock
        self._last = float("-inf")
        self._scheduled = False

    def __repr__(self) -> str:
        return f"Paced(period={self.period}, scheduled={self._scheduled})"

    def now(self) -> None:
        """Run the action now."""
        self._last = self._clock()
        self._action()

    def soon(self) -> None:
        """Run the action now if a period has passed since the last run, else at its end."""
        wait = self._last + self.period - self._clock()
        if wait <= 0:
            self.now()
        elif not self._scheduled:
            self._scheduled = True
            self._schedule(self._deferred, math.ceil(wait * 1000))

    def _deferred(self) -> None:
        self._scheduled = False
        self.soon()  # runs now, or, after a run in between, a period after that one
