"""Technical indicators of one symbol's daily bars, computed with TA-Lib.

:func:`indicator_series` gives every indicator as a full series (for charts);
:func:`latest_indicators` gives the last value of each, the row a scan scores.
Both run the same TA-Lib calls; a symbol with fewer than :data:`MIN_BARS` bars
is refused with an :class:`InsufficientBars` error rather than scored on NaNs.
"""

from __future__ import annotations

import math

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
    """View of the last bar only: the scan's hot path does its arithmetic on scalars."""

    @staticmethod
    def at(series: np.ndarray) -> np.float64:
        return series[-1]

    @staticmethod
    def prev(series: np.ndarray) -> np.float64:
        return series[-2]


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
    macd, macd_signal, macd_hist = talib.MACD(c, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0)
    atr = at(talib.ATR(h, low, c, 14))
    mean_volume = talib.SMA(v, 20)
    year = min(YEAR, n)
    high_52w, low_52w = at(talib.MAX(h, year)), at(talib.MIN(low, year))
    close, up, down = at(c), at(upper), at(lower)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "close": close, "change_pct": 100.0 * (close / prev(c) - 1.0), "volume": at(v),
            "rsi_14": at(talib.RSI(c, 14)),
            "macd": at(macd), "macd_signal": at(macd_signal), "macd_hist": at(macd_hist),
            "sma_20": at(middle), "sma_50": at(talib.SMA(c, 50)),
            "sma_200": at(talib.SMA(c, 200)), "ema_20": at(talib.EMA(c, 20)),
            "atr_14": atr, "atr_pct": 100.0 * atr / close,
            "adx_14": at(talib.ADX(h, low, c, 14)),
            "bb_upper": up, "bb_middle": at(middle), "bb_lower": down,
            "bb_pct_b": (close - down) / (up - down),
            "obv_slope": at(talib.LINEARREG_SLOPE(talib.OBV(c, v), 20)) / at(mean_volume),
            "roc_5": at(talib.ROC(c, 5)), "roc_21": at(talib.ROC(c, 21)),
            "roc_63": at(talib.ROC(c, 63)), "roc_126": at(talib.ROC(c, 126)),
            "dist_high_20": 100.0 * (close / at(talib.MAX(h, 20)) - 1.0),
            "dist_high_52w": 100.0 * (close / high_52w - 1.0),
            "range_pos_52w": (close - low_52w) / (high_52w - low_52w),
            "high_52w": high_52w, "low_52w": low_52w,
            "stretch_atr": (close - at(middle)) / atr,
            "rel_volume": at(v) / prev(mean_volume),
            "avg_dollar_volume_20": at(talib.SMA(c * v, 20)),
        }


def indicator_series(bars: Bars, symbol: str = "symbol") -> dict[str, np.ndarray]:
    """Return every indicator of :data:`INDICATOR_COLUMNS` as a full-length float64 array."""
    return _compute(bars, symbol, _Full)


def latest_indicators(bars: Bars, symbol: str = "symbol") -> dict[str, float]:
    """Return the last value of every indicator as plain floats; raise if any is not finite.

    A non-finite value means the data cannot be scored (NaN prices, a flat
    series, zero volume): it becomes that symbol's error, never a NaN rating.
    """
    row = {name: float(value) for name, value in _compute(bars, symbol, _Last).items()}
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
