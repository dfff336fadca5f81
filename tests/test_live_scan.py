"""Live scans: the first pass, then every bar re-scored; updates, alerts, Stop, timeout, replay.

``LiveRows`` is driven by a scripted feed (known bars, closed or forming, and known feed
times) for the alert rules; whole live scans run through a real ``StreamManager``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import threading
import time

import jsonschema
import pytest
from helpers import read_all, wait_until

from technic_panel.api.openapi import openapi_spec
from technic_panel.data.synthetic import SyntheticSource
from technic_panel.engine.scoring import Strategy
from technic_panel.live.alerts import AlertRules
from technic_panel.live.feeds import Bar, FeedThread, OnBar, bar_timestamp, wall_ms
from technic_panel.live.rows import LiveRows
from technic_panel.live.scan import LiveScan, feed_for
from technic_panel.live.synthetic_feed import SyntheticFeed
from technic_panel.streaming.contract import validate_message
from technic_panel.streaming.manager import StreamManager
from technic_panel.streaming.streamer import ResultStreamer, StreamEnded

LIVE = {"symbols": 30, "live": True, "bar_interval": 0.1, "alert_cooldown": 0.3}




def of_type(messages: list[dict], *types: str) -> list[dict]:
    return [msg for msg in messages if msg["type"] in types]


def live_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate()
            if thread.name.startswith(("technic-feed", "technic-scan", "technic-timeout"))]


@pytest.fixture
def manager(no_thread_leaks):
    manager = StreamManager(progress_interval=0.1)
    yield manager
    manager.shutdown()


def check_live_stream(messages: list[dict]) -> None:
    """The contract of a whole live stream read from seq 1."""
    for msg in messages:
        validate_message(msg)
    assert [msg["metadata"]["seq"] for msg in messages] == list(range(1, len(messages) + 1))
    assert [msg["type"] for msg in messages].count("final") == 1 == (messages[-1]["type"] ==
                                                                     "final")
    seen: set[str] = set()
    for msg in of_type(messages, "result", "update"):
        symbol = msg["data"]["symbol"]
        assert (msg["type"] == "result") == (symbol not in seen), f"{symbol}: {msg['type']}"
        seen.add(symbol)
        if msg["type"] == "update":
            assert msg["data"]["changed"] and msg["data"]["previous_signal"]


# --- LiveRows on a scripted feed -------------------------------------------------------------

class ScriptedFeed(FeedThread):
    """Deliver the given bars at once, in order, then end."""

    name = "scripted"

    def __init__(self, bars: list[Bar]) -> None:
        super().__init__()
        self.script = bars

    def _run(self, on_bar: OnBar) -> None:
        for bar in self.script:
            if self.stopping:
                return
            on_bar(bar)


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    return SyntheticSource(12, seed=21)


def fields_of(source: SyntheticSource) -> dict[str, dict]:
    return {symbol: {"name": symbol, "sector": None, "industry": None, "market_cap": None,
                     "priority_tier": "low", "batch_number": 1}
            for symbol in source.universe()["symbol"]}


def script(source: SyntheticSource, ticks: int, updates: int = 4, ms_per_tick: int = 250):
    """Synthetic bars of every symbol, the feed time moving ``ms_per_tick`` a tick."""
    feed = SyntheticFeed(source, list(fields_of(source)), updates=updates, seed=5)
    bars = []
    for step, tick in zip(range(ticks), feed.ticks(), strict=False):
        bars.extend(bar._replace(feed_time=1_000_000 + step * ms_per_tick) for bar in tick)
    return bars


def run_rows(source, bars, **options) -> tuple[LiveRows, list[dict]]:
    streamer = ResultStreamer("scan_live", flush_interval=0.0)
    rows = LiveRows(streamer, ScriptedFeed(bars), source, Strategy().scorer(),
                    fields=fields_of(source), **options)
    rows.run()
    streamer.finish({"status": "completed"})
    return rows, streamer.messages_since(0)


def test_every_closed_bar_is_scored_and_a_superseded_forming_bar_may_be_skipped(source,
                                                                               no_thread_leaks):
    bars = script(source, 13)  # ends on a forming bar
    rows, messages = run_rows(source, bars)
    rows_sent = of_type(messages, "result", "update")
    closed = sum(bar.closed for bar in bars)
    assert closed + 12 <= rows.bars <= len(bars) and rows.stopped
    last = {bar.symbol: bar for bar in bars}
    final_rows = {msg["data"]["symbol"]: msg["data"] for msg in rows_sent}
    assert {symbol: data["close"] for symbol, data in final_rows.items()} == \
        {symbol: bar.close for symbol, bar in last.items()}
    assert all(data["bar_time"] == bar_timestamp(last[s].time) for s, data in final_rows.items())
    assert all(data["feed_time"] == last[s].feed_time for s, data in final_rows.items())


def test_alerts_fire_only_on_closed_bars_and_once_per_cooldown(source, no_thread_leaks):
    bars = script(source, 400, updates=2, ms_per_tick=100)
    closed = {(bar.symbol, bar.feed_time) for bar in bars if bar.closed}
    rows, messages = run_rows(source, bars, alert_cooldown=3.0)
    alerts = of_type(messages, "alert")
    assert alerts and rows.alerted == len(alerts)
    last_alert: dict[str, int] = {}
    for alert in alerts:
        data = alert["data"]
        assert (data["symbol"], data["feed_time"]) in closed
        assert data["rule"] in ("entered_filter", "left_filter", "signal_changed")
        assert data["signal"] != data["previous_signal"]
        previous = last_alert.get(data["symbol"])
        assert previous is None or data["feed_time"] - previous >= 3000
        last_alert[data["symbol"]] = data["feed_time"]


def test_an_alert_names_the_change_since_the_last_one_told():
    rules = AlertRules(cooldown=10)
    rules.start("A", "HOLD", True)
    assert rules.observe("A", "BUY", True, 1000) == ("signal_changed", "HOLD")
    assert rules.observe("A", "STRONG_BUY", True, 5000) is None  # inside the cooldown
    assert rules.observe("A", "STRONG_BUY", True, 11_000) == ("signal_changed", "BUY")
    assert rules.observe("A", "STRONG_BUY", False, 30_000) == ("left_filter", "STRONG_BUY")
    assert rules.observe("A", "SELL", False, 50_000) is None  # unwatched: followed, not told
    assert rules.observe("A", "HOLD", True, 60_000) == ("entered_filter", "SELL")
    assert rules.observe("A", "HOLD", True, 80_000) is None
    assert len(rules) == 1 and "cooldown=10.0" in repr(rules)
    with pytest.raises(ValueError, match=r"^AlertRules\.cooldown must be a number >= 0"):
        AlertRules(-1)


def test_a_filter_sends_only_matching_symbols_and_marks_those_that_left(source, no_thread_leaks):
    bars = script(source, 200, updates=1)
    rows, messages = run_rows(source, bars, filter="rsi_14 > 50", alert_cooldown=0)
    sent = of_type(messages, "result", "update")
    first = {}
    for msg in sent:
        first.setdefault(msg["data"]["symbol"], msg)
    assert all(msg["data"]["in_filter"] for msg in first.values())  # sent when it matched
    assert all(msg["data"]["in_filter"] == (msg["data"]["rsi_14"] > 50) for msg in sent)
    rules = {msg["data"]["rule"] for msg in of_type(messages, "alert")}
    assert {"entered_filter", "left_filter"} <= rules


def test_paused_rows_advance_but_send_nothing(source, no_thread_leaks):
    streamer = ResultStreamer("scan_live", flush_interval=0.0)
    rows = LiveRows(streamer, ScriptedFeed(script(source, 8, updates=1)), source,
                    Strategy().scorer(), fields=fields_of(source))
    rows.pause()
    assert rows.paused
    rows.run()
    assert rows.bars == 8 * 12 and streamer.last_seq == 0
    rows.resume()
    assert not rows.paused


def test_a_symbol_that_cannot_open_is_one_error_and_the_rest_go_on(source, no_thread_leaks):
    fields = {**fields_of(source), "NOPE": {"name": "NOPE", "sector": None, "industry": None,
                                            "market_cap": None, "priority_tier": "low",
                                            "batch_number": 1}}
    streamer = ResultStreamer("scan_live", flush_interval=0.0)
    rows = LiveRows(streamer, ScriptedFeed(script(source, 4)), source, Strategy().scorer(),
                    fields=fields)
    rows.run()
    errors = of_type(streamer.messages_since(0), "error")
    assert [error["data"]["symbol"] for error in errors] == ["NOPE"]
    assert errors[0]["data"]["error"] == "data" and rows.errors == 1


def test_a_bad_bar_is_its_symbols_error_once_until_it_scores_again(source, no_thread_leaks):
    bars = script(source, 8, updates=1)
    symbol = bars[0].symbol
    broken = [bar._replace(close=float("nan")) if bar.symbol == symbol and i < 40 else bar
              for i, bar in enumerate(bars)]
    streamer = ResultStreamer("scan_live", flush_interval=0.0)
    rows = LiveRows(streamer, ScriptedFeed(broken), source, Strategy().scorer(),
                    fields=fields_of(source))
    rows.run()
    errors = of_type(streamer.messages_since(0), "error")
    assert [error["data"]["symbol"] for error in errors] == [symbol]
    assert "not finite" in errors[0]["data"]["message"]
    assert any(msg["data"]["symbol"] == symbol for msg in of_type(streamer.messages_since(0),
                                                                  "result"))


def test_a_feed_that_fails_ends_the_rows_with_its_error(source, no_thread_leaks):
    class Failing(FeedThread):
        name = "failing"

        def _run(self, on_bar):
            raise ConnectionError("the exchange hung up")

    rows = LiveRows(ResultStreamer("scan_live"), Failing(), source, Strategy().scorer(),
                    fields=fields_of(source))
    with pytest.raises(ConnectionError, match="the exchange hung up"):
        rows.run()


def test_stopping_before_the_states_open_starts_no_feed(source, no_thread_leaks):
    feed = ScriptedFeed(script(source, 2))
    rows = LiveRows(ResultStreamer("scan_live"), feed, source, Strategy().scorer(),
                    fields=fields_of(source))
    rows.stop()
    rows.run()
    assert not feed.running and rows.bars == 0 and "stopped=True" in repr(rows)


def test_a_full_queue_holds_the_feed_until_the_rows_take_or_stop(source, no_thread_leaks):
    streamer = ResultStreamer("scan_live", flush_interval=0.0)
    rows = LiveRows(streamer, ScriptedFeed(script(source, 40, updates=1)), source,
                    Strategy().scorer(), fields=fields_of(source), max_queue=5)
    rows.run()
    assert rows.bars == 40 * 12  # nothing dropped: the feed waited for room


class PacedFeed(FeedThread):
    """Hand the given bars over one by one, stamped as they go, ``pause`` seconds apart."""

    name = "paced"

    def __init__(self, bars: list[Bar], pause: float) -> None:
        super().__init__()
        self.script, self.pause = bars, pause

    def _run(self, on_bar: OnBar) -> None:
        for bar in self.script:
            if not self._sleep_until(time.monotonic() + self.pause):
                return
            on_bar(bar._replace(feed_time=wall_ms()))


def test_bars_handed_over_within_the_gathering_window_are_published_together(source,
                                                                            no_thread_leaks):
    streamer = ResultStreamer("scan_live", flush_interval=0.0)
    subscription = streamer.subscribe()
    closed = script(source, 1, updates=1)[:4]
    rows = LiveRows(streamer, PacedFeed(closed, 0.002), source, Strategy().scorer(),
                    fields=fields_of(source), shown=list(fields_of(source)))
    batches: list[list[str]] = []

    def read() -> None:
        with contextlib.suppress(StreamEnded):
            while True:
                batch = subscription.get_batch(timeout=5.0)
                batches.append([msg["data"]["symbol"] for msg in batch
                                if msg["type"] in ("result", "update")])

    reader = threading.Thread(target=read)
    reader.start()
    rows.run()
    streamer.finish({"status": "completed"})
    reader.join(10)
    # Handed over 2 ms apart, the first two bars share a take, so a subscriber sees them at once.
    assert batches[0][:2] == [bar.symbol for bar in closed[:2]]


def test_stats_summarise_the_live_figures(source, no_thread_leaks):
    rows, _ = run_rows(source, script(source, 8, updates=1))
    stats = rows.stats()
    assert stats["live"] is True and stats["bars"] == 96 and stats["live_symbols"] == 12
    assert stats["feed_time"] == 1_000_000 + 7 * 250 and stats["bar_time"].endswith("Z")
    assert stats["latency_ms_p50"] is not None
    assert LiveRows(ResultStreamer("s"), ScriptedFeed([]), source, Strategy().scorer(),
                    fields={}).stats()["latency_ms_p99"] is None


# --- whole live scans ------------------------------------------------------------------------

def test_a_live_scan_keeps_the_contract_then_ends_on_its_timeout(manager):
    scan_id = manager.start_stream({**LIVE, "timeout": 3})
    subscription = manager.subscribe(scan_id)
    messages = []
    while not any(msg["data"].get("live") for msg in messages if msg["type"] == "progress"):
        messages.extend(subscription.get_batch(timeout=10))
    assert gc.get_freeze_count() > 0  # the heap is frozen while the rows run
    messages.extend(read_all(subscription))
    check_live_stream(messages)
    final = messages[-1]["data"]
    assert (final["status"], final["reason"]) == ("terminated", "timeout")
    assert final["live"] is True and final["bars"] > 0 and final["updates"] > 0
    updates = of_type(messages, "update")
    assert updates and all("bar_time" in msg["data"] and "feed_time" in msg["data"]
                           for msg in updates)
    last_alert: dict[str, int] = {}
    for alert in of_type(messages, "alert"):
        data = alert["data"]
        assert data["feed_time"] - last_alert.get(data["symbol"], -10**9) >= 300
        last_alert[data["symbol"]] = data["feed_time"]
    schema = jsonschema.Draft202012Validator(
        {**openapi_spec(), "$ref": "#/components/schemas/Message"})
    for msg in messages:
        schema.validate(json.loads(json.dumps(msg)))  # the schema is the wire's: JSON
    live_progress = [msg for msg in of_type(messages, "progress") if msg["data"].get("live")]
    assert live_progress and "latency_ms_p99" in live_progress[-1]["data"]
    assert manager.get(scan_id).streamer.result_count == 30
    assert gc.get_freeze_count() == 0  # frozen while it ran (tests/test_live_heap.py), no more
    latest = {msg["data"]["symbol"]: msg["data"]["signal"]
              for msg in of_type(messages, "result", "update")}
    counts = {signal: list(latest.values()).count(signal) for signal in final["signals"]}
    assert final["signals"] == counts  # the rows' signals as they stand, not the first pass's


def test_stop_ends_a_live_scan_with_one_final_and_nothing_outlives_it(manager):
    scan_id = manager.start_stream(LIVE)
    subscription = manager.subscribe(scan_id)
    wait_until(lambda: manager.get(scan_id).progress().get("bars", 0) > 200, timeout=30)
    assert any(name.startswith("technic-feed") for name in live_threads())
    manager.stop_stream(scan_id)
    messages = read_all(subscription)
    assert [msg["type"] for msg in messages].count("final") == 1
    assert (messages[-1]["data"]["status"], messages[-1]["data"]["reason"]) == ("stopped",
                                                                                "manual")
    wait_until(lambda: not live_threads())
    record = manager.get(scan_id)
    assert record.streamer.finished and record.scanner is None
    last = record.streamer.last_seq
    time.sleep(0.3)
    assert record.streamer.last_seq == last  # no callback of the feed or the rows is left


def test_max_signals_ends_the_first_pass_only(manager):
    scan_id = manager.start_stream({**LIVE, "symbols": 200, "max_signals": 1,
                                    "quality_signals": ["BUY", "STRONG_BUY", "HOLD"],
                                    "timeout": 2})
    messages = read_all(manager.subscribe(scan_id))
    check_live_stream(messages)
    final = messages[-1]["data"]
    assert final["reason"] == "timeout" and final["initial_reason"] == "max_signals"
    assert final["live_symbols"] == 200 and final["bars"] > 0


def test_pause_holds_a_live_scans_rows_and_resume_lets_them_go(manager):
    scan_id = manager.start_stream(LIVE)
    subscription = manager.subscribe(scan_id)
    wait_until(lambda: manager.get(scan_id).progress().get("bars", 0) > 100, timeout=30)
    manager.pause_stream(scan_id)
    time.sleep(0.2)  # what was taken before the pause may still go out
    held = manager.get(scan_id).streamer.last_seq
    time.sleep(0.5)
    paused = [msg for msg in manager.get(scan_id).streamer.messages_since(held)
              if msg["type"] in ("update", "alert")]
    assert paused == []
    manager.resume_stream(scan_id)
    wait_until(lambda: any(msg["type"] == "update" for msg in
                           manager.get(scan_id).streamer.messages_since(held)))
    manager.stop_stream(scan_id)
    read_all(subscription)


def test_a_stop_before_the_first_pass_ends_reaches_the_live_scan(manager):
    scan_id = manager.start_stream({**LIVE, "symbols": 300, "latency_ms": 20})
    manager.stop_stream(scan_id)
    messages = read_all(manager.subscribe(scan_id))
    assert messages[-1]["data"]["reason"] == "manual"
    assert not any(msg["data"].get("live") for msg in of_type(messages, "progress"))


def test_a_live_scan_paused_at_its_end_of_pass_starts_its_rows_paused(manager, monkeypatch):
    started = threading.Event()
    original = LiveRows.run

    def spy(rows):
        started.set()
        assert rows.paused
        rows.stop()
        original(rows)

    monkeypatch.setattr(LiveRows, "run", spy)
    monkeypatch.setattr(LiveScan, "_after_scan", _pausing_after_scan(LiveScan._after_scan))
    scan_id = manager.start_stream(LIVE)
    messages = read_all(manager.subscribe(scan_id))
    assert started.is_set() and messages[-1]["type"] == "final"


def _pausing_after_scan(after_scan):
    def paused(run, scanner):
        run.record.paused = True
        after_scan(run, scanner)

    return paused


def test_symbols_that_failed_the_first_pass_stay_out_of_the_live_rows(manager):
    scan_id = manager.start_stream({**LIVE, "error_rate": 0.3, "timeout": 1.5})
    messages = read_all(manager.subscribe(scan_id))
    failed = {msg["data"]["symbol"] for msg in of_type(messages, "error")}
    rows = {msg["data"]["symbol"] for msg in of_type(messages, "result", "update")}
    assert failed and not failed & rows
    assert messages[-1]["data"]["live_symbols"] == 30 - len(failed)


def test_a_replay_scores_the_history_before_then_replays_to_the_end(manager):
    scan_id = manager.start_stream({"symbols": 20, "live": True, "feed": "replay",
                                    "replay_from": "2026-10-20", "speed": 86_400 * 20})
    messages = read_all(manager.subscribe(scan_id))
    check_live_stream(messages)
    final = messages[-1]["data"]
    assert (final["status"], final["reason"]) == ("completed", None)
    results = [msg for msg in of_type(messages, "result") if "bar_time" not in msg["data"]]
    source = SyntheticSource(20, seed=42)
    for msg in results[:5]:
        bars = source.bars(msg["data"]["symbol"])
        before = bars.close[bars.dates < bars.dates.dtype.type("2026-10-20")]
        assert msg["data"]["close"] == pytest.approx(float(before[-1]))
    replayed = sorted({msg["data"]["bar_time"] for msg in of_type(messages, "update")})
    assert replayed[0] >= "2026-10-20" and replayed[-1] == "2026-10-30T00:00:00.000Z"


def test_the_feed_a_config_names(source):
    from technic_panel.config import ScanConfig

    synthetic = feed_for(ScanConfig(live=True, bar_interval=0.5), source, ["A"])
    assert isinstance(synthetic, SyntheticFeed) and synthetic.bar_interval == 0.5
    replay = feed_for(ScanConfig(live=True, feed="replay", replay_from="2026-01-02", speed=3),
                      source, ["A"])
    assert replay.speed == 3.0 and str(replay.replay_from).startswith("2026-01-02")


# --- the settings ----------------------------------------------------------------------------

def test_live_settings_come_from_json_and_are_checked_together():
    from technic_panel.config import ConfigError, ScanConfig

    config = ScanConfig.from_mapping({"live": True, "feed": "replay", "replay_from": "2026-03-02",
                                      "speed": 86_400, "alert_cooldown": 0})
    assert (config.live, config.feed, config.speed, config.alert_cooldown) == (
        True, "replay", 86_400.0, 0.0)
    refusals = {
        "feed": ({"feed": "replay", "replay_from": "2026-03-02"}, "needs live=True"),
        "replay_from": ({"live": True, "feed": "replay"}, "must be an ISO date like 2026-03-02"),
        "bar_interval": ({"live": True, "bar_interval": 0.001}, "bar_interval"),
        "speed": ({"live": True, "speed": 0}, "speed"),
    }
    for field, (values, words) in refusals.items():
        with pytest.raises(ConfigError, match=words) as info:
            ScanConfig.from_mapping(values)
        assert info.value.field == field
    with pytest.raises(ConfigError, match="needs feed='replay', not feed='synthetic'"):
        ScanConfig.from_mapping({"live": True, "replay_from": "2026-03-02"})
    with pytest.raises(ConfigError, match="not 'yesterday'"):
        ScanConfig.from_mapping({"live": True, "feed": "replay", "replay_from": "yesterday"})
    with pytest.raises(ConfigError, match="ScanConfig.symbols must not be a boolean"):
        ScanConfig.from_mapping({"symbols": True})
    with pytest.raises(ConfigError, match="ScanConfig.live"):
        ScanConfig.from_mapping({"live": "yes"})


def test_the_api_schema_describes_the_live_settings_and_messages():
    from technic_panel.api.openapi import openapi_spec

    schemas = openapi_spec()["components"]["schemas"]
    settings_ = schemas["ScanConfig"]["properties"]
    assert settings_["live"] == {"type": "boolean", "default": False,
                                 "description": settings_["live"]["description"]}
    assert settings_["feed"]["enum"] == ["synthetic", "replay"]
    message = schemas["Message"]
    assert "alert" in message["properties"]["type"]["enum"]
    alert = next(rule["then"]["properties"]["data"] for rule in message["allOf"]
                 if rule["if"]["properties"]["type"].get("enum") == ["alert"])
    assert alert["required"] == ["symbol", "rule", "signal", "previous_signal", "tech_rating",
                                 "bar_time"]
