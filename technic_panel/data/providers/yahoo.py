"""Daily bars from Yahoo Finance (yfinance) into a BarStore: batched, throttled, resumable.

Mechanics
---------
:meth:`YahooProvider.fetch` first checks that Yahoo answers at all: one TCP connect to
:data:`PROBE_ADDRESS` (or the HTTPS proxy the environment names) that must succeed
within :data:`PROBE_SECONDS`, so an offline machine fails in seconds with one
:class:`~technic_panel.data.providers.ProviderError`. It then plans: a symbol already in
the store continues the day after its last bar (:meth:`BarStore.last_dates`), a new one
starts at ``start``; sessions end before ``end`` (default: today in UTC, so a forming
bar is never stored); a symbol with no weekday left to fetch is up to date. Symbols are
sorted by their first missing date and cut into batches of ``batch``, each one
``yf.download`` call, and each batch is written to the store as soon as it completes,
so a fetch killed midway and started again fetches only what is missing.

Prices are adjusted for splits and dividends (``auto_adjust=True``: open, high and low
scaled by adjusted close / close, close the adjusted close). A bar Yahoo reports with
open or close a hair outside its low..high (rounding of the adjustment) is widened to
hold them; bars with a missing or non-positive price are dropped.

Throttling and retries: yfinance sends one chart request per ticker, so every attempt
first takes one token per ticker from a :class:`~technic_panel.data.throttle.RateLimiter`
(``rate`` per second, ``batch`` saved up): Yahoo never sees more than ``batch + rate * t``
requests in ``t`` seconds. ``yf.download`` does not raise for a ticker that failed: it
logs the error (``YFRateLimitError(...)``, a curl timeout, "possibly delisted") and
returns all-NaN columns, so the adapter reads the ``yfinance`` logger's records during
the call. Tickers that failed for a transient reason (HTTP 429, 5xx, timeouts, dropped
connections), or a download that raised one, are retried with exponential backoff, up
to ``attempts`` in all; other failures are final and named in :class:`FetchReport`.
Every request has yfinance's ``timeout`` deadline.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from technic_panel.data.base import TransientDataError
from technic_panel.data.providers import ProviderError
from technic_panel.data.providers.yahoo_download import (
    TRANSIENT,
    UNREACHABLE,
    Download,
    split_download,
    yfinance_download,
    yfinance_errors,
)
from technic_panel.data.throttle import RateLimiter, retry
from technic_panel.vocabulary import require

logger = logging.getLogger(__name__)

PROBE_ADDRESS = ("query2.finance.yahoo.com", 443)
"""Where yfinance 1.x fetches charts; one TCP connect to it tells whether Yahoo answers."""
PROBE_SECONDS = 3.0
"""Deadline of that connect, name resolution included."""
HISTORY_YEARS = 2
"""How far back a symbol new to the store starts by default (about 500 daily bars)."""


class BarWriter(Protocol):
    """What a fetch needs of a :class:`~technic_panel.data.store.BarStore`."""

    def last_dates(self) -> dict[str, pd.Timestamp]: ...  # noqa: D102

    def write(self, frames: Mapping[str, pd.DataFrame], *, mode: str = ...) -> Any: ...  # noqa: D102


@dataclass
class FetchReport:
    """What a fetch did: symbols written (bars added), up to date, failed (and why)."""

    requested: int = 0
    written: dict[str, int] = field(default_factory=dict)
    up_to_date: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    batches: int = 0
    requests: int = 0
    """Yahoo chart requests sent: one per ticker per attempt."""

    def __bool__(self) -> bool:
        """Whether any bar was written."""
        return bool(self.written)


def check_reachable(address: tuple[str, int] | None = None,
                    timeout: float = PROBE_SECONDS) -> None:
    """Raise :class:`ProviderError` unless a TCP connect to ``address`` succeeds in ``timeout`` s.

    ``address`` defaults to the environment's HTTPS proxy, else :data:`PROBE_ADDRESS`.
    Name resolution has no timeout of its own, so the connect runs on a daemon thread
    and the deadline is the wait for it.
    """
    host, port = address or _proxy_address() or PROBE_ADDRESS
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=connect, name="yahoo-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if outcome and outcome[0] is None:
        return
    reason = _socket_reason(outcome[0]) if outcome else f"no answer within {timeout:g} s"
    raise ProviderError(f"Yahoo Finance is unreachable ({host}:{port}: {reason}); check the "
                        "network connection or proxy (HTTPS_PROXY), then run the same command "
                        "again")


def _proxy_address() -> tuple[str, int] | None:
    proxy = urllib.request.getproxies().get("https")
    if not proxy:
        return None
    parsed = urllib.parse.urlsplit(proxy if "//" in proxy else f"//{proxy}")
    return (parsed.hostname, parsed.port or 443) if parsed.hostname else None


def _socket_reason(exc: BaseException | None) -> str:
    if isinstance(exc, socket.gaierror):
        return "the name does not resolve"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "the connection timed out"
    return f"{type(exc).__name__}: {exc}"


class YahooProvider:
    """Fetch daily bars from Yahoo Finance with batched ``yf.download`` calls into a store.

    ``download`` is the seam: it defaults to ``yfinance.download`` (imported only then;
    yfinance is the optional extra ``[yahoo]``); tests pass a function returning the
    payloads yfinance returns. ``probe`` runs before the first request (default:
    :func:`check_reachable`; ``None`` skips it). ``clock`` and ``sleep`` drive the rate
    limiter and the backoff, so tests run on virtual time. Not thread-safe: one fetch at
    a time per provider.
    """

    name = "yahoo"

    def __init__(self, *, download: Download | None = None, rate: float = 2.0,
                 batch: int = 50, attempts: int = 4, backoff: float = 2.0,
                 max_backoff: float = 60.0, timeout: float = 20.0,
                 probe: Callable[[], None] | None = check_reachable,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        owner = "YahooProvider"
        require(owner, "rate", rate, "> 0 requests a second", rate > 0)
        require(owner, "batch", batch, "an integer in [1, 1000]",
                isinstance(batch, int) and 1 <= batch <= 1000)
        require(owner, "attempts", attempts, "an integer >= 1",
                isinstance(attempts, int) and attempts >= 1)
        require(owner, "backoff", backoff, ">= 0", backoff >= 0)
        require(owner, "timeout", timeout, "> 0 seconds", timeout > 0)
        self.download = download or yfinance_download()
        self.rate, self.batch, self.attempts = float(rate), batch, attempts
        self.backoff, self.max_backoff, self.timeout = float(backoff), float(max_backoff), timeout
        self.probe, self._sleep = probe, sleep
        self.limiter = RateLimiter(self.rate, burst=batch, clock=clock, sleep=sleep)

    def __repr__(self) -> str:
        return (f"YahooProvider(rate={self.rate}, batch={self.batch}, attempts={self.attempts}, "
                f"backoff={self.backoff}, timeout={self.timeout})")

    def plan(self, symbols: Sequence[str], last_dates: Mapping[str, pd.Timestamp], *,
             start: object = None, end: object = None
             ) -> tuple[list[tuple[pd.Timestamp, list[str]]], list[str]]:
        """Return the batches ``(first date, symbols)`` to fetch and the symbols up to date."""
        end_day = _day(end) if end is not None else _today()
        first = _day(start) if start is not None else end_day - pd.DateOffset(
            years=HISTORY_YEARS)
        todo, current = [], []
        for symbol in dict.fromkeys(symbols):
            last = last_dates.get(symbol)
            since = first if last is None else _day(last) + pd.Timedelta(days=1)
            if np.busday_count(since.date(), end_day.date()) > 0:
                todo.append((since, symbol))
            else:
                current.append(symbol)
        todo.sort()
        batches = [(todo[i][0], [symbol for _, symbol in todo[i:i + self.batch]])
                   for i in range(0, len(todo), self.batch)]
        return batches, current

    def fetch(self, store: BarWriter, symbols: Sequence[str], *, start: object = None,
              end: object = None, progress: Callable[[int], object] | None = None
              ) -> FetchReport:
        """Fetch what ``store`` lacks of ``symbols``, writing each batch as it completes.

        Raises
        ------
        ProviderError
            When Yahoo cannot be reached, before anything is fetched, or when every
            ticker of a batch fails to connect (what was written before stays written).
        """
        if self.probe is not None:
            self.probe()
        last_dates = store.last_dates()
        end_day = _day(end) if end is not None else _today()
        batches, current = self.plan(symbols, last_dates, start=start, end=end_day)
        report = FetchReport(requested=len(dict.fromkeys(symbols)), up_to_date=current)
        for number, (first, tickers) in enumerate(batches, 1):
            self._fetch_batch(store, tickers, first, end_day, last_dates, report)
            report.batches = number
            if progress is not None:
                progress(len(tickers))
            if all(UNREACHABLE.search(report.failed.get(t, "")) for t in tickers):
                raise ProviderError(
                    f"Yahoo Finance stopped answering at batch {number} of {len(batches)} "
                    f"({report.failed[tickers[0]]}); {len(report.written)} symbols were "
                    "stored; run the same command again to fetch the rest")
        done = set(report.written) | set(report.failed)
        report.up_to_date = [s for s in dict.fromkeys(report.up_to_date) if s not in done]
        return report

    def _fetch_batch(self, store: BarWriter, tickers: list[str], first: pd.Timestamp,
                     end: pd.Timestamp, last_dates: Mapping[str, pd.Timestamp],
                     report: FetchReport) -> None:
        """Download ``tickers`` from ``first``, retrying the transient failures; record all."""
        pending, reasons = list(tickers), {}

        def attempt() -> None:
            nonlocal pending
            for _ in pending:
                self.limiter.acquire()
            report.requests += len(pending)
            try:
                frames, errors = self._download(pending, first, end)
            except TransientDataError as exc:  # the whole call failed: all of it again
                reasons.update(dict.fromkeys(pending, str(exc)))
                raise
            self._write(store, frames, last_dates, report)
            for ticker, reason in errors.items():
                if ticker in last_dates and not TRANSIENT.search(reason):
                    report.up_to_date.append(ticker)  # nothing new yet (a holiday)
                elif not TRANSIENT.search(reason):
                    report.failed[ticker] = reason
            reasons.update(errors)
            pending = [t for t in pending if t in errors and TRANSIENT.search(errors[t])]
            if pending:
                raise TransientDataError(f"{len(pending)} of the batch failed transiently")

        try:
            retry(attempt, attempts=self.attempts, backoff=self.backoff,
                  max_backoff=self.max_backoff, sleep=self._sleep)
        except TransientDataError:
            for ticker in pending:
                report.failed[ticker] = f"{reasons[ticker]} (after {self.attempts} attempts)"

    def _download(self, tickers: list[str], first: pd.Timestamp, end: pd.Timestamp
                  ) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
        """Call the downloader once; return complete bars per ticker and why others have none."""
        try:
            with yfinance_errors() as logged, warnings.catch_warnings():
                warnings.filterwarnings("ignore", module=r"yfinance(\..*)?")
                data = self.download(
                    list(tickers), start=first.strftime("%Y-%m-%d"),
                    end=end.strftime("%Y-%m-%d"), interval="1d", auto_adjust=True,
                    actions=False, group_by="column", progress=False, threads=True,
                    timeout=self.timeout, multi_level_index=True)
        except Exception as exc:  # noqa: BLE001 - any downloader failure is the batch's reason
            reason = f"{type(exc).__name__}: {exc}"
            if TRANSIENT.search(reason):
                raise TransientDataError(reason) from exc
            return {}, dict.fromkeys(tickers, reason)
        frames = split_download(data, tickers)
        errors = {t: logged.get(t, "Yahoo returned no prices") for t in tickers
                  if t not in frames}
        return frames, errors

    @staticmethod
    def _write(store: BarWriter, frames: dict[str, pd.DataFrame],
               last_dates: Mapping[str, pd.Timestamp], report: FetchReport) -> None:
        """Append each frame's bars after the symbol's last stored one; record the outcome."""
        fresh = {}
        for symbol, frame in frames.items():
            last = last_dates.get(symbol)
            frame = frame if last is None else frame[frame.index > _day(last)]
            if len(frame):
                fresh[symbol] = frame
            else:
                report.up_to_date.append(symbol)
        if not fresh:
            return
        written = store.write(fresh, mode="append")
        for symbol, bars in written.written.items():
            report.written[symbol] = report.written.get(symbol, 0) + bars
        for label, reason in written.refused:
            report.failed[label] = f"refused by the store: {reason}"
        report.up_to_date.extend(written.unchanged)


def _day(value: object) -> pd.Timestamp:
    """Return ``value`` as a naive midnight Timestamp; ValueError naming it when it is no date."""
    try:
        stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{value!r} is not a date; give one as YYYY-MM-DD") from exc
    if pd.isna(stamp):
        raise ValueError(f"{value!r} is not a date; give one as YYYY-MM-DD")
    return (stamp.tz_convert(None) if stamp.tz is not None else stamp).normalize()


def _today() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_convert(None).normalize()
