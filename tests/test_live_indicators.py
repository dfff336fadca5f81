"""IndicatorState: TA-Lib's stream handles give, bar by bar, what the batch computation gives.

Every column of ``latest_indicators`` is compared, per indicator, on the same bars: the
history plus each closed bar (``update``) and plus a forming bar (``peek``), to 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import technic_panel.live.indicators as live_indicators
from technic_panel.data.base import Bars, DataError
from technic_panel.data.synthetic import SyntheticSource
from technic_panel.engine.indicators import YEAR, InsufficientBars, latest_indicators
from technic_panel.live.feeds import Bar
from technic_panel.live.indicators import IndicatorState
from technic_panel.vocabulary import INDICATOR_COLUMNS

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    return SyntheticSource(12, seed=7)


def bar_at(bars: Bars, i: int, symbol: str = "S", closed: bool = True) -> Bar:
    return Bar(symbol, int(bars.dates[i].astype("datetime64[ns]").astype(np.int64)),
               float(bars.open[i]), float(bars.high[i]), float(bars.low[i]),
               float(bars.close[i]), float(bars.volume[i]), closed, 0)


def head(bars: Bars, count: int) -> Bars:
    return Bars(*(column[:count] for column in bars))


def with_bar(bars: Bars, bar: Bar) -> Bars:
    values = (np.datetime64(bar.time, "ns"), bar.open, bar.high, bar.low, bar.close, bar.volume)
    return Bars(*(np.append(column, value) for column, value in zip(bars, values, strict=True)))


def forming(bars: Bars, i: int, symbol: str = "S") -> Bar:
    """Bar ``i`` half way through: its open, a close between open and close, half its volume."""
    bar = bar_at(bars, i, symbol, closed=False)
    close = (bar.open + bar.close) / 2
    return bar._replace(close=close, high=max(bar.open, close), low=min(bar.open, close),
                        volume=bar.volume / 2)


def assert_same(live: dict[str, float], batch: dict[str, float]) -> None:
    assert list(live) == list(INDICATOR_COLUMNS) == list(batch)
    off = {name: (live[name], batch[name]) for name in batch
           if not math.isclose(live[name], batch[name], rel_tol=TOLERANCE, abs_tol=TOLERANCE)}
    assert off == {}


@pytest.mark.parametrize("history", [YEAR + 60, 210], ids=["a year or more", "under a year"])
def test_update_and_peek_equal_the_batch_computation_per_indicator(source, history):
    for symbol in source.universe()["symbol"][:4]:
        bars = source.bars(symbol)
        state = IndicatorState(symbol, head(bars, history))
        for i in range(history, history + 60):
            half = forming(bars, i, symbol)
            assert_same(state.peek(half), latest_indicators(with_bar(head(bars, i), half)))
            assert_same(state.update(bar_at(bars, i, symbol)), latest_indicators(head(bars, i + 1)))
        assert state.bars == history + 60


def test_peek_commits_nothing(source):
    bars = source.bars(source.universe()["symbol"][0])
    state, twin = IndicatorState("S", head(bars, 300)), IndicatorState("S", head(bars, 300))
    for _ in range(5):
        state.peek(forming(bars, 300))
    assert state.update(bar_at(bars, 300)) == twin.update(bar_at(bars, 300))


def test_shifting_every_price_by_a_factor_keeps_rsi_and_the_percentages(source):
    bars = source.bars(source.universe()["symbol"][1])
    scaled = Bars(bars.dates, *(column * 3.0 for column in bars[1:5]), bars.volume)
    plain, times3 = IndicatorState("S", head(bars, 300)), IndicatorState("S", head(scaled, 300))
    row, row3 = plain.update(bar_at(bars, 300)), times3.update(bar_at(scaled, 300))
    for name in ("rsi_14", "change_pct", "atr_pct", "roc_21", "bb_pct_b", "range_pos_52w"):
        assert math.isclose(row[name], row3[name], rel_tol=1e-9, abs_tol=1e-9), name


def test_a_short_history_is_refused_as_the_batch_refuses_it(source):
    bars = source.bars(source.universe()["symbol"][0])
    with pytest.raises(InsufficientBars, match="S has 199 bars; the indicators need at least 200"):
        IndicatorState("S", head(bars, 199))


def test_a_bar_that_is_not_finite_is_an_error_and_changes_nothing(source):
    bars = source.bars(source.universe()["symbol"][0])
    state, twin = IndicatorState("S", head(bars, 300)), IndicatorState("S", head(bars, 300))
    with pytest.raises(DataError, match=r"^S: the bar of 20\d\d-\d\d-\d\dT.*Z is not finite"):
        state.update(bar_at(bars, 300)._replace(close=float("nan")))
    assert state.bars == 300
    assert state.update(bar_at(bars, 300)) == twin.update(bar_at(bars, 300))


def test_no_volume_in_21_bars_is_an_error_as_in_the_batch(source):
    bars = source.bars(source.universe()["symbol"][0])
    silent = Bars(bars.dates, *bars[1:5], np.where(np.arange(len(bars)) >= 280, 0.0, bars.volume))
    state = IndicatorState("S", head(silent, 300))
    with pytest.raises(DataError, match="no volume in its last 21 bars"):
        latest_indicators(head(silent, 301))
    with pytest.raises(DataError, match="no volume in its last 21 bars"):
        state.update(bar_at(silent, 300))
    assert state.bars == 301  # the bar happened: it is history, only its row cannot be scored
    path = head(silent, 301)
    for i in range(301, 330):  # trading again: the state agrees with the batch, bar by bar
        bar = bar_at(bars, i)
        path = with_bar(path, bar)
        assert_agrees(state, path, bar)


def assert_agrees(state: IndicatorState, path: Bars, bar: Bar) -> None:
    """``state.update(bar)`` gives the batch row of ``path`` (history + bar), or both raise."""
    try:
        expected = latest_indicators(path)
    except DataError:
        with pytest.raises(DataError):
            state.update(bar)
    else:
        assert_same(state.update(bar), expected)


def test_indicators_that_are_not_finite_at_a_bar_are_an_error_naming_them(source):
    bars = source.bars(source.universe()["symbol"][0])
    state = IndicatorState("S", head(bars, 300))
    flat = bar_at(bars, 300)._replace(open=0.0, high=0.0, low=0.0, close=0.0)
    with pytest.raises(DataError, match=r"atr_pct.*not finite at the bar of"):
        state.peek(flat)


def test_a_column_without_a_handle_is_recomputed_on_the_window(source, monkeypatch):
    monkeypatch.setattr(live_indicators, "_WITHOUT_HANDLE", ("roc_126", "sma_200"))
    bars = source.bars(source.universe()["symbol"][2])
    state = IndicatorState("S", head(bars, 300))
    row = state.update(bar_at(bars, 300))
    window = head(bars, 301)
    window = Bars(*(column[-live_indicators.WINDOW:] for column in window))
    expected = latest_indicators(window)
    assert row["roc_126"] == expected["roc_126"] and row["sma_200"] == expected["sma_200"]
    assert_same(row, latest_indicators(head(bars, 301)))  # finite windows agree with all bars


def test_every_column_has_a_handle_today():
    assert live_indicators._WITHOUT_HANDLE == ()


@settings(deadline=None, max_examples=40)
@given(moves=st.lists(st.floats(-0.08, 0.08), min_size=1, max_size=30),
       volumes=st.lists(st.floats(0.0, 5e6), min_size=30, max_size=30),
       history=st.integers(200, 320))
def test_property_any_finite_path_scores_as_the_batch_does(moves, volumes, history):
    bars = SyntheticSource(3, seed=11).bars(SyntheticSource(3, seed=11).universe()["symbol"][0])
    state = IndicatorState("S", head(bars, history))
    path = head(bars, history)
    close = float(path.close[-1])
    for i, (move, volume) in enumerate(zip(moves, volumes, strict=False)):
        new = close * math.exp(move)
        bar = Bar("S", int(path.dates[-1].astype("datetime64[ns]").astype(np.int64)) + i + 1,
                  close, max(close, new) * 1.001, min(close, new) * 0.999, new, volume, True, 0)
        path, close = with_bar(path, bar), new
        assert_agrees(state, path, bar)


@pytest.mark.parametrize("history", [200, 201, 300])
def test_opened_gives_the_state_and_the_batch_row_of_the_history(source, history):
    bars = head(source.bars(source.universe()["symbol"][3]), history)
    state, row = IndicatorState.opened("S", bars)
    assert_same(row, latest_indicators(bars))
    assert state.bars == history
    twin = IndicatorState("S", bars)
    nxt = bar_at(source.bars(source.universe()["symbol"][3]), history)
    assert state.update(nxt) == twin.update(nxt)
