"""What ``yf.download`` (yfinance 1.x) returns and reports, read for the Yahoo adapter.

``yf.download`` returns one frame for many tickers, with columns ``(Price, Ticker)``
(``group_by='column'``, the default) or ``(Ticker, Price)``, a failed ticker as all-NaN
columns, and no exception for it: it logs the reason to the ``yfinance`` logger
(``"['A', 'B']: YFRateLimitError(...)"``). :func:`split_download` reads each ticker's
complete bars from the frame; :func:`yfinance_errors` collects the logged reasons during
a call; :data:`TRANSIENT` tells the reasons worth another attempt.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from technic_panel.data.base import OHLCV_COLUMNS
from technic_panel.data.providers import ProviderError

TRANSIENT = re.compile(r"rate ?limit|too many requests|\b429\b|time[ds]? ?out|could not resolve"
                       r"|dns|connect|curl: \(\d+\)|\b5\d\d\b|server error|currently down"
                       r"|will be right back", re.IGNORECASE)
"""Reasons worth another attempt: throttling (HTTP 429), 5xx, timeouts, lost connections."""
UNREACHABLE = re.compile(r"could not resolve|dnserror|failed to connect|couldn't connect"
                         r"|connection refused|curl: \((6|7)\)", re.IGNORECASE)
"""Reasons that say Yahoo cannot be reached at all (name resolution, connect)."""
_OHLC = list(OHLCV_COLUMNS[:4])


class Download(Protocol):
    """The shape of ``yf.download`` the adapter calls (keyword arguments as yfinance names them)."""

    def __call__(self, tickers: list[str], **options: Any) -> pd.DataFrame | None: ...  # noqa: D102


def split_download(data: pd.DataFrame | None, tickers: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Return each ticker's complete OHLCV bars from a ``yf.download`` payload.

    Understands both groupings (columns ``(Price, Ticker)`` or ``(Ticker, Price)``) and
    a single ticker's flat columns. A ticker with no complete bar is left out.
    """
    if data is None or data.empty:
        return {}
    columns = data.columns
    if not isinstance(columns, pd.MultiIndex):
        parts = {tickers[0]: data} if len(tickers) == 1 else {}
    else:
        price = next((level for level in range(columns.nlevels) if "close" in
                      {str(v).lower() for v in columns.get_level_values(level)}), 0)
        level = 1 - price if columns.nlevels == 2 else None
        present = set() if level is None else {str(v) for v in columns.get_level_values(level)}
        parts = {t: pd.DataFrame(data.xs(t, axis=1, level=level)) for t in tickers
                 if t in present}
    frames = {ticker: _bars(part) for ticker, part in parts.items()}
    return {ticker: frame for ticker, frame in frames.items() if len(frame)}


def _bars(part: pd.DataFrame) -> pd.DataFrame:
    """Return the complete, positive bars of one ticker's columns, indexed by a naive date."""
    names = {str(column).lower(): column for column in part.columns}
    if any(name not in names for name in OHLCV_COLUMNS):
        return pd.DataFrame(columns=list(OHLCV_COLUMNS))
    frame = pd.DataFrame({name: pd.to_numeric(part[names[name]], errors="coerce")
                          for name in OHLCV_COLUMNS}).astype("float64")
    keep = np.isfinite(frame.to_numpy()).all(axis=1) & (frame[_OHLC] > 0).all(axis=1).to_numpy()
    frame = frame[keep & (frame["volume"] >= 0).to_numpy()]
    frame["high"], frame["low"] = frame[_OHLC].max(axis=1), frame[_OHLC].min(axis=1)
    index = pd.DatetimeIndex(frame.index)
    if index.tz is not None:
        index = index.tz_localize(None)
    frame.index = index.normalize().astype("datetime64[ns]").rename("date")
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    return frame


class _YfinanceErrors(logging.Handler):
    """Collect the per-ticker errors ``yf.download`` logs: ``"['A', 'B']: YFRateLimitError()"``."""

    _SUMMARY = re.compile(r"(\[[^\]]*\]): (.+)", re.DOTALL)
    _TICKER = re.compile(r"Failed to get ticker '([^']+)' reason: (.+)", re.DOTALL)

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reasons: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        """Remember the reason a record gives for its tickers; a transient one is kept.

        A timed-out timezone request is logged as "Failed to get ticker 'X' reason: ...
        timed out" and summed up as "possibly delisted; no timezone found": the first
        says what happened.
        """
        text = record.getMessage().strip()
        if match := self._TICKER.search(text):
            self._note([match[1]], match[2])
        elif match := self._SUMMARY.search(text):
            with contextlib.suppress(ValueError, SyntaxError):
                self._note([str(ticker) for ticker in ast.literal_eval(match[1])], match[2])

    def _note(self, tickers: list[str], reason: str) -> None:
        reason = " ".join(reason.split())
        for ticker in map(str.upper, tickers):
            known = self.reasons.get(ticker)
            if known is None or not TRANSIENT.search(known):
                self.reasons[ticker] = reason


@contextlib.contextmanager
def yfinance_errors() -> Iterator[dict[str, str]]:
    """While inside, yfinance's error records are collected (and not printed): ticker -> why."""
    yf_logger = logging.getLogger("yfinance")
    handler = _YfinanceErrors()
    level, propagate = yf_logger.level, yf_logger.propagate
    yf_logger.addHandler(handler)
    if not level or level > logging.ERROR:
        yf_logger.setLevel(logging.ERROR)
    yf_logger.propagate = False
    try:
        yield handler.reasons
    finally:
        yf_logger.removeHandler(handler)
        yf_logger.setLevel(level)
        yf_logger.propagate = propagate


def yfinance_download() -> Download:
    """Return ``yfinance.download``, importing yfinance now; ProviderError if it is missing."""
    try:
        import yfinance
    except ImportError as exc:
        raise ProviderError("fetching from Yahoo Finance needs yfinance, the optional extra "
                            "[yahoo]: pip install 'technic-panel[yahoo]'") from exc
    return yfinance.download
