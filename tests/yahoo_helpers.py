"""A stand-in for ``yf.download`` (yfinance 1.7) serving the payloads yfinance returns.

``FakeYahoo`` builds each ticker's frame as ``Ticker.history(auto_adjust=True)`` does
(Open, High, Low, Close, Volume indexed by an exchange-time ``Date``), a failed ticker
as ``yfinance.utils.empty_df()``, and combines them with yfinance's own ``reindex_dfs``
and the concat of ``multi._download_impl``: columns ``(Price, Ticker)`` by default,
``(Ticker, Price)`` with ``group_by='ticker'``, missing tickers as all-NaN columns.
Failures are logged to the ``yfinance`` logger in yfinance's words (``"['B']:
YFRateLimitError(...)"``), since ``yf.download`` reports them no other way.
"""

from __future__ import annotations

import time
import zlib

import numpy as np
import pandas as pd
from yfinance import utils as yf_utils
from yfinance.exceptions import YFPricesMissingError, YFRateLimitError
from yfinance.multi import reindex_dfs


def history(symbol: str, start: str = "2023-01-02", end: str = "2025-01-01") -> pd.DataFrame:
    """A ticker's adjusted daily history as ``Ticker.history(auto_adjust=True)`` returns it."""
    dates = pd.bdate_range(start, end, inclusive="left", tz="America/New_York", name="Date")
    rng = np.random.default_rng(zlib.crc32(symbol.encode()))
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(dates))))
    return pd.DataFrame({
        "Open": close * (1 + rng.normal(0, 0.003, len(dates))),
        "High": close * 1.01, "Low": close * 0.99, "Close": close,
        "Volume": rng.integers(1_000_000, 5_000_000, len(dates)),
    }, index=dates).assign(High=lambda f: f[["Open", "High"]].max(axis=1),
                           Low=lambda f: f[["Open", "Low"]].min(axis=1))


def yf_payload(histories: dict[str, pd.DataFrame | None], group_by: str = "column"
               ) -> pd.DataFrame:
    """Combine per-ticker histories as ``yfinance.multi._download_impl`` does (1.7.0)."""
    dfs = {t: yf_utils.empty_df() if h is None else h.copy() for t, h in histories.items()}
    for frame in dfs.values():
        if frame.shape[0] > 0:
            frame.index = frame.index.tz_localize(None)
    dfs = reindex_dfs(dfs, True)
    data = pd.concat(dfs.values(), axis=1, sort=True, keys=dfs.keys(), names=["Ticker", "Price"])
    if group_by == "column":
        data.columns = data.columns.swaplevel(0, 1)
        data = data.sort_index(level=0, axis=1)
    return data


def log_failures(errors: dict[str, str]) -> None:
    """Log ``errors`` (ticker -> repr of the exception) as multi.py's summary does."""
    if not errors:
        return
    logger = yf_utils.get_yf_logger()
    logger.error("\n%.f Failed download%s:" % (len(errors), "s" if len(errors) > 1 else ""))
    grouped: dict[str, list[str]] = {}
    for ticker, error in errors.items():
        grouped.setdefault(error.replace(f"${ticker}: ", ""), []).append(ticker)
    for error, tickers in grouped.items():
        logger.error(f"{tickers}: " + error)


def missing(ticker: str, start: str, end: str) -> str:
    """Log what ``PriceHistory.history`` logs for a ticker without prices; return its error."""
    message = str(YFPricesMissingError(ticker, f"(1d {start} -> {end})"))
    yf_utils.get_yf_logger().error(message)
    return message.split(": ", 1)[1]  # multi.py records PriceHistory._last_error


RATE_LIMITED = repr(YFRateLimitError())


class FakeYahoo:
    """A ``yf.download`` serving ``bars`` within [start, end); ``script`` scripts each call.

    A script entry may hold ``raise`` (an exception the call raises) and ``fail`` (ticker
    -> error text logged for it, its columns all NaN). Every call is recorded with the
    clock's time.
    """

    def __init__(self, bars: dict[str, pd.DataFrame], script: list[dict] | None = None,
                 clock=time.monotonic) -> None:
        self.bars, self.script, self.clock = bars, list(script or []), clock
        self.calls: list[dict] = []

    def __call__(self, tickers, **options):
        self.calls.append({"tickers": list(tickers), "at": self.clock(), **options})
        step = self.script.pop(0) if self.script else {}
        if "raise" in step:
            raise step["raise"]
        start, end = pd.Timestamp(options["start"]), pd.Timestamp(options["end"])
        histories, errors = {}, {}
        for ticker in tickers:
            frame = self.bars.get(ticker)
            if frame is not None:
                day = frame.index.tz_localize(None)
                frame = frame[(day >= start) & (day < end)]
            if ticker in step.get("fail", {}):
                errors[ticker] = step["fail"][ticker]
            elif frame is None or frame.empty:
                errors[ticker] = missing(ticker, options["start"], options["end"])
            else:
                histories[ticker] = frame
                continue
            histories[ticker] = None
        log_failures(errors)
        return yf_payload(histories, options.get("group_by", "column"))

    def fetched(self) -> list[list[str]]:
        return [call["tickers"] for call in self.calls]
