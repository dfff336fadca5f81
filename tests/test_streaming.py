"""Tests for ResultStreamer and Subscription: numbering, batching, dedup, replay, ending."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import random
import re
import threading
import time

import numpy as np
import pytest
from helpers import FakeClock, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_panel.streaming.contract import MessageError, validate_message
from technic_panel.streaming.streamer import ResultStreamer, StreamClosed, StreamEnded, Subscription
from technic_panel.vocabulary import SafeData

SUMMARY = {"status": "completed", "reason": None, "count": 0, "elapsed": 0.1}


def result(symbol: str = "AAPL", rating: float = 85.0, **extra) -> dict:
    return {"symbol": symbol, "signal": "BUY", "tech_rating": rating, "alpha_score": 0.5, **extra}


def seqs(msgs: list[dict]) -> list[int]:
    return [msg["metadata"]["seq"] for msg in msgs]


def types(msgs: list[dict]) -> list[str]:
    return [msg["type"] for msg in msgs]


def drain(sub: Subscription) -> list[dict]:
    """Everything the subscription has now, until it ends or runs dry."""
    got = []
    while True:
        try:
            batch = sub.get_batch(timeout=0)
        except StreamEnded:
            return got
        if not batch:
            return got
        got.extend(batch)


def make_streamer(**options) -> tuple[ResultStreamer, FakeClock]:
    clock = FakeClock()
    options = {"batch_size": 1000, "flush_interval": 1.0, **options}
    return ResultStreamer("scan_1", clock=clock, **options), clock


def publish_first(streamer: ResultStreamer) -> None:
    """Add a progress message, published at once as the stream's first (seq 1).

    Messages added within ``flush_interval`` after it are held: a streamer in this state
    shows batching.
    """
    assert streamer.add_progress({"processed": 0, "total": 9}) == 1
    assert streamer.last_seq == 1


# --- construction ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("scan_id", "", "ResultStreamer.scan_id must be a non-empty string, not ''"),
        ("scan_id", 12, "ResultStreamer.scan_id must be a non-empty string, not 12"),
        ("batch_size", 0, "ResultStreamer.batch_size must be an integer >= 1, not 0"),
        ("batch_size", 2.0, "ResultStreamer.batch_size must be an integer >= 1, not 2.0"),
        ("batch_size", True, "ResultStreamer.batch_size must be an integer >= 1, not True"),
        ("flush_interval", -0.1, "ResultStreamer.flush_interval must be a finite number >= 0"),
        ("flush_interval", float("nan"), "ResultStreamer.flush_interval must be a finite"),
        ("flush_interval", float("inf"), "ResultStreamer.flush_interval must be a finite"),
        ("flush_interval", "0.1", "ResultStreamer.flush_interval must be a finite number"),
        ("flush_interval", False, "ResultStreamer.flush_interval must be a finite number"),
        ("max_retained", 0, "ResultStreamer.max_retained must be an integer >= 1, not 0"),
        ("clock", 3.0, "ResultStreamer.clock must be callable, not 3.0"),
    ],
)
def test_constructor_rejects_bad_settings(option, value, words):
    options = {"scan_id": "scan_1", option: value}
    with pytest.raises(ValueError, match=f"^{re.escape(words)}"):
        ResultStreamer(**options)


def test_repr_shows_state():
    streamer, _ = make_streamer()
    sub = streamer.subscribe()
    publish_first(streamer)
    streamer.add_result(result())
    assert repr(streamer) == ("<ResultStreamer scan_id='scan_1' last_seq=1 pending=1 "
                              "subscribers=1 finished=False closed=False>")
    streamer.finish(SUMMARY)
    assert repr(streamer).endswith("last_seq=3 pending=0 subscribers=1 finished=True closed=False>")
    assert repr(sub) == "<Subscription scan_id='scan_1' last_seq=0 ended=False>"


# --- numbering ------------------------------------------------------------------------------

def test_every_message_gets_the_next_seq_and_valid_metadata():
    streamer, _ = make_streamer()
    returned = [
        streamer.add_result(result("AAPL")),
        streamer.add_progress({"processed": 1, "total": 3}),
        streamer.add_error({"symbol": "MSFT", "message": "no data"}),
        streamer.add_result(result("AAPL", 90.0)),
        streamer.finish(SUMMARY),
    ]
    msgs = streamer.messages_since(0)
    assert returned == seqs(msgs) == [1, 2, 3, 4, 5]
    assert types(msgs) == ["result", "progress", "error", "update", "final"]
    for msg in msgs:
        assert validate_message(msg) is msg
        assert msg["metadata"]["scan_id"] == "scan_1"
    assert [msg["metadata"]["is_final"] for msg in msgs] == [False] * 4 + [True]
    assert streamer.last_seq == 5 and streamer.first_retained_seq == 1


@pytest.mark.parametrize(
    ("add", "data", "words"),
    [
        ("add_result", result(rating=120.5), r"message\.data\.tech_rating must be a number"),
        ("add_result", result(symbol=""), r"message\.data\.symbol must be a non-empty string"),
        ("add_error", {"symbol": "A"}, r"message\.data\.message is missing"),
        ("add_progress", {"processed": -1, "total": 2}, r"message\.data\.processed must be"),
        ("finish", {"status": "done"}, r"message\.data\.status must be one of completed"),
        ("add_result", "AAPL", r"message\.data must be an object, not 'AAPL'"),
    ],
)
def test_invalid_data_is_rejected_without_taking_a_seq(add, data, words):
    streamer, _ = make_streamer()
    with pytest.raises(MessageError, match=words):
        getattr(streamer, add)(data)
    assert not streamer.finished
    assert streamer.add_result(result()) == 1


def test_nan_and_numpy_values_are_made_json_safe():
    streamer, _ = make_streamer(flush_interval=0)
    streamer.add_result(result(rating=np.float64(70.0), rsi=float("nan")))
    (msg,) = streamer.messages_since(0)
    assert msg["data"]["tech_rating"] == 70.0 and msg["data"]["rsi"] is None


# --- batching -------------------------------------------------------------------------------

def test_the_first_message_and_one_after_a_quiet_interval_go_out_at_once():
    streamer, clock = make_streamer(flush_interval=1.0)
    streamer.add_result(result("A"))
    assert streamer.last_seq == 1
    clock.advance(1.0)
    streamer.add_result(result("B"))
    assert streamer.last_seq == 2
    clock.advance(0.5)
    streamer.add_result(result("C"))
    assert streamer.last_seq == 2


def test_nothing_is_published_before_batch_size():
    streamer, _ = make_streamer(batch_size=3)
    publish_first(streamer)
    streamer.add_result(result("A"))
    streamer.add_result(result("B"))
    assert streamer.messages_since(1) == [] and streamer.last_seq == 1
    streamer.add_result(result("C"))
    assert seqs(streamer.messages_since(1)) == [2, 3, 4]


def test_nothing_is_published_before_flush_interval_since_the_last_publish():
    streamer, clock = make_streamer(flush_interval=1.0)
    publish_first(streamer)
    clock.advance(0.2)
    streamer.add_result(result("A"))
    clock.advance(0.5)
    streamer.add_result(result("B"))
    clock.advance(0.29)
    assert streamer.messages_since(1) == []
    clock.advance(0.01)
    assert seqs(streamer.messages_since(1)) == [2, 3]
    streamer.add_result(result("C"))
    clock.advance(0.99)
    assert streamer.last_seq == 3
    clock.advance(0.01)
    assert streamer.last_seq == 4


def test_producers_publish_overdue_messages_when_they_add():
    streamer, clock = make_streamer(flush_interval=1.0)
    publish_first(streamer)
    streamer.add_result(result("A"))
    clock.advance(1.0)
    assert "pending=1" in repr(streamer)
    streamer.add_result(result("B"))
    assert "last_seq=3 pending=0" in repr(streamer)


def test_zero_flush_interval_publishes_every_message():
    streamer, _ = make_streamer(flush_interval=0)
    streamer.add_result(result("A"))
    assert "last_seq=1 pending=0" in repr(streamer)


def test_high_priority_result_publishes_at_once_keeping_order():
    streamer, _ = make_streamer()
    publish_first(streamer)
    streamer.add_result(result("A", priority_tier="low"))
    streamer.add_error({"message": "boom"})
    streamer.add_result(result("B", priority_tier="medium"))
    assert streamer.last_seq == 1
    streamer.add_result(result("C", priority_tier="high"))
    assert seqs(streamer.messages_since(1)) == [2, 3, 4, 5]
    streamer.add_result(result("A", 60.0, priority_tier="high"))
    assert types(streamer.messages_since(5)) == ["update"]


def test_flush_publishes_everything_pending():
    streamer, _ = make_streamer()
    streamer.flush()
    assert streamer.last_seq == 0
    publish_first(streamer)
    streamer.add_progress({"processed": 1, "total": 9})
    streamer.add_progress({"processed": 2, "total": 9})
    assert streamer.last_seq == 1
    streamer.flush()
    assert seqs(streamer.messages_since(1)) == [2, 3]


def test_final_always_flushes():
    streamer, _ = make_streamer()
    publish_first(streamer)
    streamer.add_result(result("A"))
    assert streamer.last_seq == 1
    assert streamer.finish(SUMMARY) == 3
    assert types(streamer.messages_since(1)) == ["result", "final"]


def test_holding_publishes_what_the_block_adds_together_at_its_end():
    streamer, clock = make_streamer(batch_size=2)
    with streamer.holding():
        streamer.add_result(result("A", priority_tier="high"))
        streamer.add_result(result("B"))
        streamer.add_error({"message": "boom"})
        clock.advance(5.0)
        streamer.add_progress({"processed": 3, "total": 9})
        assert "last_seq=0 pending=4" in repr(streamer)
    assert "last_seq=4 pending=0" in repr(streamer)


def test_nested_holds_publish_at_the_outermost_end():
    streamer, _ = make_streamer()
    with streamer.holding():
        with streamer.holding():
            streamer.add_result(result("A", priority_tier="high"))
        assert "last_seq=0 pending=1" in repr(streamer)
    assert "last_seq=1 pending=0" in repr(streamer)


def test_the_final_does_not_wait_for_a_hold():
    streamer, _ = make_streamer()
    with streamer.holding():
        streamer.add_result(result("A", priority_tier="high"))
        assert streamer.finish(SUMMARY) == 2
        assert "last_seq=2 pending=0" in repr(streamer)


def test_a_waiting_reader_gets_a_held_block_in_one_batch(no_thread_leaks):
    streamer, _ = make_streamer()
    sub = streamer.subscribe()
    got: list[list[dict]] = []
    reader = threading.Thread(target=lambda: got.append(sub.get_batch(timeout=30)))
    reader.start()
    with streamer.holding():
        for symbol in ("A", "B", "C"):
            streamer.add_result(result(symbol, priority_tier="high"))
        time.sleep(0.05)  # a negative check: the reader had time to take a message
        assert got == []
    reader.join(timeout=10)
    assert [seqs(batch) for batch in got] == [[1, 2, 3]]


def test_waiting_consumer_flushes_at_the_deadline_without_a_producer(no_thread_leaks):
    streamer, clock = make_streamer(flush_interval=0.02)
    publish_first(streamer)
    sub = streamer.subscribe(since=1)
    got = []
    consumer = threading.Thread(target=lambda: got.append(sub.get(timeout=30)))
    consumer.start()
    time.sleep(0.02)  # most likely the consumer now waits with nothing pending
    streamer.add_result(result("A"))
    # A negative check cannot be polled for: give the consumer time to re-check the
    # (frozen) deadline a few times, and see that it publishes nothing early.
    time.sleep(0.05)
    assert got == [] and "pending=1" in repr(streamer)
    clock.advance(0.02)
    wait_until(lambda: got)  # within 5 s, far sooner than the consumer's own timeout
    consumer.join(timeout=10)
    assert seqs(got) == [2]


def test_a_reader_leaving_before_the_deadline_hands_it_to_another(no_thread_leaks):
    # A held-back message wakes one waiting reader (the oldest: first) to learn the
    # deadline. When its own timeout ends its wait first, a reader waiting untimed for 30 s
    # must still publish at the deadline, not when its 30 s are up.
    streamer, clock = make_streamer(flush_interval=0.02)
    publish_first(streamer)
    first, second = streamer.subscribe(since=1), streamer.subscribe(since=1)
    early, patient = [], []
    leaver = threading.Thread(target=lambda: early.append(first.get(timeout=0.3)))
    stayer = threading.Thread(target=lambda: patient.append(second.get(timeout=30)))
    leaver.start()
    time.sleep(0.05)  # most likely the first reader waits before the second
    stayer.start()
    time.sleep(0.05)
    streamer.add_result(result("A"))
    leaver.join(timeout=10)
    assert early == [None] and patient == []
    clock.advance(0.02)
    wait_until(lambda: patient)  # within 5 s, far sooner than the second reader's 30 s
    stayer.join(timeout=10)
    assert seqs(patient) == [2]


# --- dedup ----------------------------------------------------------------------------------

def test_result_then_update_then_identical_dropped():
    streamer, _ = make_streamer(flush_interval=0)
    assert streamer.add_result(result("AAPL", 80.0, position=1, total_processed=1)) == 1
    same = result("AAPL", 80.0, position=7, total_processed=9, total_remaining=3)
    assert streamer.add_result(same) is None
    assert streamer.add_result(result("AAPL", 81.0)) == 2
    assert streamer.add_result(result("AAPL", 81.0)) is None
    assert streamer.add_result(result("MSFT", 81.0)) == 3
    assert streamer.add_result(result("AAPL", 81.0, sector="Tech")) == 4
    msgs = streamer.messages_since(0)
    assert [(m["type"], m["data"]["symbol"]) for m in msgs] == [
        ("result", "AAPL"), ("update", "AAPL"), ("result", "MSFT"), ("update", "AAPL")]
    assert msgs[1]["data"]["tech_rating"] == 81.0
    assert streamer.result_count == 2


def test_an_update_names_what_changed_and_the_signal_before():
    streamer, _ = make_streamer(flush_interval=0)
    streamer.add_result(result("AAPL", 80.0, rsi_14=55.0, sector="Tech", position=1))
    streamer.add_result({**result("AAPL", 61.0, rsi_14=55.0, position=2), "signal": "HOLD"})
    update = streamer.messages_since(1)[0]["data"]
    assert update["changed"] == ("signal", "tech_rating", "sector")
    assert update["previous_signal"] == "BUY" and update["signal"] == "HOLD"
    streamer.add_result(result("AAPL", 62.0, rsi_14=55.0))
    again = streamer.messages_since(2)[0]["data"]
    assert again["changed"] == ("signal", "tech_rating") and again["previous_signal"] == "HOLD"


def test_an_update_leaves_the_producers_data_and_the_rows_before_as_they_were():
    streamer, _ = make_streamer(flush_interval=0)
    first, second, third = (result("AAPL", rating) for rating in (80.0, 81.0, 82.0))
    kept = [dict(first), dict(second), dict(third)]
    for data in (first, second, third):
        streamer.add_result(data)
    assert [first, second, third] == kept  # the streamer wrote into copies of its own
    messages = streamer.messages_since(0)
    assert "changed" not in messages[0]["data"]
    assert [m["data"]["changed"] for m in messages[1:]] == [("tech_rating",)] * 2
    assert messages[2]["data"]["tech_rating"] == 82.0
    assert streamer.add_result(result("AAPL", 82.0)) is None  # still the same row as the last


def test_a_handed_over_result_is_kept_as_it_is_and_still_checked():
    streamer, _ = make_streamer(flush_interval=0)
    first, second = result("AAPL", 80.0), result("AAPL", 81.0)
    streamer.add_result(first, handed_over=True)
    streamer.add_result(second, handed_over=True)
    messages = streamer.messages_since(0)
    assert messages[0]["data"] is first and messages[1]["data"] is second
    assert second["changed"] == ("tech_rating",) and second["previous_signal"] == "BUY"
    gc.collect()
    assert not gc.is_tracked(first) and not gc.is_tracked(second)  # as a copy would be
    with pytest.raises(MessageError, match=r"tech_rating must be a number in \[0, 100\]"):
        streamer.add_result(result("MSFT", 120.0), handed_over=True)
    safe = SafeData(result("MSFT", 70.0))  # not an exact dict: copied, so it can be untracked
    streamer.add_result(safe, handed_over=True)
    kept = streamer.messages_since(2)[0]["data"]
    assert kept == safe and type(kept) is dict and streamer.last_seq == 3


def test_retained_updates_are_objects_the_garbage_collector_untracks():
    # A live scan retains some 100,000 messages: were they tracked, every full collection
    # would walk them all while the bars wait (~200 ms at 5,000 symbols).
    streamer, _ = make_streamer(flush_interval=0)
    streamer.add_result(result("AAPL", 80.0))
    streamer.add_result(result("AAPL", 81.0))
    gc.collect()
    update = streamer.messages_since(1)[0]
    assert update["type"] == "update"
    assert not gc.is_tracked(update["data"]) and not gc.is_tracked(update["data"]["changed"])


def test_an_update_that_changes_fields_seen_before_is_never_tracked():
    # Tracked, each of a live scan's 5,000 updates a second had its floats walked by the
    # young collections until it aged (6.8% of the time): only a full pass untracks a dict.
    streamer, _ = make_streamer(flush_interval=0)
    for rating in (80.0, 81.0):
        streamer.add_result(result("AAPL", rating))
    gc.collect()  # the collector has now seen the tuple ("tech_rating",) and untracked it
    streamer.add_result(result("AAPL", 82.0))
    streamer.add_result(result("MSFT", 70.0))
    streamer.add_result(result("MSFT", 71.0))
    updates = [message["data"] for message in streamer.messages_since(2)
               if message["type"] == "update"]
    assert [update["changed"] for update in updates] == [("tech_rating",)] * 2
    assert not any(gc.is_tracked(update) for update in updates)


def test_where_the_feed_stood_is_no_change_of_a_row():
    streamer, _ = make_streamer(flush_interval=0)
    live = {"bar_time": "2026-11-02T00:00:00.000Z", "feed_time": 1, "in_filter": True}
    assert streamer.add_result(result("A", **live)) == 1
    later = {**live, "bar_time": "2026-11-03T00:00:00.000Z", "feed_time": 2}
    assert streamer.add_result(result("A", **later)) is None
    assert streamer.add_result(result("A", **{**later, "in_filter": False})) == 2
    assert streamer.messages_since(1)[0]["data"]["changed"] == ("in_filter",)


def test_alerts_are_numbered_like_every_message():
    streamer, _ = make_streamer(flush_interval=0)
    alert = {"symbol": "A", "rule": "entered_filter", "signal": "BUY", "previous_signal": "HOLD",
             "tech_rating": 64.0, "bar_time": "2026-11-02T00:00:00.000Z"}
    assert streamer.add_alert(alert) == 1
    assert validate_message(streamer.messages_since(0)[0])["data"] == alert
    with pytest.raises(MessageError, match=r"message\.data\.rule must be one of entered_filter"):
        streamer.add_alert({**alert, "rule": "crossed"})


def test_repeated_nan_values_count_as_identical():
    streamer, _ = make_streamer()
    assert streamer.add_result(result("A", rsi=float("nan"))) == 1
    assert streamer.add_result(result("A", rsi=float("nan"))) is None


# --- replay and retention -------------------------------------------------------------------

def publish(streamer: ResultStreamer, count: int, start: int = 0) -> None:
    for index in range(start, start + count):
        streamer.add_result(result(f"S{index}", priority_tier="high"))


def test_late_subscriber_and_since_replay_exactly_once():
    streamer, _ = make_streamer()
    publish(streamer, 5)
    late = streamer.subscribe(since=2)
    everything = streamer.subscribe()
    assert seqs(drain(late)) == [3, 4, 5] and late.last_seq == 5
    publish(streamer, 2, start=5)
    streamer.finish(SUMMARY)
    assert seqs(drain(late)) == [6, 7, 8]
    assert seqs(drain(everything)) == list(range(1, 9))
    resumed = drain(streamer.subscribe(since=6))
    assert seqs(resumed) == [7, 8] and types(resumed) == ["result", "final"]


def test_reconnect_with_last_seen_seq_resumes_exactly():
    streamer, _ = make_streamer()
    publish(streamer, 6)
    first = streamer.subscribe()
    seen = [first.get(timeout=0), first.get(timeout=0)]
    first.close()
    again = streamer.subscribe(since=seen[-1]["metadata"]["seq"])
    streamer.finish(SUMMARY)
    assert seqs(seen + drain(again)) == list(range(1, 8))


def test_messages_since_with_limit():
    streamer, _ = make_streamer()
    publish(streamer, 5)
    assert seqs(streamer.messages_since(1, limit=2)) == [2, 3]
    assert seqs(streamer.messages_since(4, limit=3)) == [5]
    assert streamer.messages_since(5) == []


@pytest.mark.parametrize("bad", [-1, 6, 1.0, True, None])
def test_cursor_must_be_an_integer_up_to_last_seq(bad):
    streamer, _ = make_streamer()
    publish(streamer, 5)
    words = rf"ResultStreamer\.since must be an integer in \[0, last_seq=5\], not {bad!r}"
    with pytest.raises(ValueError, match=f"^{words}$"):
        streamer.subscribe(since=bad)
    with pytest.raises(ValueError, match=r"^ResultStreamer\.seq must be an integer in"):
        streamer.messages_since(bad)


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_limits_must_be_positive(bad):
    streamer, _ = make_streamer()
    with pytest.raises(ValueError, match=r"^ResultStreamer\.messages_since\.limit must be None"):
        streamer.messages_since(0, limit=bad)
    with pytest.raises(ValueError, match=r"^Subscription\.get_batch\.max_items must be None"):
        streamer.subscribe().get_batch(timeout=0, max_items=bad)


def test_retention_evicts_oldest_and_reports_behind_window():
    streamer, _ = make_streamer(max_retained=3)
    sub = streamer.subscribe()
    publish(streamer, 10)
    assert streamer.first_retained_seq == 8 and streamer.last_seq == 10
    behind = sub.get(timeout=0)
    assert behind["type"] == "error"
    assert behind["data"]["code"] == "behind_window"
    assert behind["data"]["resume_from"] == 8
    assert "messages 1 to 7" in behind["data"]["message"]
    assert behind["metadata"]["local"] is True and behind["metadata"]["seq"] == 7
    assert validate_message(behind) is behind
    assert seqs(drain(sub)) == [8, 9, 10]
    assert types(streamer.messages_since(2)) == ["error"]
    assert seqs(streamer.messages_since(7)) == [8, 9, 10]
    assert "local" not in streamer.messages_since(7)[0]["metadata"]


def test_subscriber_falling_behind_mid_stream_gets_one_error_then_continues():
    streamer, _ = make_streamer(max_retained=4)
    publish(streamer, 2)
    sub = streamer.subscribe()
    assert seqs([sub.get(timeout=0)]) == [1]
    publish(streamer, 10, start=2)
    got = drain(sub)
    assert [(m["type"], m["metadata"]["seq"]) for m in got] == [
        ("error", 8), ("result", 9), ("result", 10), ("result", 11), ("result", 12)]


def test_final_is_always_retained():
    streamer, _ = make_streamer(max_retained=1)
    publish(streamer, 4)
    streamer.finish(SUMMARY)
    assert streamer.first_retained_seq == 5
    got = drain(streamer.subscribe())
    assert [(m["type"], m["metadata"]["seq"]) for m in got] == [("error", 4), ("final", 5)]


def test_vanished_subscriber_is_forgotten_and_blocks_nothing():
    streamer, _ = make_streamer(max_retained=10)
    streamer.subscribe()
    gc.collect()
    publish(streamer, 100)
    assert "subscribers=0" in repr(streamer)
    assert len(streamer.messages_since(90)) == 10


def test_a_follower_starts_at_its_subscriptions_cursor_moves_alone_and_is_not_counted():
    streamer, _ = make_streamer()
    publish(streamer, 3)
    sub = streamer.subscribe()
    assert len(sub.get_batch(timeout=0, max_items=2)) == 2
    follower = sub.follower()
    assert streamer.subscriber_count == 1
    publish(streamer, 1, start=3)
    assert [m["metadata"]["seq"] for m in follower.get_batch(timeout=0)] == [3, 4]
    assert [m["metadata"]["seq"] for m in sub.get_batch(timeout=0)] == [3, 4]
    follower.close()
    assert streamer.subscriber_count == 1 and not sub.ended


# --- finishing and closing ------------------------------------------------------------------

def test_finish_is_idempotent_and_ends_the_stream():
    streamer, _ = make_streamer()
    sub = streamer.subscribe()
    streamer.add_result(result("A"))
    assert streamer.finish(SUMMARY) == 2
    assert streamer.finish({"status": "failed"}) == 2
    assert streamer.finish("not even a mapping") == 2
    assert streamer.finished
    with pytest.raises(StreamClosed, match=r"scan 'scan_1' is finished \(final seq 2\)"):
        streamer.add_result(result("B"))
    with pytest.raises(StreamClosed):
        streamer.add_progress({"processed": 1, "total": 1})
    got = drain(sub)
    assert types(got) == ["result", "final"]
    assert got[-1]["data"] == SUMMARY
    with pytest.raises(StreamEnded, match="subscription to scan 'scan_1' has ended at seq 2"):
        sub.get(timeout=0)


def test_close_publishes_pending_refuses_adds_and_ends_subscriptions(no_thread_leaks):
    streamer, _ = make_streamer()
    sub = streamer.subscribe()
    outcome = []

    def consume():
        try:
            while True:
                outcome.append(sub.get())
        except StreamEnded:
            outcome.append("ended")

    consumer = threading.Thread(target=consume)
    consumer.start()
    streamer.add_result(result("A"))
    streamer.close()
    streamer.close()
    consumer.join(timeout=10)
    assert seqs(outcome[:-1]) == [1] and outcome[-1] == "ended"
    with pytest.raises(StreamClosed, match="the stream is closed"):
        streamer.add_error({"message": "late"})
    with pytest.raises(StreamClosed, match="the stream is closed"):
        streamer.finish(SUMMARY)
    assert not streamer.finished
    assert seqs(list(streamer.subscribe())) == [1]


def test_subscription_starting_at_the_final_ends_at_once():
    streamer, _ = make_streamer()
    final_seq = streamer.finish(SUMMARY)
    sub = streamer.subscribe(since=final_seq)
    with pytest.raises(StreamEnded):
        sub.get(timeout=0)


def test_close_after_finish_keeps_the_final():
    streamer, _ = make_streamer()
    streamer.finish(SUMMARY)
    streamer.close()
    assert streamer.finish(SUMMARY) == 1
    assert types(list(streamer.subscribe())) == ["final"]


# --- subscriptions --------------------------------------------------------------------------

def test_get_returns_none_on_timeout_and_get_batch_empty():
    streamer, _ = make_streamer()
    sub = streamer.subscribe()
    assert sub.get(timeout=0.01) is None
    assert sub.get(timeout=0) is None
    assert sub.get_batch(timeout=0.01) == []


def test_get_batch_returns_what_is_available_up_to_max_items():
    streamer, _ = make_streamer()
    sub = streamer.subscribe()
    publish(streamer, 5)
    assert seqs(sub.get_batch(timeout=0, max_items=2)) == [1, 2]
    assert seqs(sub.get_batch(timeout=0)) == [3, 4, 5]
    streamer.finish(SUMMARY)
    assert types(sub.get_batch()) == ["final"]
    with pytest.raises(StreamEnded):
        sub.get_batch(timeout=0)


def test_blocking_get_wakes_on_publish(no_thread_leaks):
    streamer, _ = make_streamer()
    sub = streamer.subscribe()
    got = []
    consumer = threading.Thread(target=lambda: got.append(sub.get(timeout=10)))
    consumer.start()
    streamer.add_result(result("A", priority_tier="high"))
    wait_until(lambda: got)
    consumer.join(timeout=10)
    assert seqs(got) == [1]


READ_STYLES = {
    "get": lambda sub: [sub.get()],
    "batch": lambda sub: sub.get_batch(),
    "two at a time": lambda sub: sub.get_batch(max_items=2),
    "leaves often": lambda sub: sub.get_batch(timeout=0.0005),
    "shared by two threads": lambda sub: [sub.get()],
}


def _all_reached(got: list[list[dict]], seq: int) -> bool:
    return all(max(seqs(messages), default=0) >= seq for messages in got)


@settings(max_examples=30, deadline=None)
@given(styles=st.lists(st.sampled_from(sorted(READ_STYLES)), min_size=2, max_size=8),
       bursts=st.lists(st.tuples(st.integers(1, 20), st.booleans()), min_size=1, max_size=6),
       flush_interval=st.sampled_from([0.0, 0.002]))
def test_blocked_readers_wake_one_another_on_every_publish(styles, bursts, flush_interval):
    # A publish wakes one blocked thread and the wake-up is handed on (see Waking). Every
    # burst must reach every reader before the next, however they read: untimed, part of a
    # batch, leaving their wait on a timeout, two threads on one cursor, and with messages
    # held back for the flush deadline; a lost wake-up leaves an untimed reader behind.
    streamer = ResultStreamer("chain", flush_interval=flush_interval)
    subs = [streamer.subscribe() for _ in styles]
    got: list[list[dict]] = [[] for _ in styles]

    def consume(index: int, style: str) -> None:
        with contextlib.suppress(StreamEnded):
            while True:
                got[index].extend(READ_STYLES[style](subs[index]))

    readers = [(index, style) for index, style in enumerate(styles)]
    readers += [item for item in readers if item[1] == "shared by two threads"]
    threads = [threading.Thread(target=consume, args=item) for item in readers]
    for thread in threads:
        thread.start()
    added = 0
    try:
        for size, held in bursts:
            time.sleep(0.002)  # most readers are blocked again
            with streamer.holding() if held else contextlib.nullcontext():
                last = [streamer.add_result(result(f"S{added + k}", priority_tier="low"))
                        for k in range(size)][-1]
            added += size
            wait_until(functools.partial(_all_reached, got, last))
        final_seq = streamer.finish(SUMMARY)
        deadline = time.monotonic() + 10
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads)
    finally:
        streamer.close()  # frees a stuck reader when the test fails
    for messages in got:  # two threads on one cursor append in either order
        assert sorted(seqs(messages)) == list(range(1, final_seq + 1))


def test_a_thread_sharing_a_cursor_hands_a_publish_on(no_thread_leaks):
    # Two threads block on one subscription, then a third on another. The first takes the
    # message and the second finds nothing; the second must still wake the third.
    streamer = ResultStreamer("shared", flush_interval=0)
    shared, other = streamer.subscribe(), streamer.subscribe()
    got: dict[Subscription, list[dict]] = {shared: [], other: []}

    def consume(sub: Subscription) -> None:
        with contextlib.suppress(StreamEnded):
            while True:
                got[sub].append(sub.get())

    threads = [threading.Thread(target=consume, args=(sub,)) for sub in (shared, shared, other)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # most likely it waits before the next one starts
    streamer.add_result(result("A"))
    wait_until(lambda: got[other])  # within 5 s, with nothing published after it
    streamer.finish(SUMMARY)
    for thread in threads:
        thread.join(timeout=10)
    assert seqs(got[other]) == [1, 2] and sorted(seqs(got[shared])) == [1, 2]


def test_iteration_ends_after_final(no_thread_leaks):
    streamer, _ = make_streamer()
    sub = streamer.subscribe()
    got = []
    consumer = threading.Thread(target=lambda: got.extend(sub))
    consumer.start()
    publish(streamer, 3)
    streamer.finish(SUMMARY)
    consumer.join(timeout=10)
    assert seqs(got) == [1, 2, 3, 4] and got[-1]["type"] == "final"
    assert list(sub) == []


def test_subscription_close_unhooks_and_wakes_a_blocked_reader(no_thread_leaks):
    streamer, _ = make_streamer()
    sub = streamer.subscribe()
    outcome = []

    def consume():
        try:
            sub.get()
        except StreamEnded as exc:
            outcome.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    sub.close()
    sub.close()
    consumer.join(timeout=10)
    assert len(outcome) == 1
    assert "subscribers=0" in repr(streamer)
    assert repr(sub).endswith("ended=True>")
    with pytest.raises(StreamEnded):
        sub.get(timeout=0)


# --- asyncio --------------------------------------------------------------------------------

def test_async_iteration_receives_everything_from_producer_threads(no_thread_leaks):
    streamer = ResultStreamer("scan_async", batch_size=4, flush_interval=0.01)

    def produce():
        for index in range(30):
            streamer.add_result(result(f"S{index}", priority_tier="high" if index % 7 else "low"))
            time.sleep(0.001)
        streamer.finish(SUMMARY)

    async def consume():
        sub = streamer.subscribe()
        producer = threading.Thread(target=produce)
        producer.start()
        got = [msg async for msg in sub]
        producer.join(timeout=10)
        return got, [msg async for msg in sub]

    got, after = asyncio.run(consume())
    assert seqs(got) == list(range(1, 32)) and got[-1]["type"] == "final"
    assert after == []


def test_async_waiter_flushes_at_the_deadline():
    streamer = ResultStreamer("scan_async", batch_size=100, flush_interval=0.05)
    publish_first(streamer)

    async def consume():
        sub = streamer.subscribe(since=1)
        task = asyncio.ensure_future(sub.__anext__())
        await asyncio.sleep(0)  # the task now waits, with nothing pending
        assert not task.done()
        streamer.add_result(result("A"))
        assert "pending=1" in repr(streamer)  # held: the last publish was just now
        return await asyncio.wait_for(task, timeout=5)

    assert asyncio.run(consume())["metadata"]["seq"] == 2


def test_many_async_readers_on_one_loop_all_wake():
    streamer = ResultStreamer("scan_async", batch_size=100, flush_interval=0.05)
    publish_first(streamer)

    async def consume():
        tasks = [asyncio.ensure_future(streamer.subscribe(since=1).__anext__())
                 for _ in range(5)]
        await asyncio.sleep(0)  # every task now waits on the loop's one future
        streamer.add_result(result("A"))
        streamer.add_result(result("B", priority_tier="high"))
        return await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)

    assert [msg["data"]["symbol"] for msg in asyncio.run(consume())] == ["A"] * 5


def test_async_iteration_ends_when_streamer_closes(no_thread_leaks):
    streamer = ResultStreamer("scan_async")

    async def consume():
        sub = streamer.subscribe()
        asyncio.get_running_loop().call_later(0.01, streamer.close)
        return [msg async for msg in sub]

    assert asyncio.run(consume()) == []


def test_cancelled_async_waiter_leaves_producers_unaffected():
    streamer = ResultStreamer("scan_async")

    async def consume():
        sub = streamer.subscribe()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sub.__anext__(), timeout=0.01)
        streamer.add_result(result("A", priority_tier="high"))
        return await sub.__anext__()

    assert asyncio.run(consume())["metadata"]["seq"] == 1


def test_closed_event_loop_of_a_vanished_async_subscriber_does_not_break_producers():
    streamer = ResultStreamer("scan_async")
    loop = asyncio.new_event_loop()
    task = loop.create_task(streamer.subscribe().__anext__())
    loop.run_until_complete(asyncio.sleep(0.01))
    assert not task.done()
    loop.close()
    assert streamer.add_result(result("A", priority_tier="high")) == 1
    assert streamer.last_seq == 1


# --- concurrency ----------------------------------------------------------------------------

def check_stream(msgs: list[dict], since: int, final_seq: int) -> None:
    """Each seq after ``since`` exactly once, in order, ending with the one final."""
    if since == final_seq:  # joined after the final, with its seq: nothing more to see
        assert msgs == []
        return
    assert seqs(msgs) == list(range(since + 1, final_seq + 1))
    assert types(msgs).count("final") == 1 and msgs[-1]["type"] == "final"
    symbols = [m["data"]["symbol"] for m in msgs if m["type"] == "result"]
    assert len(symbols) == len(set(symbols))


def test_stress_many_producers_and_subscribers(no_thread_leaks):
    streamer = ResultStreamer("stress", batch_size=16, flush_interval=0.002)
    per_producer, producers, subscribers = 400, 8, 50
    start = threading.Barrier(producers + 1)
    returned: list[int | None] = []
    received: dict[int, tuple[int, list[dict]]] = {}

    def produce(worker: int) -> None:
        rng = random.Random(worker)
        start.wait()
        for index in range(per_producer):
            symbol = f"P{worker}-{index % 300}"  # a quarter repeat: updates or duplicates
            returned.append(streamer.add_result(result(symbol, float(rng.choice([10, 20])))))
            if index % 25 == 0:
                returned.append(streamer.add_progress({"processed": index, "total": 400}))

    def consume(name: int, since: int) -> None:
        sub = streamer.subscribe(since=since)
        received[name] = (since, list(sub))

    def join_late(name: int) -> None:
        consume(name, random.Random(name).randint(0, streamer.last_seq))

    threads = [threading.Thread(target=consume, args=(n, 0)) for n in range(subscribers // 2)]
    threads += [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for thread in threads:
        thread.start()
    start.wait()
    late = [threading.Thread(target=join_late, args=(n,)) for n in range(25, subscribers)]
    for thread in late:
        time.sleep(0.001)
        thread.start()
    for thread in threads[subscribers // 2:]:  # the producers
        thread.join(timeout=30)
    final_seq = streamer.finish(SUMMARY)
    for thread in threads + late:
        thread.join(timeout=30)
    assert len(received) == subscribers
    added = sorted(seq for seq in returned if seq is not None)
    assert added + [final_seq] == list(range(1, final_seq + 1))
    for since, msgs in received.values():
        check_stream(msgs, since, final_seq)


# --- properties -----------------------------------------------------------------------------

SYMBOLS = ("A", "B", "C")
OPS = st.one_of(
    st.tuples(st.just("result"), st.sampled_from(SYMBOLS), st.sampled_from([10.0, 20.0]),
              st.sampled_from(["high", "low", None]), st.integers(0, 3)),
    st.tuples(st.just("error")),
    st.tuples(st.just("progress")),
    st.tuples(st.just("subscribe"), st.floats(0, 1)),
    st.tuples(st.just("read"), st.integers(0, 9), st.integers(1, 4)),
    st.tuples(st.just("tick"), st.sampled_from([0.0, 0.4, 1.0])),
    st.tuples(st.just("flush")),
    st.tuples(st.just("finish")),
    st.tuples(st.just("hold")),
    st.tuples(st.just("release")),
)


def run_ops(streamer: ResultStreamer, clock: FakeClock, ops: list[tuple]) -> list:
    """Apply ``ops``; return ``[(since, subscription, received)]``."""
    subs: list = []
    with contextlib.ExitStack() as holds:
        _apply_ops(streamer, clock, ops, subs, holds)
    return subs


def _apply_ops(streamer: ResultStreamer, clock: FakeClock, ops: list[tuple], subs: list,
               holds: contextlib.ExitStack) -> None:
    open_holds: list[contextlib.ExitStack] = []
    for op in ops:
        kind = op[0]
        if kind == "result" and not streamer.finished:
            _, symbol, rating, tier, position = op
            extra = {"position": position} if tier is None else {"priority_tier": tier}
            streamer.add_result(result(symbol, rating, **extra))
        elif kind == "error" and not streamer.finished:
            streamer.add_error({"message": "boom"})
        elif kind == "progress" and not streamer.finished:
            streamer.add_progress({"processed": 1, "total": 2})
        elif kind == "subscribe":
            since = int(op[1] * streamer.last_seq)
            subs.append((since, streamer.subscribe(since=since), []))
        elif kind == "read" and subs:
            _, sub, got = subs[op[1] % len(subs)]
            with contextlib.suppress(StreamEnded):
                got.extend(sub.get_batch(timeout=0, max_items=op[2]))
        elif kind == "tick":
            clock.advance(op[1])
        elif kind == "flush":
            streamer.flush()
        elif kind == "finish":
            streamer.finish(SUMMARY)
        elif kind == "hold":
            open_holds.append(holds.enter_context(contextlib.ExitStack()))
            open_holds[-1].enter_context(streamer.holding())
        elif kind == "release" and open_holds:
            open_holds.pop().close()


@settings(deadline=None, max_examples=1000)
@given(ops=st.lists(OPS, max_size=60), batch_size=st.integers(1, 5))
def test_property_every_subscriber_sees_each_seq_once_then_one_final(ops, batch_size):
    streamer, clock = make_streamer(batch_size=batch_size, flush_interval=1.0)
    subs = run_ops(streamer, clock, ops)
    final_seq = streamer.finish(SUMMARY)
    subs.append((0, streamer.subscribe(), []))
    for since, sub, got in subs:
        got.extend(drain(sub))
        check_stream(got, since, final_seq)
        with pytest.raises(StreamEnded):
            sub.get(timeout=0)


@settings(deadline=None, max_examples=500)
@given(ops=st.lists(OPS, max_size=60), max_retained=st.integers(1, 6))
def test_property_behind_window_subscribers_skip_only_what_was_evicted(ops, max_retained):
    streamer, clock = make_streamer(batch_size=2, max_retained=max_retained)
    subs = run_ops(streamer, clock, ops)
    final_seq = streamer.finish(SUMMARY)
    for since, sub, got in subs:
        got.extend(drain(sub))
        if since == final_seq:
            assert got == []
            continue
        expected, cursor = [], since
        for msg in got:
            seq = msg["metadata"]["seq"]
            if msg["metadata"].get("local"):
                assert msg["data"]["resume_from"] == seq + 1 and seq > cursor
            else:
                assert seq == cursor + 1
            expected.append(seq)
            cursor = seq
        assert got[-1]["type"] == "final" and cursor == final_seq
        assert expected == sorted(set(expected))


def test_subscriber_count_follows_open_subscriptions():
    streamer, _ = make_streamer()
    first, second = streamer.subscribe(), streamer.subscribe()
    assert streamer.subscriber_count == 2 and not first.ended
    first.close()
    assert first.ended and streamer.subscriber_count == 1
    streamer.finish({"status": "completed"})
    assert second.get(timeout=1)["type"] == "final"
    assert second.ended and streamer.subscriber_count == 0
