"""The fetch layer for remote providers: a token-bucket rate limiter and retries with backoff.

Free price APIs throttle: yfinance answers HTTP 429 after roughly 950 tickers
fetched back to back. :class:`ThrottledSource` wraps any
:class:`~technic_panel.data.base.DataSource` so that every per-symbol request
first takes a token from a :class:`RateLimiter` shared by all threads of the
process, and a :class:`TransientDataError` (throttling, timeout) is retried
with exponential backoff by :func:`retry` instead of failing the symbol.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pandas as pd

from technic_panel.data.base import Bars, DataSource, TransientDataError
from technic_panel.vocabulary import require

logger = logging.getLogger(__name__)

T = TypeVar("T")

JITTER = 0.1
"""Each backoff delay is stretched by a random share in [0, JITTER) to spread retries out."""



class RateLimiter:
    """A thread-safe token bucket: ``rate`` tokens a second, at most ``burst`` saved up.

    :meth:`acquire` reserves the next token and sleeps until it is due, so
    waiting threads are admitted in the order they asked, never more than
    ``burst + rate * t`` in any ``t`` seconds. ``clock`` and ``sleep`` are
    injectable so that tests can run on virtual time.
    """

    def __init__(self, rate: float, burst: int = 1, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        require("RateLimiter", "rate", rate, "> 0", rate > 0)
        require("RateLimiter", "burst", burst, ">= 1", burst >= 1)
        self.rate, self.burst = float(rate), int(burst)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._stamp = clock()

    def __repr__(self) -> str:
        with self._lock:
            self._refill()
            tokens = self._tokens
        return f"RateLimiter(rate={self.rate}, burst={self.burst}, tokens={tokens:.2f})"

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_acquire(self) -> bool:
        """Take a token if one is available now; never wait."""
        with self._lock:
            self._refill()
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True

    def acquire(self) -> float:
        """Take a token, sleeping until it is due; return the seconds waited."""
        with self._lock:
            self._refill()
            self._tokens -= 1.0
            delay = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if delay > 0:
            self._sleep(delay)
        return delay


def retry(fn: Callable[[], T], *, attempts: int = 4, backoff: float = 0.2,
          max_backoff: float = 5.0,
          retry_on: tuple[type[BaseException], ...] = (TransientDataError,),
          sleep: Callable[[float], object] = time.sleep) -> T:
    """Call ``fn()`` up to ``attempts`` times, sleeping between failures listed in ``retry_on``.

    The n-th retry waits ``min(max_backoff, backoff * 2**(n-1))`` seconds,
    stretched by a small random jitter (capped at ``max_backoff``). The last
    error is re-raised when every attempt failed; any other exception
    propagates at once.
    """
    require("retry", "attempts", attempts, ">= 1", attempts >= 1)
    require("retry", "backoff", backoff, ">= 0", backoff >= 0)
    require("retry", "max_backoff", max_backoff, ">= 0", max_backoff >= 0)
    for attempt in range(1, attempts):
        try:
            return fn()
        except retry_on as exc:
            delay = min(max_backoff, backoff * 2 ** (attempt - 1) * (1 + JITTER * random.random()))
            logger.debug("attempt %d of %d failed (%s); retrying in %.3f s",
                         attempt, attempts, exc, delay)
            sleep(delay)
    return fn()


class ThrottledSource:
    """A :class:`DataSource` whose ``bars``/``history`` calls are rate-limited and retried.

    Every attempt, retries included, takes a token, so the provider never sees
    more than ``burst + requests_per_second * t`` requests in ``t`` seconds
    from one process. ``universe`` and ``snapshot`` pass straight through.
    Picklable: each process (or Dask worker) builds its own limiter, so the
    rate applies per process.
    """

    def __init__(self, source: DataSource, *, requests_per_second: float = 2.0,
                 burst: int = 5, attempts: int = 4, backoff: float = 0.5,
                 max_backoff: float = 30.0) -> None:
        owner = "ThrottledSource"
        if not isinstance(source, DataSource):
            raise TypeError(f"{owner}.source must be a DataSource (name, universe, snapshot, "
                            f"history, bars), not {source!r}")
        require(owner, "requests_per_second", requests_per_second, "> 0", requests_per_second > 0)
        require(owner, "burst", burst, ">= 1", burst >= 1)
        require(owner, "attempts", attempts, ">= 1", attempts >= 1)
        require(owner, "backoff", backoff, ">= 0", backoff >= 0)
        require(owner, "max_backoff", max_backoff, ">= 0", max_backoff >= 0)
        self.source = source
        self.name = source.name
        self.requests_per_second, self.burst = float(requests_per_second), int(burst)
        self.attempts, self.backoff = int(attempts), float(backoff)
        self.max_backoff = float(max_backoff)
        self._limiter = RateLimiter(self.requests_per_second, self.burst)

    io_bound = True
    """A throttled provider is waited on: the thread executor uses many threads."""

    def __repr__(self) -> str:
        return (f"ThrottledSource({self.source!r}, requests_per_second="
                f"{self.requests_per_second}, burst={self.burst}, attempts={self.attempts}, "
                f"backoff={self.backoff}, max_backoff={self.max_backoff})")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_limiter"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._limiter = RateLimiter(self.requests_per_second, self.burst)

    def _call(self, fetch: Callable[[str], T], symbol: str) -> T:
        def attempt() -> T:
            self._limiter.acquire()
            return fetch(symbol)

        return retry(attempt, attempts=self.attempts, backoff=self.backoff,
                     max_backoff=self.max_backoff)

    def universe(self) -> pd.DataFrame:
        """Return the wrapped source's universe, unthrottled."""
        return self.source.universe()

    def snapshot(self) -> pd.DataFrame:
        """Return the wrapped source's snapshot, unthrottled."""
        return self.source.snapshot()

    def bars(self, symbol: str) -> Bars:
        """Return ``symbol``'s bars, waiting for a token and retrying transient failures."""
        return self._call(self.source.bars, symbol)

    def history(self, symbol: str) -> pd.DataFrame:
        """Return ``symbol``'s history, waiting for a token and retrying transient failures."""
        return self._call(self.source.history, symbol)
