"""ScanTally: messages in, rows by symbol, counts, progress, rate and ETA out."""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_panel.streaming.jsonsafe import make_message
from technic_panel.streaming.tally import Pace, RowChange, ScanTally, measure_pace
from technic_panel.vocabulary import SIGNALS


class Messages:
    """Build one scan's messages with rising seqs."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, type_: str, **data) -> dict:
        self.seq += 1
        return make_message(type_, data, scan_id="scan_t", seq=self.seq)

    def result(self, symbol: str, signal: str = "BUY", rating: float = 50.0, *,
               type_: str = "result", processed: int = 0, remaining: int = 0) -> dict:
        return self(type_, symbol=symbol, signal=signal, tech_rating=rating, alpha_score=0.5,
                    total_processed=processed, total_remaining=remaining)


@pytest.fixture
def msg() -> Messages:
    return Messages()


def test_rows_are_one_per_symbol_in_arrival_order_with_updates_applied(msg):
    tally = ScanTally()
    changes = tally.add_all([msg.result("AAA", "BUY", 70.0), msg.result("BBB", "HOLD", 50.0),
                             msg("progress", processed=2, total=4),
                             msg.result("AAA", "STRONG_BUY", 90.0, type_="update")])
    assert list(tally.rows) == ["AAA", "BBB"]
    assert tally.rows["AAA"]["signal"] == "STRONG_BUY"
    assert [(change.symbol, change.previous is None) for change in changes] == [
        ("AAA", True), ("BBB", True), ("AAA", False)]
    assert changes[2].previous["signal"] == "BUY" and changes[2].became("STRONG_BUY")
    assert (tally.scan_id, tally.last_seq) == ("scan_t", 4)


def test_signal_counts_mean_and_best_follow_updates(msg):
    tally = ScanTally()
    assert tally.signal_counts == dict.fromkeys(SIGNALS, 0)
    assert (tally.mean_rating, tally.best_symbol) == (None, None)
    tally.add_all([msg.result("AAA", "BUY", 90.0), msg.result("BBB", "SELL", 80.0)])
    assert tally.best_symbol == "AAA" and tally.mean_rating == 85.0
    tally.add(msg.result("AAA", "HOLD", 60.0, type_="update"))
    assert tally.best_symbol == "BBB" and tally.mean_rating == 70.0
    assert tally.signal_counts == {**dict.fromkeys(SIGNALS, 0), "HOLD": 1, "SELL": 1}
    tally.add(msg.result("CCC", "BUY", 95.0))
    assert tally.best_symbol == "CCC"


def test_became_is_true_only_on_entering_the_signal():
    row = {"symbol": "AAA", "signal": "STRONG_BUY"}
    assert RowChange("AAA", row, None).became("STRONG_BUY")
    assert not RowChange("AAA", row, dict(row)).became("STRONG_BUY")
    assert not RowChange("AAA", row, None).became("BUY")


def test_errors_count_except_local_notices(msg):
    tally = ScanTally()
    local = msg("error", code="behind_window", message="gap", resume_from=5)
    local["metadata"]["local"] = True
    changes = tally.add_all([msg("error", symbol="AAA", message="no data",
                                 total_processed=1, total_remaining=9), local])
    assert changes == [] and tally.errors == 1
    assert (tally.processed, tally.total) == (1, 10)


def test_processed_never_goes_back_and_the_final_is_kept(msg):
    tally = ScanTally()
    tally.add_all([msg("progress", processed=6, total=10),
                   msg.result("AAA", processed=4, remaining=6)])
    assert (tally.processed, tally.total, tally.final) == (6, 10, None)
    final = msg("final", status="completed", reason=None, processed=10, total=10)
    tally.add(final)
    assert (tally.processed, tally.final) == (10, final["data"])
    assert repr(tally) == "ScanTally(rows=1, processed=10, total=10, errors=0, last_seq=3)"


def test_rate_and_eta_from_the_clock_and_what_has_run_before():
    clock = FakeClock(100.0)
    tally = ScanTally(elapsed=2.0, clock=clock)
    assert tally.elapsed() == 2.0 and tally.pace() == Pace(0.0, None)
    clock.advance(2.0)
    tally.processed, tally.total = 20, 50
    assert tally.elapsed() == 4.0 and tally.pace() == Pace(5.0, 6.0)


@pytest.mark.parametrize(("processed", "total", "elapsed", "pace"), [
    (0, 10, 0.0, Pace(0.0, None)),
    (0, 10, 3.0, Pace(0.0, None)),
    (5, 10, 0.0, Pace(0.0, None)),
    (5, 10, 2.0, Pace(2.5, 2.0)),
    (10, 10, 2.0, Pace(5.0, 0.0)),
])
def test_measure_pace(processed, total, elapsed, pace):
    assert measure_pace(processed, total, elapsed) == pace


_result = st.tuples(st.sampled_from(["AAA", "BBB", "CCC", "DDD"]), st.sampled_from(SIGNALS),
                    st.floats(0, 100, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(st.lists(_result, max_size=30))
def test_property_the_tally_equals_the_latest_row_of_every_symbol(results):
    msg, tally, latest = Messages(), ScanTally(), {}
    for symbol, signal, rating in results:
        tally.add(msg.result(symbol, signal, rating, type_="update" if symbol in latest
                             else "result"))
        latest[symbol] = (signal, rating)
    assert list(tally.rows) == list(latest)
    assert {symbol: (row["signal"], row["tech_rating"]) for symbol, row in tally.rows.items()} \
        == latest
    counts = Counter(signal for signal, _ in latest.values())
    assert tally.signal_counts == {signal: counts[signal] for signal in SIGNALS}
    if latest:
        ratings = [rating for _, rating in latest.values()]
        assert tally.mean_rating == pytest.approx(sum(ratings) / len(ratings))
        assert latest[tally.best_symbol][1] == max(ratings)
    else:
        assert tally.mean_rating is None and tally.best_symbol is None
