"""Paced: a refresh at most once a period, and never a burst's last update left unshown."""

from __future__ import annotations

import heapq

import pytest
from hypothesis import given
from hypothesis import strategies as st

from technic_panel.ui.pacing import Paced


class Simulation:
    """A fake clock with a timer queue: Paced's clock and schedule, driven by the test."""

    def __init__(self) -> None:
        self.now, self.runs, self._timers, self._order = 0.0, [], [], 0

    def schedule(self, run, delay_ms: int) -> None:
        self._order += 1
        heapq.heappush(self._timers, (self.now + delay_ms / 1000, self._order, run))

    def advance(self, to: float) -> None:
        """Move the clock to ``to``, firing every timer due on the way."""
        while self._timers and self._timers[0][0] <= to:
            self.now, _, run = heapq.heappop(self._timers)
            run()
        self.now = to

    def paced(self, period: float) -> Paced:
        return Paced(lambda: self.runs.append(self.now), period, self.schedule,
                     clock=lambda: self.now)


def test_the_first_call_runs_at_once_and_a_burst_leaves_one_run_for_its_end():
    sim = Simulation()
    paced = sim.paced(1.0)
    paced.soon()
    assert sim.runs == [0.0]
    for moment in (0.1, 0.2, 0.5):
        sim.advance(moment)
        paced.soon()
    assert sim.runs == [0.0] and "scheduled=True" in repr(paced)
    sim.advance(5.0)
    assert sim.runs == pytest.approx([0.0, 1.0], abs=0.002)  # a period after the last run
    paced.soon()
    assert sim.runs == pytest.approx([0.0, 1.0, 5.0], abs=0.002)


def test_a_run_now_pushes_the_scheduled_run_a_period_after_it():
    sim = Simulation()
    paced = sim.paced(1.0)
    paced.soon()
    sim.advance(0.3)
    paced.soon()  # scheduled for 1.0
    sim.advance(0.6)
    paced.now()  # a scan ended, say: at once
    sim.advance(10.0)
    assert sim.runs == pytest.approx([0.0, 0.6, 1.6], abs=0.002)  # timers take whole ms


@given(st.lists(st.floats(min_value=0.0, max_value=0.7), min_size=1, max_size=60),
       st.sampled_from([0.05, 0.25, 1.0]))
def test_runs_are_a_period_apart_and_the_last_call_is_always_followed_by_a_run(gaps, period):
    sim = Simulation()
    paced = sim.paced(period)
    moment = 0.0
    for gap in gaps:
        moment += gap
        sim.advance(moment)
        paced.soon()
    last_call = moment
    sim.advance(moment + 10 * period)
    assert all(b - a >= period - 1e-9 for a, b in zip(sim.runs, sim.runs[1:], strict=False))
    assert sim.runs[-1] >= last_call  # nothing the last call brought stays unshown
    assert sim.runs[-1] <= last_call + period + 0.002  # timers take whole ms
