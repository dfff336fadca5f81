"""One symbol's indicators kept current bar by bar, with TA-Lib's streaming API.

:class:`IndicatorState` opens a ``talib.stream`` handle on the symbol's history for every
TA-Lib call of :mod:`technic_panel.engine.indicators`; a closed bar advances each handle
(``update``, O(1)) and a forming bar is evaluated without committing (``peek``), so it may
be revised as often as it changes. The columns derived from those values (percentages,
ratios, the previous bar's close and mean volume) are the batch computation's own
(:func:`~technic_panel.engine.indicators.latest_columns`), so
:meth:`IndicatorState.update` and :meth:`IndicatorState.peek` give what
:func:`~technic_panel.engine.indicators.latest_indicators` gives on the history plus the
bar (tested to 1e-9: TA-Lib's handles are bit-identical to its functions).

What has no handle is recomputed on the symbol's window instead: the 52-week range of a
history shorter than a year (its window grows with every bar) on a window of the highs and
lows, and any column of :data:`~technic_panel.vocabulary.INDICATOR_COLUMNS` the handles do
not give (one the engine gained later) by ``latest_indicators`` on the last
:data:`WINDOW` bars. Memory stays bounded: each handle keeps its own look-back.
Not thread-safe: one symbol's state belongs to the thread that scores it.
"""

from __future__ import annotations

import collections
import math
from collections import deque
from typing import Any

import numpy as np
from talib import stream

from technic_panel.data.base import Bars, DataError
from technic_panel.engine.indicators import (
    MIN_BARS,
    YEAR,
    InsufficientBars,
    latest_columns,
    latest_indicators,
)
from technic_panel.live.feeds import Bar, bar_timestamp
from technic_panel.vocabulary import INDICATOR_COLUMNS

WINDOW = 2 * YEAR
"""Bars kept to recompute a column that has no stream handle."""


class _Extremes:
    """The high and low of all bars of a history shorter than a year: its growing window.

    Nothing leaves the window until it holds a year, so running extremes suffice; then the
    state opens TA-Lib handles on it (:attr:`full`).
    """

    def __init__(self, high: np.ndarray, low: np.ndarray) -> None:
        self.highs, self.lows = high.tolist(), low.tolist()
        self.high, self.low = max(self.highs), min(self.lows)

    @property
    def full(self) -> bool:
        """Whether the window holds a year of bars (and so moves on from now)."""
        return len(self.highs) >= YEAR

    def peek(self, high: float, low: float) -> tuple[float, float]:
        """Return the window's high and low as they would be with this bar added."""
        return max(self.high, high), min(self.low, low)

    def update(self, high: float, low: float) -> tuple[float, float]:
        """Add a closed bar; return the window's high and low."""
        self.highs.append(high)
        self.lows.append(low)
        self.high, self.low = self.peek(high, low)
        return self.high, self.low


class _Window:
    """The last :data:`WINDOW` bars, for the columns no handle gives."""

    def __init__(self, bars: Bars) -> None:
        dates = bars.dates[-WINDOW:].astype("datetime64[ns]").astype(np.int64)
        self.columns = [deque(column.tolist(), maxlen=WINDOW)
                        for column in (dates, *(column[-WINDOW:] for column in bars[1:]))]

    def row(self, symbol: str, bar: Bar, how: str) -> dict[str, float]:
        """Return ``latest_indicators`` on the window plus ``bar``, kept if ``update``."""
        values = (bar.time, bar.open, bar.high, bar.low, bar.close, bar.volume)
        arrays = [np.array([*column, value]) for column, value in zip(self.columns, values,
                                                                      strict=True)]
        arrays[0] = arrays[0].astype("datetime64[ns]")
        if how == "update":
            for column, value in zip(self.columns, values, strict=True):
                column.append(value)
        return latest_indicators(Bars(*arrays), symbol)


_BY_CLOSE = ("rsi", "macd", "bbands", "sma_50", "sma_200", "ema_20", "roc_5", "roc_21",
             "roc_63", "roc_126")
"""The handles fed the close alone, in the order :class:`_Handles` keeps them."""


class _Handles:
    """The TA-Lib stream handles of one symbol, opened on its history.

    Each call looks its ``peek`` or ``update`` method up; none is held as a bound method (a
    live universe of 5,000 symbols held 300,000 of those, objects that every full pass of
    the garbage collector walks while the bars wait).
    """

    def __init__(self, bars: Bars) -> None:
        h, low, c, v = bars.high, bars.low, bars.close, bars.volume
        self.mean_volume = stream.SMA(v, 20)
        self.obv, obv = stream.OBV.open_and_fill(c, v)
        self.obv_slope = stream.LINEARREG_SLOPE(obv, 20)
        self.by_close = (
            stream.RSI(c, timeperiod=14), stream.MACD(c, 12, 26, 9), stream.BBANDS(c, 20, 2.0, 2.0),
            stream.SMA(c, 50), stream.SMA(c, 200), stream.EMA(c, 20), stream.ROC(c, 5),
            stream.ROC(c, 21), stream.ROC(c, 63), stream.ROC(c, 126))
        self.atr, self.adx = stream.ATR(h, low, c, 14), stream.ADX(h, low, c, 14)
        self.dollar_volume = stream.SMA(c * v, 20)
        self.high_20 = stream.MAX(h, 20)
        self.year: tuple[Any, Any] | None = None
        if len(bars) >= YEAR:
            self.open_year(h, low)

    def open_year(self, high: np.ndarray, low: np.ndarray) -> None:
        """Open the 52-week high and low handles on (at least) a year of bars."""
        self.year = stream.MAX(high, YEAR), stream.MIN(low, YEAR)

    def values(self, bar: Bar, how: str) -> dict[str, Any]:
        """Return every handle's value at ``bar``, read (``peek``) or committed (``update``)."""
        h, low, c, v = bar.high, bar.low, bar.close, bar.volume
        values: dict[str, Any] = {"prev_mean_volume": self.mean_volume.value}
        values.update(zip(_BY_CLOSE, [getattr(handle, how)(c) for handle in self.by_close],
                          strict=True))
        values["atr"] = getattr(self.atr, how)(h, low, c)
        values["adx"] = getattr(self.adx, how)(h, low, c)
        values["mean_volume"] = getattr(self.mean_volume, how)(v)
        values["dollar_volume"] = getattr(self.dollar_volume, how)(c * v)
        values["high_20"] = getattr(self.high_20, how)(h)
        values["obv_slope"] = getattr(self.obv_slope, how)(getattr(self.obv, how)(c, v))
        if self.year is not None:
            values["year"] = (getattr(self.year[0], how)(h), getattr(self.year[1], how)(low))
        return values


class IndicatorState:
    """Every indicator of one symbol, advanced by closed bars and peeked at by forming ones.

    Opened on the symbol's history (at least ``MIN_BARS`` bars, else
    :class:`~technic_panel.engine.indicators.InsufficientBars`); see the module docs.
    Not thread-safe.
    """

    def __init__(self, symbol: str, bars: Bars) -> None:
        n = len(bars)
        if n < MIN_BARS:
            raise InsufficientBars(f"{symbol} has {n} bars; the indicators need at least "
                                   f"{MIN_BARS}")
        self.symbol = symbol
        self.bars = n
        self._handles = _Handles(bars)
        self._extremes = None if self._handles.year else _Extremes(bars.high, bars.low)
        self._close = float(bars.close[-1])
        self._volumes: deque[float] = deque(bars.volume[-20:].tolist(), maxlen=20)
        self._traded = sum(volume > 0 for volume in self._volumes)
        self._window = _Window(bars) if _WITHOUT_HANDLE else None

    def __repr__(self) -> str:
        return f"IndicatorState({self.symbol!r}, bars={self.bars}, close={self._close})"

    @classmethod
    def opened(cls, symbol: str, bars: Bars) -> tuple[IndicatorState, dict[str, float]]:
        """Open the state on ``bars`` and return it with the row at their last bar.

        The row is ``latest_indicators(bars)``, got by opening on all bars but the last and
        advancing by it (half the work of both); raises as ``latest_indicators`` does.
        """
        if len(bars) <= MIN_BARS:
            return cls(symbol, bars), latest_indicators(bars, symbol)
        state = cls(symbol, Bars(*(column[:-1] for column in bars)))
        time_ns = int(np.datetime64(bars.dates[-1], "ns").astype(np.int64))
        last = Bar(symbol, time_ns, float(bars.open[-1]), float(bars.high[-1]),
                   float(bars.low[-1]), float(bars.close[-1]), float(bars.volume[-1]), True, 0)
        return state, state.update(last)

    def peek(self, bar: Bar) -> dict[str, float]:
        """Return the indicators as they would be with the forming ``bar``; commit nothing."""
        return self._evaluate(bar, "peek")

    def update(self, bar: Bar) -> dict[str, float]:
        """Advance by the closed ``bar`` and return the indicators at it.

        A bar that is not finite raises :class:`DataError` and leaves the state as it was;
        a finite one is history from then on, even if its indicators are not finite (then
        :class:`DataError` says so, as the batch computation would for that bar).
        """
        return self._evaluate(bar, "update")

    def _evaluate(self, bar: Bar, how: str) -> dict[str, float]:
        if not math.isfinite(bar.open + bar.high + bar.low + bar.close + bar.volume):
            raise DataError(f"{self.symbol}: the bar of {bar_timestamp(bar.time)} is not "
                            f"finite: {tuple(bar[2:7])}")
        traded = bar.volume > 0 or self._traded > 0
        handled = self._handles.values(bar, how)
        if self._extremes is not None:
            handled["year"] = getattr(self._extremes, how)(bar.high, bar.low)
        row = latest_columns(handled, float(bar.close), float(bar.volume), self._close)
        if self._window is not None and traded:
            window_row = self._window.row(self.symbol, bar, how)
            row.update((name, window_row[name]) for name in _WITHOUT_HANDLE)
        if how == "update":
            self._advance(bar)
        return self._checked(row, bar, traded)

    def _advance(self, bar: Bar) -> None:
        extremes = self._extremes
        if extremes is not None and extremes.full:
            self._handles.open_year(np.array(extremes.highs), np.array(extremes.lows))
            self._extremes = None
        volumes = self._volumes
        if len(volumes) == volumes.maxlen and volumes[0] > 0:
            self._traded -= 1
        volumes.append(bar.volume)
        self._traded += bar.volume > 0
        self._close = bar.close
        self.bars += 1

    def _checked(self, row: dict[str, float], bar: Bar, traded: bool) -> dict[str, float]:
        if not traded:
            raise DataError(f"{self.symbol} has no volume in its last 21 bars; the volume "
                            "indicators need traded days (a halted or delisted symbol?)")
        if not _IN_ORDER:
            row = {name: row[name] for name in INDICATOR_COLUMNS}
        bad = ([] if math.isfinite(sum(row.values()))  # a NaN or infinity makes the sum one
               else [name for name, value in row.items() if not math.isfinite(value)])
        if bad:
            raise DataError(f"{self.symbol}: {', '.join(bad)} not finite "
                            f"at the bar of {bar_timestamp(bar.time)} (missing prices, a flat "
                            "series or zero volume?)")
        return row


def _handled_columns() -> tuple[str, ...]:
    """Return the columns :func:`latest_columns` gives, found from a row of (mostly) ones."""
    ones: dict[str, Any] = collections.defaultdict(lambda: 1.0, macd=(1.0,) * 3,
                                                   bbands=(3.0, 2.0, 1.0), year=(2.0, 1.0))
    return tuple(latest_columns(ones, 1.0, 1.0, 1.0))


_HANDLED = _handled_columns()
_WITHOUT_HANDLE = tuple(name for name in INDICATOR_COLUMNS if name not in _HANDLED)
"""The columns of ``latest_indicators`` no handle gives: recomputed on the window."""
_IN_ORDER = tuple(_HANDLED) == INDICATOR_COLUMNS
"""Whether the handles give exactly the columns, in their order (so no row is reordered)."""
