"""Real daily prices of a few large US stocks, from the ``bokeh-sampledata`` package.

The sample holds AAPL, GOOG, IBM, MSFT (2000 or IPO to 2013-03-01) and, in the
packages that ship it, FB. Its open/high/low/close are as traded, so they jump
at every split (AAPL halves twice); :class:`SampleSource` scales each bar by
``adj_close / close``, as Yahoo's adjusted prices do, and divides volume by the
same factor so that close times volume stays the dollar amount traded. The
data is imported on first use only, from ``bokeh_sampledata`` itself (what
``bokeh.sampledata`` forwards to), so the data layer never imports bokeh.
"""

from __future__ import annotations

import logging
import threading
from typing import NamedTuple

import numpy as np
import pandas as pd

from technic_panel.data.base import (
    SNAPSHOT_COLUMNS,
    UNIVERSE_COLUMNS,
    Bars,
    DataError,
    snapshot_from_bars,
)

logger = logging.getLogger(__name__)

AVG_WINDOW = 20
"""Bars averaged for ``avg_dollar_volume`` in :meth:`SampleSource.universe`."""


class Company(NamedTuple):
    """Hard-coded metadata of one sample symbol (market cap approximate, at 2013-03-01)."""

    name: str
    sector: str
    industry: str
    market_cap: float


COMPANIES: dict[str, Company] = {
    "AAPL": Company("Apple Inc.", "Information Technology",
                    "Technology Hardware, Storage & Peripherals", 4.0e11),
    "FB": Company("Meta Platforms, Inc. (Facebook)", "Communication Services",
                  "Interactive Media & Services", 6.7e10),
    "GOOG": Company("Alphabet Inc. (Google)", "Communication Services",
                    "Interactive Media & Services", 2.7e11),
    "IBM": Company("International Business Machines Corp.", "Information Technology",
                   "IT Services", 2.3e11),
    "MSFT": Company("Microsoft Corporation", "Information Technology", "Software", 2.3e11),
}
"""The symbols the sample may hold; those the installed package lacks are left out."""


class SampleSource:
    """Split-adjusted real daily bars of the ``bokeh-sampledata`` stocks.

    Thread-safe: the data is loaded once under a lock and shared read-only.
    Picklable: the cache is dropped and reloaded in each process.
    """

    def __init__(self, name: str = "sample") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._bars: dict[str, Bars] | None = None

    def __repr__(self) -> str:
        return f"SampleSource(name={self.name!r})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"], state["_bars"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._bars = None

    def _data(self) -> dict[str, Bars]:
        with self._lock:
            if self._bars is None:
                self._bars = _load()
            return self._bars

    def universe(self) -> pd.DataFrame:
        """Return the sample's symbols with their hard-coded metadata and dollar volume."""
        rows = [
            {"symbol": symbol, **COMPANIES[symbol]._asdict(),
             "avg_dollar_volume": float(np.mean(bars.close[-AVG_WINDOW:]
                                                * bars.volume[-AVG_WINDOW:]))}
            for symbol, bars in self._data().items()
        ]
        return pd.DataFrame(rows, columns=list(UNIVERSE_COLUMNS))

    def snapshot(self) -> pd.DataFrame:
        """Return the last bar of every sample symbol."""
        rows = [snapshot_from_bars(symbol, bars) for symbol, bars in self._data().items()]
        return pd.DataFrame(rows, columns=list(SNAPSHOT_COLUMNS))

    def bars(self, symbol: str) -> Bars:
        """Return ``symbol``'s split-adjusted bars; raise :class:`DataError` if not sampled."""
        data = self._data()
        bars = data.get(symbol)
        if bars is None:
            raise DataError(f"SampleSource has no symbol {symbol!r} "
                            f"(it has {', '.join(data)})")
        return bars

    def history(self, symbol: str) -> pd.DataFrame:
        """Return ``symbol``'s daily OHLCV bars as a DataFrame indexed by date."""
        return self.bars(symbol).to_frame()


def _load() -> dict[str, Bars]:
    """Import the sample and adjust every symbol the installed package provides."""
    try:
        from bokeh_sampledata import stocks
    except ImportError as exc:
        raise ImportError("SampleSource needs the bokeh-sampledata package "
                          "(pip install bokeh-sampledata)") from exc
    data = {}
    for symbol in COMPANIES:
        raw = getattr(stocks, symbol, None)
        if raw is None:
            logger.debug("bokeh_sampledata.stocks has no %s; SampleSource leaves it out", symbol)
            continue
        data[symbol] = _adjusted_bars(raw)
    return data


def _adjusted_bars(raw: dict[str, list]) -> Bars:
    """Scale one symbol's raw prices by ``adj_close / close``; read-only float64 arrays."""
    dates = pd.to_datetime(pd.Series(raw["date"]), format="%Y-%m-%d")
    close = np.asarray(raw["close"], dtype=np.float64)
    factor = np.asarray(raw["adj_close"], dtype=np.float64) / close
    prices = [np.asarray(raw[c], dtype=np.float64) * factor for c in ("open", "high", "low")]
    volume = np.asarray(raw["volume"], dtype=np.float64) / factor
    arrays = [dates.to_numpy(dtype="datetime64[ns]"), *prices, close * factor, volume]
    for array in arrays:
        array.flags.writeable = False
    return Bars(*arrays)
