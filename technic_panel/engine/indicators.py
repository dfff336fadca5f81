"""Technical indicators of one symbol's daily bars, computed with TA-Lib.

:func:`indicator_series` gives every indicator as a full series (for charts);
:func:`latest_indicators` gives the last value of each, the row a scan scores.
Both run the same TA-Lib calls; a symbol with fewer than :data:`MIN_BARS` bars
is refused with an :class:`InsufficientBars` error rather than scored on NaNs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import talib

from technic_panel.data.base import Bars, DataError
from technic_panel.vocabulary import INDICATOR_COLUMNS

MIN_BARS = 200
"""Bars needed before every indicator has a value (SMA 200 is the longest look-back)."""

YEAR = 252
"""Trading days in a year: the 52-week window."""

class InsufficientBars(DataError):
    """A symbol has too few bars for the indicators' look-back."""


class _Full:
    """View of whole series: indicators for every bar (charts)."""

    @staticmethod
    def at(series: np.ndarray) -> np.ndarray:
        return series

    @staticmethod
    def prev(series: np.ndarray) -> np.ndarray:
        return np.concatenate(([np.nan], series[:-1]))


class _Last:
    """View of the last bar only: the scan's hot path does its arithmetic on Python floats."""

    @staticmethod
    def at(series: np.ndarray) -> float:
        return series.item(-1)

    @staticmethod
    def prev(series: np.ndarray) -> float:
        return series.item(-2)


def _compute(bars: Bars, symbol: str, view: type[_Full] | type[_Last]) -> dict:
    """Run the TA-Lib calls on the whole series, then derive the columns through ``view``."""
    n = len(bars)
    if n < MIN_BARS:
        raise InsufficientBars(f"{symbol} has {n} bars; the indicators need at least {MIN_BARS}")
    h, low, c, v = bars.high, bars.low, bars.close, bars.volume
    if not (v[-21:] > 0).any():
        raise DataError(f"{symbol} has no volume in its last 21 bars; the volume indicators "
                        "need traded days (a halted or delisted symbol?)")
    at, prev = view.at, view.prev
    mean_volume = talib.SMA(v, 20)
    year = min(YEAR, n)
    values = {
        "rsi": at(talib.RSI(c, 14)), "macd": tuple(map(at, talib.MACD(c, 12, 26, 9))),
        "bbands": tuple(map(at, talib.BBANDS(c, 20, 2.0, 2.0))),
        "sma_50": at(talib.SMA(c, 50)), "sma_200": at(talib.SMA(c, 200)),
        "ema_20": at(talib.EMA(c, 20)), "roc_5": at(talib.ROC(c, 5)),
        "roc_21": at(talib.ROC(c, 21)), "roc_63": at(talib.ROC(c, 63)),
        "roc_126": at(talib.ROC(c, 126)), "atr": at(talib.ATR(h, low, c, 14)),
        "adx": at(talib.ADX(h, low, c, 14)), "mean_volume": at(mean_volume),
        "prev_mean_volume": prev(mean_volume), "dollar_volume": at(talib.SMA(c * v, 20)),
        "high_20": at(talib.MAX(h, 20)),
        "obv_slope": at(talib.LINEARREG_SLOPE(talib.OBV(c, v), 20)),
        "year": (at(talib.MAX(h, year)), at(talib.MIN(low, year))),
    }
    if view is _Last:
        return latest_columns(values, _Last.at(c), _Last.at(v), _Last.prev(c))
    with np.errstate(divide="ignore", invalid="ignore"):
        return derived_columns(values, c, v, prev(c))


def derived_columns(values: Mapping[str, Any], close: Any, volume: Any,
                    previous_close: Any) -> dict[str, Any]:
    """Return :data:`INDICATOR_COLUMNS` from TA-Lib's values at a bar and the bar itself.

    ``values`` holds each TA-Lib call's value by name (the MACD, Bollinger and 52-week
    ones as tuples); they and the prices are whole series (charts), numpy or Python
    floats (the last bar, in a scan or a live update): the one arithmetic for all.
    """
    macd, macd_signal, macd_hist = values["macd"]
    up, middle, down = values["bbands"]
    atr = values["atr"]
    high_52w, low_52w = values["year"]
    return {
        "close": close, "change_pct": 100.0 * (close / previous_close - 1.0),
        "volume": volume, "rsi_14": values["rsi"],
        "macd": macd, "macd_signal": macd_signal, "macd_hist": macd_hist,
        "sma_20": middle, "sma_50": values["sma_50"], "sma_200": values["sma_200"],
        "ema_20": values["ema_20"], "atr_14": atr, "atr_pct": 100.0 * atr / close,
        "adx_14": values["adx"], "bb_upper": up, "bb_middle": middle, "bb_lower": down,
        "bb_pct_b": (close - down) / (up - down),
        "obv_slope": values["obv_slope"] / values["mean_volume"],
        "roc_5": values["roc_5"], "roc_21": values["roc_21"], "roc_63": values["roc_63"],
        "roc_126": values["roc_126"],
        "dist_high_20": 100.0 * (close / values["high_20"] - 1.0),
        "dist_high_52w": 100.0 * (close / high_52w - 1.0),
        "range_pos_52w": (close - low_52w) / (high_52w - low_52w),
        "high_52w": high_52w, "low_52w": low_52w,
        "stretch_atr": (close - middle) / atr,
        "rel_volume": volume / values["prev_mean_volume"],
        "avg_dollar_volume_20": values["dollar_volume"],
    }


def latest_columns(values: Mapping[str, Any], close: float, volume: float,
                   previous_close: float) -> dict[str, float]:
    """Return :func:`derived_columns` at one bar, as Python floats.

    Python's float arithmetic is numpy's, except that it raises on a zero denominator;
    then the columns are derived again on numpy scalars, as on series: inf or NaN (which
    callers refuse), no exception.
    """
    try:
        return derived_columns(values, close, volume, previous_close)
    except ZeroDivisionError:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            scalars = {name: np.float64(value) if isinstance(value, float) else
                       tuple(map(np.float64, value)) for name, value in values.items()}
            row = derived_columns(scalars, np.float64(close), np.float64(volume),
                                  np.float64(previous_close))
        return {name: float(value) for name, value in row.items()}


def indicator_series(bars: Bars, symbol: str = "symbol") -> dict[str, np.ndarray]:
    """Return every indicator of :data:`INDICATOR_COLUMNS` as a full-length float64 array."""
    return _compute(bars, symbol, _Full)


def latest_indicators(bars: Bars, symbol: str = "symbol") -> dict[str, float]:
    """Return the last value of every indicator as plain floats; raise if any is not finite.

    A non-finite value means the data cannot be scored (NaN prices, a flat
    series, zero volume): it becomes that symbol's error, never a NaN rating.
    """
    row = _compute(bars, symbol, _Last)
    if math.isfinite(sum(row.values())):  # a NaN or infinity makes the sum one
        return row
    bad = [name for name, value in row.items() if not math.isfinite(value)]
    if bad:
        raise DataError(f"{symbol}: {', '.join(bad)} not finite on the last bar "
                        "(missing prices, a flat series or zero volume?)")
    return row


def indicator_frame(bars: Bars, symbol: str = "symbol") -> pd.DataFrame:
    """Return the bars and all indicator series as one DataFrame indexed by date (for charts)."""
    frame = bars.to_frame()
    series = indicator_series(bars, symbol)
    for name in INDICATOR_COLUMNS:
        if name not in frame:
            frame[name] = series[name]
    return frame
