"""Indicators checked against independent references on real prices.

Every TA-Lib indicator is compared with the ``ta`` package (pure pandas) and
every derived column with a numpy reference, over the whole range where both
are defined after a warm-up, on the split-adjusted sample prices.

Tolerances. SMA, Bollinger (population std, ``ddof=0`` in both) and ROC are
the same arithmetic in both libraries: ``rtol=1e-9``. The recursive ones (EMA,
MACD, RSI, ATR, ADX) differ only in how they seed the recursion (TA-Lib seeds
EMA/Wilder averages with an SMA of the first window, ``ta`` with the first
value or ``ewm(adjust=False)``), and the seed's weight decays like
``(1 - alpha) ** n``: for Wilder's 1/14 smoothing that is 1e-9 after ~280 bars,
and ADX smooths twice. So they are compared from bar :data:`WARM_UP` = 300 on,
with ``rtol=1e-6``; on the AAPL sample the observed worst case there is 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import ta
from bokeh.sampledata import stocks
from numpy.lib.stride_tricks import sliding_window_view

from technic_panel.data.base import Bars, DataError
from technic_panel.data.sample import COMPANIES, SampleSource
from technic_panel.engine.indicators import (
    INDICATOR_COLUMNS,
    MIN_BARS,
    YEAR,
    InsufficientBars,
    indicator_frame,
    indicator_series,
    latest_indicators,
)

WARM_UP = 300
"""Bars skipped before comparing recursive (EMA / Wilder-smoothed) indicators."""

LONG = [s for s in ("AAPL", "GOOG", "IBM", "MSFT") if hasattr(stocks, s)]
"""Sample symbols with well over WARM_UP bars (FB, where shipped, has fewer than 200)."""

SCALE_INVARIANT = (
    "rsi_14", "adx_14", "atr_pct", "roc_5", "roc_21", "roc_63", "roc_126", "bb_pct_b",
    "range_pos_52w", "change_pct", "dist_high_20", "dist_high_52w", "obv_slope", "rel_volume",
    "stretch_atr",
)


@pytest.fixture(scope="module")
def source() -> SampleSource:
    return SampleSource()


@pytest.fixture(scope="module", params=LONG)
def case(request, source: SampleSource) -> tuple[str, Bars, dict[str, np.ndarray]]:
    bars = source.bars(request.param)
    return request.param, bars, indicator_series(bars, request.param)


def frame_of(bars: Bars) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    return (pd.Series(bars.high), pd.Series(bars.low), pd.Series(bars.close),
            pd.Series(bars.volume))


def assert_matches(ours: np.ndarray, reference, *, start: int, rtol: float,
                   atol: float = 0.0) -> None:
    """``ours`` equals ``reference`` from ``start`` to the end, and neither is NaN there."""
    ours = np.asarray(ours, dtype=float)[start:]
    reference = np.asarray(reference, dtype=float)[start:]
    assert len(ours) > 100
    assert np.isfinite(ours).all() and np.isfinite(reference).all()
    np.testing.assert_allclose(ours, reference, rtol=rtol, atol=atol)


def rolling(values: np.ndarray, window: int) -> np.ndarray:
    """Windows ending at each bar, padded with NaN rows before the first full window."""
    full = sliding_window_view(values, window)
    pad = np.full((window - 1, window), np.nan)
    return np.vstack([pad, full])


def scaled(bars: Bars, factor: float) -> Bars:
    return Bars(bars.dates, bars.open * factor, bars.high * factor, bars.low * factor,
                bars.close * factor, bars.volume.copy())


def with_nan(bars: Bars, column: str, index: int) -> Bars:
    arrays = bars._asdict()
    arrays[column] = arrays[column].copy()
    arrays[column][index] = np.nan
    return Bars(**arrays)


# --- TA-Lib indicators against the ``ta`` package ---------------------------------------------


@pytest.mark.parametrize("window", [20, 50, 200])
def test_sma_matches_ta(case, window: int):
    _, bars, series = case
    _, _, close, _ = frame_of(bars)
    reference = ta.trend.SMAIndicator(close, window).sma_indicator()
    assert np.isnan(series[f"sma_{window}"][: window - 1]).all()
    assert_matches(series[f"sma_{window}"], reference, start=window - 1, rtol=1e-9)


def test_ema_matches_ta_after_warm_up(case):
    _, bars, series = case
    _, _, close, _ = frame_of(bars)
    reference = ta.trend.EMAIndicator(close, 20).ema_indicator()
    assert_matches(series["ema_20"], reference, start=WARM_UP, rtol=1e-6)


def test_rsi_matches_ta_after_warm_up(case):
    _, bars, series = case
    _, _, close, _ = frame_of(bars)
    reference = ta.momentum.RSIIndicator(close, 14).rsi()
    assert_matches(series["rsi_14"], reference, start=WARM_UP, rtol=1e-6)
    assert ((series["rsi_14"][14:] >= 0) & (series["rsi_14"][14:] <= 100)).all()


def test_macd_matches_ta_after_warm_up(case):
    _, bars, series = case
    _, _, close, _ = frame_of(bars)
    macd = ta.trend.MACD(close, window_slow=26, window_fast=12, window_sign=9)
    # The histogram crosses 0, where a relative tolerance means nothing: allow 1e-9 of price.
    atol = 1e-9 * float(np.median(bars.close))
    assert_matches(series["macd"], macd.macd(), start=WARM_UP, rtol=1e-6, atol=atol)
    assert_matches(series["macd_signal"], macd.macd_signal(), start=WARM_UP, rtol=1e-6,
                   atol=atol)
    assert_matches(series["macd_hist"], macd.macd_diff(), start=WARM_UP, rtol=1e-6, atol=atol)
    np.testing.assert_allclose(series["macd_hist"][33:],
                               series["macd"][33:] - series["macd_signal"][33:], atol=1e-12)


def test_atr_matches_ta_after_warm_up(case):
    _, bars, series = case
    high, low, close, _ = frame_of(bars)
    reference = ta.volatility.AverageTrueRange(high, low, close, 14).average_true_range()
    assert_matches(series["atr_14"], reference, start=WARM_UP, rtol=1e-6)
    assert_matches(series["atr_pct"], 100.0 * reference / close, start=WARM_UP, rtol=1e-6)


def test_adx_matches_ta_after_warm_up(case):
    _, bars, series = case
    high, low, close, _ = frame_of(bars)
    reference = ta.trend.ADXIndicator(high, low, close, 14).adx()
    assert_matches(series["adx_14"], reference, start=WARM_UP, rtol=1e-6)
    assert np.isnan(series["adx_14"][:27]).all()  # TA-Lib's ADX look-back is 2 * 14 - 1


def test_bollinger_bands_match_ta(case):
    _, bars, series = case
    _, _, close, _ = frame_of(bars)
    bands = ta.volatility.BollingerBands(close, 20, 2)  # population std (ddof=0), as TA-Lib
    assert_matches(series["bb_upper"], bands.bollinger_hband(), start=19, rtol=1e-9)
    assert_matches(series["bb_middle"], bands.bollinger_mavg(), start=19, rtol=1e-9)
    assert_matches(series["bb_lower"], bands.bollinger_lband(), start=19, rtol=1e-9)
    assert_matches(series["bb_pct_b"], bands.bollinger_pband(), start=19, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(series["bb_middle"], series["sma_20"])


@pytest.mark.parametrize("window", [5, 21, 63, 126])
def test_roc_matches_ta(case, window: int):
    _, bars, series = case
    _, _, close, _ = frame_of(bars)
    reference = ta.momentum.ROCIndicator(close, window).roc()
    assert_matches(series[f"roc_{window}"], reference, start=window, rtol=1e-9, atol=1e-9)


# --- Derived columns against numpy references -------------------------------------------------


def test_close_volume_and_change_pct(case):
    _, bars, series = case
    np.testing.assert_array_equal(series["close"], bars.close)
    np.testing.assert_array_equal(series["volume"], bars.volume)
    reference = 100.0 * (bars.close[1:] / bars.close[:-1] - 1.0)
    assert np.isnan(series["change_pct"][0])
    assert_matches(series["change_pct"][1:], reference, start=0, rtol=1e-9, atol=1e-9)


def test_rel_volume_is_today_over_the_20_days_before(case):
    _, bars, series = case
    v = bars.volume
    before = np.concatenate([[np.nan], rolling(v, 20).mean(axis=1)[:-1]])  # v[t-20:t]
    assert_matches(series["rel_volume"], v / before, start=20, rtol=1e-9)
    t = len(v) - 1
    assert series["rel_volume"][t] == pytest.approx(v[t] / v[t - 20:t].mean(), rel=1e-9)


def test_dist_high_20_and_52w(case):
    _, bars, series = case
    c, h = bars.close, bars.high
    high_20 = rolling(h, 20).max(axis=1)
    high_52w = rolling(h, YEAR).max(axis=1)
    assert_matches(series["dist_high_20"], 100.0 * (c / high_20 - 1.0), start=19,
                   rtol=1e-9, atol=1e-9)
    assert_matches(series["dist_high_52w"], 100.0 * (c / high_52w - 1.0), start=YEAR - 1,
                   rtol=1e-9, atol=1e-9)
    assert (series["dist_high_52w"][YEAR:] <= 0).all()


def test_range_pos_52w(case):
    _, bars, series = case
    highs, lows = rolling(bars.high, YEAR).max(axis=1), rolling(bars.low, YEAR).min(axis=1)
    reference = (bars.close - lows) / (highs - lows)
    assert_matches(series["range_pos_52w"], reference, start=YEAR - 1, rtol=1e-9, atol=1e-12)
    pos = series["range_pos_52w"][YEAR:]
    assert ((pos >= 0) & (pos <= 1)).all()


def test_high_and_low_52w_are_the_years_extremes(case):
    _, bars, series = case
    assert_matches(series["high_52w"], rolling(bars.high, YEAR).max(axis=1), start=YEAR - 1,
                   rtol=0)
    assert_matches(series["low_52w"], rolling(bars.low, YEAR).min(axis=1), start=YEAR - 1,
                   rtol=0)


def test_stretch_atr_is_the_distance_from_the_20_day_mean_in_atrs(case):
    _, bars, series = case
    _, _, close, _ = frame_of(bars)
    high, low, _, _ = frame_of(bars)
    atr = ta.volatility.AverageTrueRange(high, low, close, 14).average_true_range()
    reference = (close - close.rolling(20).mean()) / atr
    assert_matches(series["stretch_atr"], reference, start=WARM_UP, rtol=1e-6, atol=1e-9)


def test_avg_dollar_volume_20(case):
    _, bars, series = case
    reference = rolling(bars.close * bars.volume, 20).mean(axis=1)
    assert_matches(series["avg_dollar_volume_20"], reference, start=19, rtol=1e-9)


def test_obv_slope_is_the_regression_slope_over_mean_volume(case):
    _, bars, series = case
    c, v = bars.close, bars.volume
    obv = np.concatenate([[0.0], np.cumsum(np.sign(np.diff(c)) * v[1:])])  # offset-free
    windows = rolling(obv, 20)
    x = np.arange(20) - 9.5
    slope = (windows - windows.mean(axis=1, keepdims=True)) @ x / (x @ x)
    reference = slope / rolling(v, 20).mean(axis=1)
    assert_matches(series["obv_slope"], reference, start=19, rtol=1e-6, atol=1e-9)
    last = latest_indicators(bars)["obv_slope"]
    expected = np.polyfit(np.arange(20), obv[-20:], 1)[0] / v[-20:].mean()
    assert last == pytest.approx(expected, rel=1e-6, abs=1e-9)


# --- The latest row, the frame and the refusals -----------------------------------------------


def test_latest_indicators_is_the_last_value_of_every_series(case):
    symbol, bars, series = case
    row = latest_indicators(bars, symbol)
    assert list(row) == list(INDICATOR_COLUMNS)
    for name in INDICATOR_COLUMNS:
        assert type(row[name]) is float
        assert math.isfinite(row[name]), name
        assert row[name] == pytest.approx(series[name][-1], rel=1e-12, abs=1e-12), name


def test_indicator_frame_has_every_column_and_its_last_row_is_latest(source: SampleSource):
    bars = source.bars(LONG[0])
    frame = indicator_frame(bars, LONG[0])
    assert set(INDICATOR_COLUMNS) <= set(frame.columns)
    assert {"open", "high", "low", "close", "volume"} <= set(frame.columns)
    assert len(frame) == len(bars)
    assert frame.index.name == "date"
    np.testing.assert_array_equal(frame.index.to_numpy(), bars.dates)
    last = frame.iloc[-1]
    for name, value in latest_indicators(bars, LONG[0]).items():
        assert last[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
    np.testing.assert_allclose(frame["rsi_14"].to_numpy(), indicator_series(bars)["rsi_14"],
                               equal_nan=True)


@pytest.mark.parametrize("n", [1, 150, MIN_BARS - 1])
def test_too_few_bars_is_insufficient_bars_saying_how_many(source: SampleSource, n: int):
    bars = Bars(*(array[-n:] for array in source.bars(LONG[0])))
    for compute in (latest_indicators, indicator_series, indicator_frame):
        with pytest.raises(InsufficientBars) as info:
            compute(bars, "SHORT")
        message = str(info.value)
        assert "SHORT" in message
        assert str(n) in message and str(MIN_BARS) in message
    assert issubclass(InsufficientBars, DataError)


def test_exactly_min_bars_is_enough(source: SampleSource):
    bars = Bars(*(array[-MIN_BARS:] for array in source.bars(LONG[0])))
    row = latest_indicators(bars)
    assert all(math.isfinite(value) for value in row.values())


@pytest.mark.skipif(not hasattr(stocks, "FB"), reason="this bokeh-sampledata has no FB")
def test_fb_sample_is_too_short(source: SampleSource):
    n = len(source.bars("FB"))
    assert n < MIN_BARS and "FB" in COMPANIES
    with pytest.raises(InsufficientBars, match=f"FB has {n} bars.*{MIN_BARS}"):
        latest_indicators(source.bars("FB"), "FB")


@pytest.mark.parametrize(("column", "index"), [
    ("close", -1), ("close", -100), ("close", 1000), ("high", -1), ("low", -5),
    ("volume", -1), ("volume", -10),
])
def test_nan_prices_are_a_data_error(source: SampleSource, column: str, index: int):
    bars = with_nan(source.bars(LONG[0]), column, index)
    with pytest.raises(DataError, match="not finite") as info:
        latest_indicators(bars, "GAPPY")
    assert "GAPPY" in str(info.value)
    assert not isinstance(info.value, InsufficientBars)


def test_flat_series_is_a_data_error(source: SampleSource):
    bars = source.bars(LONG[0])
    flat = np.full(len(bars), 10.0)
    with pytest.raises(DataError, match="not finite"):
        latest_indicators(Bars(bars.dates, flat, flat, flat, flat, bars.volume), "FLAT")




def test_one_zero_volume_day_is_scored(source: SampleSource):
    bars = source.bars(LONG[0])
    volume = bars.volume.copy()
    volume[-1] = 0.0
    row = latest_indicators(Bars(bars.dates, bars.open, bars.high, bars.low, bars.close, volume))
    assert row["rel_volume"] == 0.0 and row["volume"] == 0.0


def test_a_month_without_volume_is_a_data_error(source: SampleSource):
    bars = source.bars(LONG[0])
    volume = bars.volume.copy()
    volume[-25:] = 0.0
    with pytest.raises(DataError, match="no volume in its last 21 bars"):
        latest_indicators(Bars(bars.dates, bars.open, bars.high, bars.low, bars.close, volume))


# --- Invariance -----------------------------------------------------------------------------


def test_scaling_prices_leaves_ratios_unchanged(case):
    symbol, bars, series = case
    factor = 7.3
    moved = indicator_series(scaled(bars, factor), symbol)
    for name in SCALE_INVARIANT:
        np.testing.assert_allclose(moved[name][WARM_UP:], series[name][WARM_UP:], rtol=1e-6,
                                   atol=1e-9, err_msg=name)
    for name in ("atr_14", "sma_200", "ema_20", "bb_upper", "macd", "high_52w", "low_52w"):
        np.testing.assert_allclose(moved[name][WARM_UP:], factor * series[name][WARM_UP:],
                                   rtol=1e-6, atol=1e-9, err_msg=name)
    latest, latest_moved = latest_indicators(bars), latest_indicators(scaled(bars, factor))
    for name in SCALE_INVARIANT:
        assert latest_moved[name] == pytest.approx(latest[name], rel=1e-6, abs=1e-9), name


def test_indicators_use_only_the_past(case):
    """Truncating the history changes nothing up to the cut (after the warm-up)."""
    symbol, bars, series = case
    cut = len(bars) - 250
    head = indicator_series(Bars(*(array[:cut] for array in bars)), symbol)
    for name in INDICATOR_COLUMNS:
        np.testing.assert_allclose(head[name][WARM_UP:], series[name][WARM_UP:cut], rtol=1e-9,
                                   atol=1e-12, err_msg=name)
