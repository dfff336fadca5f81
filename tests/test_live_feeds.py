"""Bar feeds: the synthetic path continued, stored bars replayed; one protocol, one thread each."""

from __future__ import annotations

import collections
import re
import threading
import time

import numpy as np
import pandas as pd
import pytest
from helpers import wait_until

from technic_panel.data.base import DataError
from technic_panel.data.sample import SampleSource
from technic_panel.data.synthetic import SyntheticSource
from technic_panel.live.feeds import Bar, BarFeed, FeedThread, bar_timestamp, wall_ms
from technic_panel.live.replay import HistoryBefore, ReplayFeed, replay_start
from technic_panel.live.synthetic_feed import SyntheticFeed


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    return SyntheticSource(40, seed=5)


@pytest.fixture(scope="module")
def symbols(source) -> list[str]:
    return source.universe()["symbol"].tolist()


class Recorder:
    """Collect a feed's bars and its end, as a live scan's queue would (thread-safe)."""

    def __init__(self) -> None:
        self.bars: list[Bar] = []
        self.ends: list[BaseException | None] = []
        self._lock = threading.Lock()

    def on_bar(self, bar: Bar) -> None:
        with self._lock:
            self.bars.append(bar)

    def on_end(self, error: BaseException | None) -> None:
        self.ends.append(error)


def closed_by_symbol(bars: list[Bar]) -> dict[str, list[Bar]]:
    out: dict[str, list[Bar]] = collections.defaultdict(list)
    for bar in bars:
        if bar.closed:
            out[bar.symbol].append(bar)
    return out


def take(feed: SyntheticFeed, ticks: int) -> list[Bar]:
    return [bar for _, tick in zip(range(ticks), feed.ticks(), strict=False) for bar in tick]


# --- the protocol and its thread ----------------------------------------------------------

def test_both_feeds_keep_the_protocol(source, symbols):
    assert isinstance(SyntheticFeed(source, symbols), BarFeed)
    assert isinstance(ReplayFeed(source, symbols, replay_from=replay_start("2026-06-01")),
                      BarFeed)


def test_bar_times_are_the_contracts_utc_text():
    stamp = int(np.datetime64("2026-11-02T14:30:01.250", "ns").astype(np.int64))
    assert bar_timestamp(stamp) == "2026-11-02T14:30:01.250Z"
    assert abs(wall_ms() - time.time() * 1000) < 1000


def test_a_feed_starts_once_stops_twice_and_joins_its_thread(source, symbols, no_thread_leaks):
    early, recorder = SyntheticFeed(source, symbols, bar_interval=0.05), Recorder()
    assert early.stop() and not early.running  # before start: nothing to join, and it stays
    early.start(recorder.on_bar, recorder.on_end)  # stopped: it ends at once
    wait_until(lambda: recorder.ends == [None])
    assert recorder.bars == [] and early.stop()
    feed, recorder = SyntheticFeed(source, symbols, bar_interval=0.05), Recorder()
    feed.start(recorder.on_bar, recorder.on_end)
    with pytest.raises(RuntimeError, match="SyntheticFeed was already started"):
        feed.start(recorder.on_bar, recorder.on_end)
    wait_until(lambda: len(recorder.bars) > 100)
    assert feed.running
    assert feed.stop(timeout=5) and feed.stop()
    assert not feed.running and recorder.ends == [None]
    count = len(recorder.bars)
    time.sleep(0.1)
    assert len(recorder.bars) == count


def test_a_feed_that_fails_reports_it_at_its_end(no_thread_leaks):
    class Broken(FeedThread):
        name = "broken"

        def _run(self, on_bar):
            raise RuntimeError("the feed's connection dropped")

    recorder = Recorder()
    feed = Broken()
    feed.start(recorder.on_bar, recorder.on_end)
    wait_until(lambda: recorder.ends)
    assert feed.stop()
    assert [str(error) for error in recorder.ends] == ["the feed's connection dropped"]


def test_stop_called_from_the_feeds_own_callback_returns(source, symbols, no_thread_leaks):
    feed = SyntheticFeed(source, symbols, bar_interval=0.05)
    ends = []
    stopped = []
    feed.start(lambda bar: stopped.append(feed.stop()), ends.append)
    wait_until(lambda: ends)
    assert stopped[0] is True and feed.stop()


# --- SyntheticFeed ----------------------------------------------------------------------------

def test_synthetic_bars_are_the_same_for_the_same_seed_whatever_the_timing(source, symbols,
                                                                            no_thread_leaks):
    expected = take(SyntheticFeed(source, symbols, bar_interval=0.05, seed=3), 16)
    assert expected == take(SyntheticFeed(source, symbols, bar_interval=0.05, seed=3), 16)
    assert expected != take(SyntheticFeed(source, symbols, bar_interval=0.05, seed=4), 16)
    feed, recorder = SyntheticFeed(source, symbols, bar_interval=0.05, seed=3), Recorder()
    feed.start(recorder.on_bar, recorder.on_end)
    wait_until(lambda: len(recorder.bars) >= len(expected), timeout=10)
    feed.stop()
    delivered = [bar._replace(feed_time=0) for bar in recorder.bars[:len(expected)]]
    assert delivered == expected


def test_a_symbols_path_is_the_same_in_a_longer_list(source, symbols):
    short = closed_by_symbol(take(SyntheticFeed(source, symbols[:10], seed=3), 20))
    long = closed_by_symbol(take(SyntheticFeed(source, symbols, seed=3), 20))
    assert all(short[symbol] == long[symbol] for symbol in symbols[:10])


def test_each_bar_forms_then_closes_and_the_next_opens_at_its_close(source, symbols):
    bars = [bar for bar in take(SyntheticFeed(source, symbols, updates=4), 12)
            if bar.symbol == symbols[0]]
    assert [bar.closed for bar in bars] == [False, False, False, True] * 3
    for bar in bars:
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
    for first, second in zip(bars, bars[1:], strict=False):
        if first.time == second.time:  # the same bar, more of it
            assert second.open == first.open and second.volume > first.volume
            assert second.high >= first.high and second.low <= first.low
        else:
            assert first.closed and second.open == first.close
    assert bars[3].open == float(source.bars(symbols[0]).close[-1])


def test_bars_continue_from_the_last_stored_day(source, symbols):
    last = np.datetime64(source.bars(symbols[0]).dates[-1], "D")
    closed = closed_by_symbol(take(SyntheticFeed(source, symbols, updates=1), 6))[symbols[0]]
    days = [np.datetime64(bar.time, "ns").astype("datetime64[D]") for bar in closed]
    assert days == [np.busday_offset(last, k, roll="forward") for k in range(1, 7)]


def test_intraday_bars_are_stamped_into_the_session(source, symbols):
    feed = SyntheticFeed(source, symbols, updates=1, bar_interval=60, day_fraction=60 / 23_400)
    closed = closed_by_symbol(take(feed, 3))[symbols[0]]
    assert [bar_timestamp(bar.time)[11:] for bar in closed] == [
        "14:30:00.000Z", "14:31:00.000Z", "14:32:00.000Z"]


def log_returns(bars: list[Bar]) -> np.ndarray:
    closes = np.array([bar.close for bar in bars])
    return np.diff(np.log(closes))


@pytest.mark.parametrize("fraction", [1.0, 0.01])
def test_the_bars_have_the_daily_models_volatility_and_volume_scaled(source, symbols, fraction):
    feed = SyntheticFeed(source, symbols, updates=2, day_fraction=fraction, seed=9)
    closed = closed_by_symbol(take(feed, 400))
    ratios, volumes = [], []
    for symbol in symbols:
        history = source.bars(symbol)
        daily = np.std(np.diff(np.log(history.close[-64:])))
        ratios.append(np.std(log_returns(closed[symbol])) / (daily * np.sqrt(fraction)))
        volumes.append(np.mean([bar.volume for bar in closed[symbol]])
                       / (np.mean(history.volume[-20:]) * fraction))
    assert 0.7 < np.median(ratios) < 1.4
    assert 0.7 < np.median(volumes) < 1.6


def test_volatility_clusters_as_in_the_daily_model(source, symbols):
    closed = closed_by_symbol(take(SyntheticFeed(source, symbols, updates=1, seed=2), 400))
    pooled = []
    for symbol in symbols:
        squared = log_returns(closed[symbol]) ** 2
        pooled.append(np.corrcoef(squared[:-1], squared[1:])[0, 1])
    assert np.mean(pooled) > 0.02  # GARCH: a large move makes the next one likelier


def test_symbols_arrive_one_bar_per_interval_evenly_spread(source, symbols, no_thread_leaks):
    feed, recorder = SyntheticFeed(source, symbols, bar_interval=0.2, updates=2), Recorder()
    feed.start(recorder.on_bar, recorder.on_end)
    time.sleep(1.5)
    feed.stop()
    closed = closed_by_symbol(recorder.bars)
    counts = [len(closed[symbol]) for symbol in symbols]
    assert 5 <= min(counts) and max(counts) <= 8  # 1.5 s of 0.2 s bars, generous for CI
    stamps = sorted(bar.feed_time for bar in recorder.bars)
    assert max(np.diff(stamps)) < 150  # an even flow, not one burst per bar


def test_a_symbol_without_bars_is_left_out(source, symbols):
    feed = SyntheticFeed(source, [symbols[0], "NOPE", symbols[1]], updates=1)
    assert [bar.symbol for bar in take(feed, 1)] == [symbols[0], symbols[1]]


@pytest.mark.parametrize(("option", "value", "words"), [
    ("bar_interval", 0, "SyntheticFeed.bar_interval must be a number in (0, 86400], not 0"),
    ("updates", 0, "SyntheticFeed.updates must be an integer in [1, 100], not 0"),
    ("day_fraction", 1.5, "SyntheticFeed.day_fraction must be a number in (0, 1], not 1.5"),
])
def test_synthetic_feed_refuses_bad_settings(source, symbols, option, value, words):
    with pytest.raises(ValueError, match=f"^{re.escape(words)}$"):
        SyntheticFeed(source, symbols, **{option: value})


# --- ReplayFeed and HistoryBefore ------------------------------------------------------------

def test_history_before_cuts_every_symbols_bars_at_the_date(source, symbols):
    start = replay_start("2026-09-01")
    before = HistoryBefore(source, start)
    bars = before.bars(symbols[0])
    assert bars.dates[-1] < start <= source.bars(symbols[0]).dates[len(bars)]
    assert before.universe().equals(source.universe())
    snapshot = before.snapshot().set_index("symbol")
    assert snapshot.loc[symbols[0], "close"] == bars.close[-1]
    assert before.history(symbols[0]).index[-1] == pd.Timestamp(bars.dates[-1])
    assert "before 2026-09-01" in before.name and "HistoryBefore" in repr(before)
    with pytest.raises(DataError, match="has no bars before 1990-01-01"):
        HistoryBefore(source, replay_start("1990-01-01")).bars(symbols[0])


def test_history_before_a_date_without_bars_leaves_the_snapshot_row_empty(source):
    snapshot = HistoryBefore(source, replay_start("1990-01-01")).snapshot()
    assert len(snapshot) == 40 and snapshot["close"].isna().all()


def test_replay_delivers_every_bar_from_the_date_in_time_order(source, symbols, no_thread_leaks):
    start = replay_start("2026-10-20")
    feed, recorder = ReplayFeed(source, symbols, replay_from=start, speed=86_400 * 20), Recorder()
    feed.start(recorder.on_bar, recorder.on_end)
    wait_until(lambda: recorder.ends, timeout=10)
    assert recorder.ends == [None] and feed.stop()
    times = [bar.time for bar in recorder.bars]
    assert times == sorted(times) and all(bar.closed for bar in recorder.bars)
    for symbol in symbols[:5]:
        bars = source.bars(symbol)
        keep = bars.dates >= start
        mine = [bar for bar in recorder.bars if bar.symbol == symbol]
        assert [bar.close for bar in mine] == bars.close[keep].tolist()
        assert [bar.volume for bar in mine] == bars.volume[keep].tolist()


def test_replay_runs_at_speed_times_real_time(source, symbols, no_thread_leaks):
    start = replay_start("2026-10-26")  # Monday: five bars to Friday, four days apart
    feed, recorder = ReplayFeed(source, symbols[:3], replay_from=start, speed=86_400 * 10),\
        Recorder()
    began = time.monotonic()
    feed.start(recorder.on_bar, recorder.on_end)
    wait_until(lambda: recorder.ends, timeout=10)
    took = time.monotonic() - began
    assert 0.35 < took < 2.0  # four days at 10 days a second: 0.4 s
    assert len(recorder.bars) == 15


def test_replay_leaves_out_symbols_without_bars_and_ends_at_once_without_any(source, symbols,
                                                                             no_thread_leaks):
    feed = ReplayFeed(source, ["NOPE", symbols[0]], replay_from=replay_start("2026-10-29"))
    got, _, _ = feed.schedule()
    assert set(got) == {symbols[0]}
    recorder = Recorder()
    empty = ReplayFeed(source, ["NOPE"], replay_from=replay_start("2026-10-29"))
    empty.start(recorder.on_bar, recorder.on_end)
    wait_until(lambda: recorder.ends)
    assert recorder.bars == [] and recorder.ends == [None]


def test_replay_works_on_real_prices():
    sample = SampleSource()
    symbol = sample.universe()["symbol"][0]
    dates = sample.bars(symbol).dates
    start = np.datetime64(dates[-5], "ns")
    symbols, times, rows = ReplayFeed(sample, [symbol], replay_from=start).schedule()
    assert symbols == [symbol] * 5 and times.tolist() == dates[-5:].astype(np.int64).tolist()
    assert rows.shape == (5, 5)


@pytest.mark.parametrize("text", ["yesterday-ish", "", "2026-13-01"])
def test_replay_start_names_what_it_wants(text):
    with pytest.raises(ValueError, match="replay_from must be an ISO date like 2026-03-02"):
        replay_start(text)


def test_replay_start_reads_dates_times_and_zones():
    assert replay_start("2026-03-02") == np.datetime64("2026-03-02T00:00", "ns")
    assert replay_start("2026-03-02T15:30+01:00") == np.datetime64("2026-03-02T14:30", "ns")


def test_replay_feed_refuses_a_speed_that_is_not_positive(source, symbols):
    with pytest.raises(ValueError, match=r"^ReplayFeed\.speed must be a number > 0, not 0"):
        ReplayFeed(source, symbols, replay_from=replay_start("2026-10-01"), speed=0)


def test_reprs_show_state(source, symbols):
    assert repr(SyntheticFeed(source, symbols)).startswith("SyntheticFeed(symbols=40, ")
    assert "speed=2.0" in repr(ReplayFeed(source, symbols, replay_from=replay_start("2026-10-01"),
                                          speed=2))
