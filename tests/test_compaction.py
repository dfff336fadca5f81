"""Compaction by symbol: an endless stream's late or lagging readers get the rows, then the tail.

A compacting :class:`ResultStreamer` (a live scan's) keeps a bounded window; a reader behind
it first gets one row per symbol it lacks or holds an older row of, then the window. Each
test compares what readers receive with a twin streamer that keeps everything.
"""

from __future__ import annotations

import tracemalloc

import pytest
from helpers import fold_rows, seqs
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_panel.streaming.streamer import ResultStreamer, StreamEnded

SUMMARY = {"status": "stopped", "reason": "manual"}
SYMBOLS = ("A", "B", "C", "D", "E")


def row(symbol: str, rating: float) -> dict:
    return {"symbol": symbol, "signal": "BUY" if rating >= 60 else "HOLD",
            "tech_rating": rating, "alpha_score": 0.5}


def pair(max_retained: int) -> tuple[ResultStreamer, ResultStreamer]:
    """A compacting streamer and its twin that keeps every message."""
    options = {"batch_size": 1, "flush_interval": 0.0}
    return (ResultStreamer("scan_c", max_retained=max_retained, compact=True, **options),
            ResultStreamer("scan_c", max_retained=1_000_000, **options))


class Both:
    """Apply every add to the compacting streamer and its twin alike."""

    def __init__(self, max_retained: int) -> None:
        self.compact, self.full = pair(max_retained)

    def result(self, symbol: str, rating: float) -> None:
        assert self.compact.add_result(row(symbol, rating)) == self.full.add_result(
            row(symbol, rating))

    def event(self, kind: str) -> None:
        if kind == "progress":
            data = {"processed": 1, "total": 2}
            assert self.compact.add_progress(data) == self.full.add_progress(data)
        else:
            data = {"symbol": "A", "rule": "signal_changed", "signal": "BUY",
                    "previous_signal": "HOLD", "tech_rating": 61.0,
                    "bar_time": "2026-11-02T00:00:00.000Z"}
            assert self.compact.add_alert(data) == self.full.add_alert(data)

    def finish(self) -> None:
        self.compact.finish(SUMMARY)
        self.full.finish(SUMMARY)




def untimed(messages: list[dict]) -> list[dict]:
    """Return ``messages`` without their timestamps: twin streamers stamp them apart."""
    return [{**msg, "metadata": {key: value for key, value in msg["metadata"].items()
                                 if key != "timestamp"}} for msg in messages]




def drain(streamer: ResultStreamer, since: int = 0, limit: int | None = None) -> list[dict]:
    got, cursor = [], since
    while cursor < streamer.last_seq:
        batch = streamer.messages_since(cursor, limit)
        got.extend(batch)
        cursor = batch[-1]["metadata"]["seq"]
    return got


def test_a_late_reader_gets_one_result_per_symbol_at_its_latest_value_then_the_window():
    both = Both(max_retained=6)
    for rating in range(40, 80, 2):
        for symbol in SYMBOLS:
            both.result(symbol, float(rating))
    both.result("F", 50.0)
    both.event("progress")
    got = drain(both.compact)
    first = both.compact.first_retained_seq
    head = [msg for msg in got if msg["metadata"]["seq"] < first]
    assert [msg["type"] for msg in head] == ["result"] * 5
    assert sorted(msg["data"]["symbol"] for msg in head) == list(SYMBOLS)
    assert all(msg["metadata"]["compacted"] for msg in head)
    assert untimed([msg for msg in got if msg["metadata"]["seq"] >= first]) == \
        untimed(both.full.messages_since(first - 1))
    assert fold_rows(got) == fold_rows(drain(both.full))
    assert seqs(got) == sorted(set(seqs(got)))


def test_a_compacted_result_holds_the_latest_row_at_its_first_seq():
    both = Both(max_retained=2)
    both.result("A", 40.0)
    both.result("A", 70.0)
    both.result("B", 41.0)
    both.result("B", 42.0)
    both.result("B", 43.0)
    got = drain(both.compact)
    assert [(msg["type"], msg["metadata"]["seq"], msg["data"]["tech_rating"]) for msg in got] \
        == [("result", 1, 70.0), ("result", 3, 41.0), ("update", 4, 42.0), ("update", 5, 43.0)]
    assert got[0]["data"]["signal"] == "BUY" and "changed" not in got[0]["data"]
    assert [msg["metadata"].get("compacted", False) for msg in got] == [True, True, False, False]


def test_a_reader_that_fell_behind_gets_only_newer_rows_of_the_symbols_it_has():
    both = Both(max_retained=3)
    for symbol in SYMBOLS:
        both.result(symbol, 40.0)
    reader = both.compact.subscribe()
    assert seqs(reader.get_batch(timeout=0)) == [1, 2, 3, 4, 5]  # A, B compacted; C, D, E
    for rating in (50.0, 51.0, 52.0, 53.0):
        both.result("C", rating)
    both.result("D", 61.0)
    got = reader.get_batch(timeout=0)
    kinds = [(msg["type"], msg["data"]["symbol"], msg["metadata"]["seq"],
              msg["metadata"].get("compacted", False)) for msg in got]
    assert kinds == [("update", "C", 7, True), ("update", "C", 8, False),
                     ("update", "C", 9, False), ("update", "D", 10, False)]
    assert got[0]["data"]["tech_rating"] == 51.0  # 6 and 7 folded: the newer of the two


def test_events_before_the_window_are_not_replayed_and_a_reader_inside_it_misses_nothing():
    both = Both(max_retained=4)
    both.result("A", 40.0)
    for kind in ("progress", "alert", "progress", "alert", "progress"):
        both.event(kind)
    assert [msg["type"] for msg in drain(both.compact)] == ["result", "alert", "progress",
                                                            "alert", "progress"]
    inside = both.compact.first_retained_seq - 1
    assert untimed(drain(both.compact, inside)) == untimed(drain(both.full, inside))


def test_a_window_sized_page_of_a_late_read_still_starts_with_the_rows():
    both = Both(max_retained=3)
    for rating in (40.0, 41.0, 42.0):
        for symbol in SYMBOLS:
            both.result(symbol, rating)
    pages = [both.compact.messages_since(0, limit=2)]
    assert [msg["type"] for msg in pages[0]] == ["result", "result"]
    got = drain(both.compact, limit=2)
    assert fold_rows(got) == fold_rows(drain(both.full))


@pytest.mark.parametrize("limit", [1, 3, None])
def test_the_final_ends_a_compacted_read(limit):
    both = Both(max_retained=2)
    for symbol in SYMBOLS:
        both.result(symbol, 45.0)
    both.finish()
    got = drain(both.compact, limit=limit)
    assert got[-1]["type"] == "final" and fold_rows(got) == fold_rows(drain(both.full))
    subscription = both.compact.subscribe()
    while True:
        try:
            subscription.get_batch(timeout=0)
        except StreamEnded:
            break
    assert subscription.ended


def test_memory_stays_flat_however_long_the_stream_runs():
    streamer = ResultStreamer("scan_m", max_retained=2000, compact=True, batch_size=100,
                              flush_interval=0.0)
    symbols = [f"S{i}" for i in range(200)]

    def run(rounds: int, start: int) -> None:
        for n in range(start, start + rounds):
            with streamer.holding():
                for i, symbol in enumerate(symbols):
                    streamer.add_result(row(symbol, 30.0 + (n * 7 + i) % 50 + n / 1e6))

    run(50, 0)
    tracemalloc.start()
    run(50, 50)
    after_first, _ = tracemalloc.get_traced_memory()
    run(200, 100)
    after_more, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    held = streamer.last_seq - streamer.first_retained_seq + 1
    assert held == 2000 and streamer.last_seq == 300 * 200
    assert after_more - after_first < 256 * 1024  # 4x the messages, no growth beyond noise
    late = drain(streamer)
    assert sum(msg["type"] == "result" for msg in late) == 200


OPS = st.lists(st.one_of(
    st.tuples(st.just("result"), st.sampled_from(SYMBOLS), st.sampled_from([40.0, 55.0, 70.0])),
    st.tuples(st.just("event"), st.sampled_from(["progress", "alert"])),
    st.tuples(st.just("read"), st.integers(0, 2), st.integers(1, 6), st.integers(0, 6)),
), max_size=80)


@settings(deadline=None, max_examples=400)
@given(ops=OPS, max_retained=st.integers(1, 8))
def test_property_reconnects_lose_no_row_and_get_no_message_twice(ops, max_retained):
    """Readers take pages and keep a prefix (the connection was cut), then resume from there."""
    both = Both(max_retained)
    readers: list[list[dict]] = [[], [], []]
    for op in ops:
        if op[0] == "result":
            both.result(op[1], op[2])
        elif op[0] == "event":
            both.event(op[1])
        else:
            _, index, limit, keep = op
            got = readers[index]
            since = got[-1]["metadata"]["seq"] if got else 0
            got.extend(both.compact.messages_since(since, limit)[:keep])
    both.finish()
    expected = fold_rows(drain(both.full))
    for got in readers:
        got += drain(both.compact, got[-1]["metadata"]["seq"] if got else 0)
        assert seqs(got) == sorted(set(seqs(got)))
        assert fold_rows(got) == expected
        assert got[-1]["type"] == "final"
