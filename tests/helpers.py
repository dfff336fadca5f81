"""Shared test helpers: poll with a deadline, a clock the test moves, a free port, daily bars.

Test modules import them by name (``from helpers import wait_until``): ``tests/`` is not a
package, and pytest's default ``prepend`` import mode puts it on ``sys.path``. Fixtures live
in ``conftest.py``; everything else shared lives here, defined once.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from technic_panel.data import SyntheticSource
from technic_panel.streaming.streamer import StreamEnded


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.005):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` s.

    Returns that value. Not for Playwright tests: their page events arrive only while the
    sync API runs, so they wait in the page (``page.wait_for_function``) instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


class FakeClock:
    """Monotonic seconds that move only when the test says so.

    Call it for the time; :meth:`advance` moves it; :meth:`sleep` moves it too and records
    the delay in ``sleeps``, so code that sleeps through an injected ``sleep`` runs at once.
    """

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now}, sleeps={len(self.sleeps)})"

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds``."""
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """Record a delay of ``seconds`` and move the clock on by it."""
        self.sleeps.append(seconds)
        self.advance(seconds)


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def daily_bars(n: int = 250, start: str = "2023-01-02", seed: int = 0) -> pd.DataFrame:
    """Plausible OHLCV bars on ``n`` business days from ``start``, indexed by ``date``."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    index = pd.DatetimeIndex(pd.bdate_range(start, periods=n), name="date")
    return pd.DataFrame({"open": close * 0.99, "high": close * 1.02, "low": close * 0.97,
                         "close": close, "volume": rng.integers(1_000, 10_000, n).astype(float)},
                        index=index)


def read_all(subscription, timeout: float = 60.0) -> list[dict]:
    """Return every message ``subscription`` delivers until its stream ends."""
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            messages.extend(subscription.get_batch(timeout=0.5))
        except StreamEnded:
            return messages
        if time.monotonic() > deadline:
            pytest.fail(f"the stream did not end within {timeout} s: {subscription!r}")


def fold_rows(messages: list[dict]) -> dict[str, dict]:
    """Return the rows a reader holds after ``messages``, checking each row's first is a result."""
    rows: dict[str, dict] = {}
    for msg in messages:
        if msg["type"] in ("result", "update"):
            symbol = msg["data"]["symbol"]
            assert (msg["type"] == "result") == (symbol not in rows), msg
            rows[symbol] = {key: value for key, value in msg["data"].items()
                            if key not in ("changed", "previous_signal")}
    return rows


def seqs(messages: list[dict]) -> list[int]:
    """Return the seq of each of ``messages``."""
    return [msg["metadata"]["seq"] for msg in messages]


def bars_frame(seed: int, n: int = 260) -> pd.DataFrame:
    """``n`` plausible daily bars (a SyntheticSource symbol's), indexed by ``date``."""
    synthetic = SyntheticSource(8, bars=n)
    return synthetic.history(synthetic.universe()["symbol"][seed])
