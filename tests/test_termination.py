"""EarlyTerminationCriteria: each criterion, first reason wins, the timer, bad values."""

from __future__ import annotations

import math
import threading

import pytest
from helpers import wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_panel.config import ScanConfig
from technic_panel.streaming.termination import EarlyTerminationCriteria
from technic_panel.vocabulary import STOP_REASONS


def result(signal: str = "STRONG_BUY", rating: float = 80.0) -> dict:
    return {"symbol": "ACME", "signal": signal, "tech_rating": rating, "alpha_score": 0.5}


def timer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "technic-timeout"]


@pytest.fixture(autouse=True)
def _no_timer_left(no_thread_leaks):
    """Every test must end its timer threads (no_thread_leaks checks all threads)."""
    yield


# --- no criterion ---------------------------------------------------------------------------

def test_without_criteria_nothing_fires_but_quality_is_counted():
    criteria = EarlyTerminationCriteria()
    for processed in range(1, 11):
        assert criteria.observe_result(result(), processed, 10) is None
    assert criteria.observe_progress(10, 10) is None
    assert criteria.reason is None
    assert criteria.quality_count == 10


# --- max_signals ----------------------------------------------------------------------------

def test_max_signals_counts_only_quality_signals_at_or_above_min_rating():
    criteria = EarlyTerminationCriteria(max_signals=2, quality_signals=("STRONG_BUY", "BUY"),
                                        min_rating=70.0)
    assert criteria.observe_result(result("HOLD", 99.0), 1, 100) is None
    assert criteria.observe_result(result("BUY", 69.99), 2, 100) is None
    assert criteria.quality_count == 0
    assert criteria.observe_result(result("STRONG_BUY", 70.0), 3, 100) is None  # inclusive
    assert criteria.quality_count == 1
    assert criteria.reason is None
    assert criteria.observe_result(result("BUY", 75.0), 4, 100) == "max_signals"
    assert criteria.reason == "max_signals"
    # later quality results are still counted, but the criterion fires once only
    assert criteria.observe_result(result("BUY", 75.0), 5, 100) is None
    assert criteria.quality_count == 3
    assert criteria.reason == "max_signals"


def test_is_quality_needs_the_signal_and_a_rating():
    criteria = EarlyTerminationCriteria(quality_signals=["SELL"], min_rating=0.0)
    assert criteria.is_quality(result("SELL", 0.0))
    assert not criteria.is_quality(result("STRONG_BUY", 100.0))
    assert not criteria.is_quality({"symbol": "ACME", "signal": "SELL"})  # no rating
    assert not criteria.is_quality({"symbol": "ACME", "tech_rating": 50.0})  # no signal


def test_max_signals_is_checked_before_max_fraction_on_the_same_result():
    criteria = EarlyTerminationCriteria(max_signals=1, max_fraction=0.1)
    assert criteria.observe_result(result(), 10, 10) == "max_signals"
    assert criteria.reason == "max_signals"


def test_max_signals_reached_after_another_reason_does_not_fire():
    criteria = EarlyTerminationCriteria(max_signals=1, max_fraction=0.5)
    assert criteria.fire("manual")
    assert criteria.observe_result(result(), 1, 10) is None  # enough, but manual won
    assert criteria.observe_result(result(), 9, 10) is None  # max_fraction lost too
    assert criteria.quality_count == 2
    assert criteria.reason == "manual"


# --- max_fraction ---------------------------------------------------------------------------

def test_max_fraction_fires_once_that_share_is_processed():
    criteria = EarlyTerminationCriteria(max_fraction=0.25)
    assert criteria.observe_progress(0, 100) is None
    assert criteria.observe_progress(24, 100) is None
    assert criteria.observe_progress(25, 100) == "max_fraction"
    assert criteria.observe_progress(26, 100) is None  # already fired
    assert criteria.reason == "max_fraction"


def test_max_fraction_of_one_waits_for_the_whole_universe():
    criteria = EarlyTerminationCriteria(max_fraction=1.0)
    assert criteria.observe_progress(99, 100) is None
    assert criteria.observe_progress(100, 100) == "max_fraction"


def test_max_fraction_ignores_an_empty_universe():
    criteria = EarlyTerminationCriteria(max_fraction=0.5)
    assert criteria.observe_progress(0, 0) is None
    assert criteria.reason is None


def test_observe_result_also_checks_the_fraction_for_a_non_quality_result():
    criteria = EarlyTerminationCriteria(max_signals=5, max_fraction=0.5)
    assert criteria.observe_result(result("HOLD"), 4, 10) is None
    assert criteria.observe_result(result("HOLD"), 5, 10) == "max_fraction"
    assert criteria.quality_count == 0


# --- fire / manual --------------------------------------------------------------------------

@pytest.mark.parametrize("reason", STOP_REASONS)
def test_fire_records_any_known_reason(reason):
    criteria = EarlyTerminationCriteria()
    assert criteria.fire(reason) is True
    assert criteria.reason == reason


def test_first_reason_wins():
    criteria = EarlyTerminationCriteria(max_signals=1, max_fraction=0.1)
    assert criteria.fire("manual") is True
    assert criteria.fire("timeout") is False
    assert criteria.fire("inactive") is False
    assert criteria.observe_progress(10, 10) is None
    assert criteria.reason == "manual"


def test_an_unknown_reason_is_rejected_and_changes_nothing():
    criteria = EarlyTerminationCriteria()
    with pytest.raises(ValueError, match=r"reason must be one of max_signals, .*not 'bored'"):
        criteria.fire("bored")
    assert criteria.reason is None
    assert criteria.fire("manual")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(STOP_REASONS), min_size=1, max_size=8))
def test_property_exactly_the_first_fired_reason_wins(reasons):
    criteria = EarlyTerminationCriteria()
    outcomes = [criteria.fire(reason) for reason in reasons]
    assert outcomes == [True] + [False] * (len(reasons) - 1)
    assert criteria.reason == reasons[0]


def test_concurrent_results_count_exactly_and_fire_once():
    criteria = EarlyTerminationCriteria(max_signals=100)
    fired: list[str] = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        for _ in range(50):
            reason = criteria.observe_result(result(), 0, 1000)
            if reason:
                fired.append(reason)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert criteria.quality_count == 400
    assert fired == ["max_signals"]


# --- timeout and the timer ------------------------------------------------------------------

def test_timeout_fires_from_the_timer_without_any_result():
    criteria = EarlyTerminationCriteria(timeout=0.05)
    calls: list[str | None] = []
    criteria.start_timer(lambda: calls.append(criteria.reason))
    wait_until(lambda: calls, timeout=5)
    assert calls == ["timeout"]
    assert criteria.reason == "timeout"
    wait_until(lambda: not timer_threads())
    criteria.cancel()


def test_timer_does_not_call_back_when_another_reason_won():
    criteria = EarlyTerminationCriteria(timeout=0.05)
    calls: list[str] = []
    assert criteria.fire("max_fraction")
    criteria.start_timer(lambda: calls.append("called"))
    assert timer_threads()
    wait_until(lambda: not timer_threads())  # the timer expired and ended
    assert calls == []
    assert criteria.reason == "max_fraction"
    criteria.cancel()


def test_no_timeout_starts_no_thread():
    criteria = EarlyTerminationCriteria()
    criteria.start_timer(lambda: pytest.fail("no timeout, no callback"))
    assert timer_threads() == []
    criteria.cancel()


def test_cancel_ends_the_timer_thread_and_is_safe_twice():
    criteria = EarlyTerminationCriteria(timeout=60)
    calls: list[str] = []
    criteria.start_timer(lambda: calls.append("called"))
    (thread,) = timer_threads()
    assert thread.daemon
    criteria.cancel()
    assert not thread.is_alive()  # cancel joined it
    criteria.cancel()
    assert calls == []
    assert criteria.reason is None


def test_cancel_before_any_timer_is_harmless():
    criteria = EarlyTerminationCriteria(timeout=1)
    criteria.cancel()
    criteria.cancel()
    assert criteria.reason is None


def test_cancel_from_the_timeout_callback_does_not_join_itself():
    criteria = EarlyTerminationCriteria(timeout=0.01)
    done = threading.Event()

    def on_timeout():
        criteria.cancel()  # runs on the timer thread: must not deadlock on its own join
        done.set()

    criteria.start_timer(on_timeout)
    assert done.wait(5)
    wait_until(lambda: not timer_threads())
    assert criteria.reason == "timeout"


# --- construction ---------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "field", "value_text"), [
    ({"max_signals": 0}, "max_signals", "0"),
    ({"max_signals": -3}, "max_signals", "-3"),
    ({"min_rating": -0.5}, "min_rating", "-0.5"),
    ({"min_rating": 100.5}, "min_rating", "100.5"),
    ({"min_rating": math.nan}, "min_rating", "nan"),
    ({"max_fraction": 0}, "max_fraction", "0"),
    ({"max_fraction": -0.1}, "max_fraction", "-0.1"),
    ({"max_fraction": 1.5}, "max_fraction", "1.5"),
    ({"max_fraction": math.nan}, "max_fraction", "nan"),
    ({"timeout": 0}, "timeout", "0"),
    ({"timeout": -1.0}, "timeout", "-1.0"),
    ({"timeout": math.nan}, "timeout", "nan"),
    ({"timeout": math.inf}, "timeout", "inf"),  # its timer thread would die of OverflowError
    ({"quality_signals": ("STRONG_BUY", "MEH")}, "quality_signals", "'MEH'"),
    ({"quality_signals": ()}, "quality_signals", "[]"),
])
def test_bad_values_raise_value_error_naming_field_rule_and_value(options, field, value_text):
    with pytest.raises(ValueError) as info:
        EarlyTerminationCriteria(**options)
    text = str(info.value)
    assert text.startswith(f"EarlyTerminationCriteria.{field} must be ")
    assert value_text in text.rpartition(", not ")[2]


@pytest.mark.parametrize("options", [
    {"max_signals": 1}, {"min_rating": 0.0}, {"min_rating": 100.0}, {"max_fraction": 1.0},
    {"max_fraction": 1e-9}, {"timeout": 1e-3}, {"quality_signals": ["SELL", "STRONG_SELL"]},
])
def test_boundary_values_are_accepted(options):
    criteria = EarlyTerminationCriteria(**options)
    for name, value in options.items():
        expected = frozenset(value) if name == "quality_signals" else value
        assert getattr(criteria, name) == expected


@pytest.mark.parametrize("options", [
    pytest.param({"max_signals": 2.5}, id="max_signals=2.5"),
    pytest.param({"min_rating": None}, id="min_rating=None"),
    pytest.param({"max_signals": True}, id="max_signals=True"),
])
def test_values_outside_the_rules_are_refused_with_value_error(options):
    with pytest.raises(ValueError, match=rf"EarlyTerminationCriteria\.{next(iter(options))}"):
        EarlyTerminationCriteria(**options)


def test_from_config_copies_every_criterion():
    config = ScanConfig(max_signals=3, quality_signals=["BUY", "STRONG_BUY"], min_rating=60.0,
                        max_fraction=0.5, timeout=2.0)
    criteria = EarlyTerminationCriteria.from_config(config)
    assert criteria.max_signals == 3
    assert criteria.quality_signals == frozenset({"BUY", "STRONG_BUY"})
    assert criteria.min_rating == 60.0
    assert criteria.max_fraction == 0.5
    assert criteria.timeout == 2.0
    assert criteria.reason is None


def test_from_default_config_has_no_criterion():
    criteria = EarlyTerminationCriteria.from_config(ScanConfig())
    assert (criteria.max_signals, criteria.max_fraction, criteria.timeout) == (None, None, None)
    assert criteria.quality_signals == frozenset({"STRONG_BUY"})


def test_repr_shows_the_state():
    criteria = EarlyTerminationCriteria(max_signals=2, max_fraction=0.5, timeout=3.0)
    criteria.observe_result(result(), 1, 10)
    criteria.fire("manual")
    assert repr(criteria) == ("EarlyTerminationCriteria(max_signals=2, max_fraction=0.5, "
                              "timeout=3.0, quality_count=1, reason='manual')")
