"""The Yahoo adapter through yfinance's own seam: an injected ``download`` serving real shapes.

The payloads come from ``yahoo_helpers.FakeYahoo`` (yfinance 1.7's shapes, built with
yfinance's own functions); the live Yahoo path is not reachable here. Offline behaviour
is checked with real connection attempts to closed and unroutable addresses.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import FakeClock, free_port
from hypothesis import given, settings
from hypothesis import strategies as st
from yahoo_helpers import RATE_LIMITED, FakeYahoo, history, yf_payload
from yfinance import utils as yf_utils
from yfinance.exceptions import YFRateLimitError

from technic_panel.data.providers import ProviderError
from technic_panel.data.providers.yahoo import YahooProvider, check_reachable
from technic_panel.data.providers.yahoo_download import split_download
from technic_panel.data.store import BarStore

END = pd.Timestamp("2024-07-01")
"""Fetches end before this day unless a test says otherwise."""


SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path):
    with BarStore(tmp_path / "bars.duckdb", create=True) as bar_store:
        yield bar_store


def provider(fake: FakeYahoo, clock: FakeClock, **options) -> YahooProvider:
    options = {"rate": 2.0, "batch": 2, "backoff": 1.0, **options}
    return YahooProvider(download=fake, probe=None, clock=clock, sleep=clock.sleep, **options)


def stored(store: BarStore, symbol: str) -> pd.DataFrame:
    return store.source().history(symbol)


def expected(symbol: str, end: pd.Timestamp = END, start: str = "2022-07-01") -> pd.DataFrame:
    frame = history(symbol).rename(columns=str.lower)
    frame.index = frame.index.tz_localize(None).astype("datetime64[ns]").rename("date")
    return frame[(frame.index >= start) & (frame.index < end)].astype("float64")


# --- payloads --------------------------------------------------------------------------------


@pytest.mark.parametrize("group_by", ["column", "ticker"])
def test_split_reads_both_groupings_and_leaves_out_the_all_nan_ticker(group_by):
    payload = yf_payload({"AAA": history("AAA"), "BBB": None, "CCC": history("CCC")}, group_by)
    assert payload.columns.names == (["Price", "Ticker"] if group_by == "column"
                                     else ["Ticker", "Price"])
    assert payload.xs("BBB", axis=1, level="Ticker").isna().all().all()
    frames = split_download(payload, ["AAA", "BBB", "CCC"])
    assert sorted(frames) == ["AAA", "CCC"]
    for symbol in frames:
        pd.testing.assert_frame_equal(frames[symbol], expected(symbol, pd.Timestamp("2025-01-01"),
                                                               "2023-01-01"), check_freq=False)


def test_split_of_a_flat_single_ticker_frame_and_of_empty_payloads():
    flat = yf_payload({"AAA": history("AAA")}).droplevel(1, axis=1).rename_axis(None, axis=1)
    assert list(split_download(flat, ["AAA"])) == ["AAA"]
    everything_failed = yf_payload({"AAA": None, "BBB": None})
    assert everything_failed.empty and "Adj Close" in everything_failed.columns.get_level_values(0)
    assert split_download(everything_failed, ["AAA", "BBB"]) == {}
    assert split_download(None, ["AAA"]) == {} == split_download(pd.DataFrame(), ["AAA"])


def test_split_drops_incomplete_bars_and_widens_a_rounded_high_or_low():
    frame = history("AAA", end="2023-01-10")
    frame.iloc[1, frame.columns.get_loc("Close")] = np.nan
    frame.iloc[2, frame.columns.get_loc("Open")] = 0.0
    frame.iloc[3, frame.columns.get_loc("Close")] = frame["High"].iloc[3] * 1.0001
    bars = split_download(yf_payload({"AAA": frame}), ["AAA"])["AAA"]
    assert len(bars) == len(frame) - 2
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert bars.index.tz is None and bars.index.name == "date"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.floats(0, 1), st.sampled_from(["column",
                                                                                 "ticker"])),
                min_size=1, max_size=4),
       st.integers(0, 2**16))
def test_split_gives_bars_that_keep_every_store_rule(tickers, seed):
    rng = np.random.default_rng(seed)
    histories, group_by = {}, tickers[0][2]
    for i, (rows, holes, _) in enumerate(tickers):
        frame = history(f"T{i}", end="2023-01-20").iloc[:rows].copy()
        values = frame[["Open", "Close", "Volume"]].to_numpy(dtype=float)
        values[rng.random(values.shape) < holes / 3] = np.nan
        frame[["Open", "Close", "Volume"]] = values
        frame["Open"] *= rng.choice([1.0, 1.03, -1.0], size=len(frame), p=[0.8, 0.1, 0.1])
        histories[f"T{i}"] = frame if rows else None
    frames = split_download(yf_payload(histories, group_by), list(histories))
    for ticker, raw in histories.items():
        complete = 0 if raw is None else int((raw.notna().all(axis=1) & (raw["Open"] > 0)).sum())
        assert len(frames.get(ticker, ())) == complete
    for bars in frames.values():
        assert (bars[["open", "high", "low", "close"]] > 0).all().all()
        assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
        assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
        assert bars.index.is_unique and bars.index.is_monotonic_increasing


# --- fetching into a store ---------------------------------------------------------------


def test_a_fetch_batches_the_symbols_and_stores_adjusted_bars(store, clock):
    fake = FakeYahoo({s: history(s) for s in SYMBOLS}, clock=clock)
    report = provider(fake, clock).fetch(store, SYMBOLS, start="2022-07-01", end=END)
    assert fake.fetched() == [["AAA", "BBB"], ["CCC", "DDD"], ["EEE"]]
    call = fake.calls[0]
    assert (call["start"], call["end"], call["interval"]) == ("2022-07-01", "2024-07-01", "1d")
    assert call["auto_adjust"] is True and call["progress"] is False and call["timeout"] == 20.0
    assert report and report.failed == {} and report.batches == 3 and report.requests == 5
    for symbol in SYMBOLS:
        assert report.written[symbol] == len(expected(symbol))
        pd.testing.assert_frame_equal(stored(store, symbol), expected(symbol), check_freq=False)
    assert store.last_dates()["AAA"] == pd.Timestamp("2024-06-28")


def test_the_rate_holds_yahoo_to_batch_plus_rate_times_t_requests(store, clock):
    fake = FakeYahoo({s: history(s) for s in SYMBOLS + ["FFF"]}, clock=clock)
    provider(fake, clock, rate=2.0, batch=2).fetch(store, SYMBOLS + ["FFF"], end=END)
    times = [call["at"] for call in fake.calls]
    assert times == pytest.approx([0.0, 1.0, 2.0])  # 2 tickers a call at 2 requests/s
    for i, first in enumerate(times):
        for j in range(i, len(times)):
            sent = sum(len(call["tickers"]) for call in fake.calls[i:j + 1])
            assert sent <= 2 + 2.0 * (times[j] - first)


def test_a_rate_limit_raised_by_the_download_is_retried_with_backoff(store, clock):
    fake = FakeYahoo({s: history(s) for s in SYMBOLS[:2]},
                     script=[{"raise": YFRateLimitError()}], clock=clock)
    report = provider(fake, clock, backoff=1.0).fetch(store, SYMBOLS[:2], end=END)
    assert fake.fetched() == [["AAA", "BBB"], ["AAA", "BBB"]]
    assert 1.0 <= fake.calls[1]["at"] - fake.calls[0]["at"] <= 1.0 * 1.1 + 1.0
    assert sorted(report.written) == ["AAA", "BBB"] and report.failed == {}
    assert report.requests == 4


def test_a_download_that_keeps_raising_fails_its_batch_with_the_reason(store, clock):
    fake = FakeYahoo({s: history(s) for s in SYMBOLS[:3]}, clock=clock,
                     script=[{"raise": YFRateLimitError()}] * 3)
    report = provider(fake, clock, attempts=3).fetch(store, SYMBOLS[:3], end=END)
    assert fake.fetched() == [["AAA", "BBB"]] * 3 + [["CCC"]]
    reason = ("YFRateLimitError: Too Many Requests. Rate limited. Try after a while. "
              "(after 3 attempts)")
    assert report.failed == {"AAA": reason, "BBB": reason} and list(report.written) == ["CCC"]


def test_only_the_tickers_yfinance_logged_as_rate_limited_are_fetched_again(store, clock):
    fake = FakeYahoo({s: history(s) for s in SYMBOLS[:2]},
                     script=[{"fail": {"BBB": RATE_LIMITED}}], clock=clock)
    report = provider(fake, clock).fetch(store, SYMBOLS[:2], end=END)
    assert fake.fetched() == [["AAA", "BBB"], ["BBB"]]
    assert sorted(report.written) == ["AAA", "BBB"]
    pd.testing.assert_frame_equal(stored(store, "BBB"), expected("BBB"), check_freq=False)


def test_retries_are_bounded_and_back_off_exponentially(store, clock):
    always = [{"fail": {"AAA": RATE_LIMITED}}] * 4
    fake = FakeYahoo({"AAA": history("AAA"), "BBB": history("BBB")}, script=always, clock=clock)
    report = provider(fake, clock, attempts=4, backoff=1.0).fetch(store, ["AAA", "BBB"], end=END)
    assert fake.fetched() == [["AAA", "BBB"], ["AAA"], ["AAA"], ["AAA"]]
    waits = [later["at"] - earlier["at"] for earlier, later in zip(fake.calls, fake.calls[1:],
                                                                     strict=False)]
    for wait, backoff in zip(waits, [1.0, 2.0, 4.0], strict=True):
        assert backoff <= wait <= backoff * 1.1 + 0.5  # + the token for the one ticker
    assert report.failed == {"AAA": "YFRateLimitError('Too Many Requests. Rate limited. "
                                     "Try after a while.') (after 4 attempts)"}
    assert list(report.written) == ["BBB"] and "AAA" not in store.last_dates()


def test_a_timed_out_timezone_request_counts_as_transient(store, clock):
    timeout = ("Failed to get ticker 'AAA' reason: Failed to perform, curl: (28) "
               "Operation timed out after 20001 milliseconds")
    fake = FakeYahoo({"AAA": history("AAA")}, clock=clock,
                     script=[{"fail": {"AAA": "possibly delisted; no timezone found"}}])
    original = fake.__call__

    def download(tickers, **options):
        if not fake.calls:
            yf_utils.get_yf_logger().error(timeout)
        return original(tickers, **options)

    report = provider(download, clock).fetch(store, ["AAA"], end=END)
    assert fake.fetched() == [["AAA"], ["AAA"]] and list(report.written) == ["AAA"]


def test_a_ticker_yahoo_does_not_know_fails_at_once_with_yfinances_reason(store, clock):
    fake = FakeYahoo({"AAA": history("AAA")}, clock=clock)
    report = provider(fake, clock).fetch(store, ["AAA", "NOPE"], start="2023-01-02", end=END)
    assert fake.fetched() == [["AAA", "NOPE"]]
    assert report.failed == {"NOPE": "possibly delisted; no price data found "
                                     "(1d 2023-01-02 -> 2024-07-01)"}


def test_a_symbol_the_store_refuses_is_a_failure_with_the_stores_reason(store, clock):
    fake = FakeYahoo({"AAA": history("AAA"), "IPO": history("IPO", start="2024-04-01")},
                     clock=clock)
    report = provider(fake, clock).fetch(store, ["AAA", "IPO"], end=END)
    assert list(report.written) == ["AAA"] and list(report.failed) == ["IPO"]
    assert report.failed["IPO"].startswith("refused by the store: ")
    assert "IPO" not in store.last_dates()


def test_a_download_that_raises_another_error_fails_its_batch_and_the_fetch_goes_on(store,
                                                                                      clock):
    fake = FakeYahoo({s: history(s) for s in SYMBOLS[:4]},
                     script=[{"raise": KeyError("chart")}], clock=clock)
    report = provider(fake, clock).fetch(store, SYMBOLS[:4], end=END)
    assert fake.fetched() == [["AAA", "BBB"], ["CCC", "DDD"]]
    assert report.failed == {"AAA": "KeyError: 'chart'", "BBB": "KeyError: 'chart'"}
    assert sorted(report.written) == ["CCC", "DDD"]


def test_yfinance_errors_are_collected_not_printed(store, clock, capsys):
    fake = FakeYahoo({}, clock=clock)
    yf_logger = logging.getLogger("yfinance")
    before = (yf_logger.level, yf_logger.propagate, list(yf_logger.handlers))
    provider(fake, clock).fetch(store, ["NOPE"], end=END)
    assert capsys.readouterr().err == ""
    assert (yf_logger.level, yf_logger.propagate, list(yf_logger.handlers)) == before


# --- incremental and resumed -------------------------------------------------------------


def test_a_second_fetch_asks_only_for_the_days_after_each_last_bar(store, clock):
    bars = {s: history(s) for s in SYMBOLS[:3]}
    yahoo = provider(FakeYahoo(bars, clock=clock), clock)
    yahoo.fetch(store, SYMBOLS[:3], end=END)
    fake = FakeYahoo(bars, clock=clock)
    later = pd.Timestamp("2024-07-15")
    report = provider(fake, clock).fetch(store, SYMBOLS[:3], start="2020-01-01", end=later)
    assert [call["start"] for call in fake.calls] == ["2024-06-29", "2024-06-29"]
    assert report.written == dict.fromkeys(SYMBOLS[:3], 10)
    for symbol in SYMBOLS[:3]:
        pd.testing.assert_frame_equal(stored(store, symbol), expected(symbol, later),
                                      check_freq=False)


def test_symbols_with_no_weekday_left_are_up_to_date_without_a_request(store, clock):
    bars = {s: history(s) for s in SYMBOLS[:2]}
    provider(FakeYahoo(bars, clock=clock), clock).fetch(store, SYMBOLS[:2], end=END)
    fake = FakeYahoo(bars, clock=clock)
    report = provider(fake, clock).fetch(store, SYMBOLS[:2], end="2024-06-29")  # a Saturday
    assert fake.calls == [] and sorted(report.up_to_date) == SYMBOLS[:2] and not report


def test_a_holiday_with_no_bar_is_not_a_failure_for_a_stored_symbol(store, clock):
    bars = {"AAA": history("AAA")}
    provider(FakeYahoo(bars, clock=clock), clock).fetch(store, ["AAA"], end=END)
    holiday = {"AAA": history("AAA").drop(pd.Timestamp("2024-07-01", tz="America/New_York"))}
    report = provider(FakeYahoo(holiday, clock=clock), clock).fetch(store, ["AAA"],
                                                                    end="2024-07-02")
    assert report.failed == {} and report.up_to_date == ["AAA"]


def test_symbols_are_batched_by_their_first_missing_day():
    yahoo = YahooProvider(download=FakeYahoo({}), probe=None, batch=2)
    last = {"CCC": pd.Timestamp("2024-06-20"), "AAA": pd.Timestamp("2024-06-27")}
    batches, current = yahoo.plan(["AAA", "BBB", "CCC", "DDD"], last, start="2024-01-01",
                                  end=END)
    assert batches == [(pd.Timestamp("2024-01-01"), ["BBB", "DDD"]),
                       (pd.Timestamp("2024-06-21"), ["CCC", "AAA"])]
    assert current == []


class Killed(BaseException):
    """Stands for the process being killed in the middle of a download."""


def test_a_killed_fetch_started_again_fetches_only_what_is_missing(tmp_path, clock):
    symbols = [f"S{i:02d}" for i in range(7)]
    bars = {s: history(s) for s in symbols}
    path = tmp_path / "bars.duckdb"
    killer = FakeYahoo(bars, script=[{}, {}, {"raise": Killed()}], clock=clock)
    with BarStore(path, create=True) as store, pytest.raises(Killed):
        provider(killer, clock).fetch(store, symbols, end=END)
    assert killer.fetched() == [symbols[0:2], symbols[2:4], symbols[4:6]]
    fake = FakeYahoo(bars, clock=clock)
    with BarStore(path) as store:
        assert sorted(store.last_dates()) == symbols[:4]
        report = provider(fake, clock).fetch(store, symbols, end=END)
        assert fake.fetched() == [symbols[4:6], symbols[6:]]
        assert sorted(report.written) == symbols[4:] and sorted(report.up_to_date) == symbols[:4]
        for symbol in symbols:
            pd.testing.assert_frame_equal(stored(store, symbol), expected(symbol),
                                          check_freq=False)


# --- offline: fail fast --------------------------------------------------------------------


def test_a_closed_port_is_unreachable_at_once():
    port = free_port()
    began = time.monotonic()
    with pytest.raises(ProviderError, match=rf"unreachable \(127.0.0.1:{port}: connection "
                                            r"refused\); check the network"):
        check_reachable(("127.0.0.1", port), timeout=2.0)
    assert time.monotonic() - began < 2.0


def test_an_address_that_never_answers_fails_within_the_deadline():
    began = time.monotonic()
    with pytest.raises(ProviderError, match=r"unreachable \(192.0.2.1:443: "):
        check_reachable(("192.0.2.1", 443), timeout=0.5)  # TEST-NET-1: routed nowhere
    assert time.monotonic() - began < 2.0


def test_a_listening_port_is_reachable():
    with socket.create_server(("127.0.0.1", 0)) as server:
        check_reachable(server.getsockname()[:2], timeout=2.0)


def test_the_probe_honours_an_https_proxy(monkeypatch):
    port = free_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderError, match=rf"127.0.0.1:{port}: connection refused"):
        check_reachable(timeout=2.0)


def test_an_unreachable_yahoo_fails_the_fetch_before_any_request(store, clock):
    fake = FakeYahoo({"AAA": history("AAA")}, clock=clock)
    port = free_port()
    yahoo = YahooProvider(download=fake, clock=clock, sleep=clock.sleep,
                          probe=lambda: check_reachable(("127.0.0.1", port), timeout=1.0))
    with pytest.raises(ProviderError, match="unreachable"):
        yahoo.fetch(store, ["AAA"], end=END)
    assert fake.calls == [] and store.last_dates() == {}


def test_a_batch_that_cannot_connect_at_all_stops_the_fetch(store, clock):
    dns = ("DNSError('Failed to perform, curl: (6) Could not resolve host: "
           "query2.finance.yahoo.com.')")
    fake = FakeYahoo({s: history(s) for s in SYMBOLS}, clock=clock,
                     script=[{}] + [{"fail": {"CCC": dns, "DDD": dns}}] * 2)
    with pytest.raises(ProviderError, match=r"stopped answering at batch 2 of 3 .* 2 symbols "
                                            r"were stored; run the same command again"):
        provider(fake, clock, attempts=2).fetch(store, SYMBOLS, end=END)
    assert fake.fetched() == [["AAA", "BBB"], ["CCC", "DDD"], ["CCC", "DDD"]]
    assert sorted(store.last_dates()) == ["AAA", "BBB"]


def test_without_yfinance_the_provider_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "yfinance", None)
    with pytest.raises(ProviderError,
                       match=r"needs yfinance.*pip install 'technic-panel\[yahoo\]'"):
        YahooProvider()


@pytest.mark.parametrize("options, message", [
    ({"rate": 0}, "YahooProvider.rate must be > 0 requests a second, not 0"),
    ({"batch": 0}, r"YahooProvider.batch must be an integer in \[1, 1000\], not 0"),
    ({"attempts": 0}, "YahooProvider.attempts must be an integer >= 1, not 0"),
])
def test_bad_settings_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        YahooProvider(download=FakeYahoo({}), **options)


def test_a_date_that_is_none_is_refused():
    with pytest.raises(ValueError, match="'yesterday-ish' is not a date; give one as YYYY-MM-DD"):
        YahooProvider(download=FakeYahoo({}), probe=None).plan(["AAA"], {}, start="yesterday-ish")
