"""RateLimiter, retry and ThrottledSource: virtual-time checks plus one real-time bound."""

from __future__ import annotations

import pickle
import threading
import time

import numpy as np
import pandas as pd
import pytest
from helpers import FakeClock

from technic_panel.data import (
    Bars,
    DataError,
    DataSource,
    RateLimiter,
    ThrottledSource,
    TransientDataError,
)
from technic_panel.data.throttle import JITTER, retry


class FlakySource:
    """A picklable source whose bars/history fail ``failures`` times per symbol, then work."""

    name = "flaky"

    def __init__(self, failures: int = 2, error: type[Exception] = TransientDataError) -> None:
        self.failures, self.error = failures, error
        self.calls: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"FlakySource(failures={self.failures})"

    def universe(self) -> pd.DataFrame:
        return pd.DataFrame({"symbol": ["ACME"]})

    def snapshot(self) -> pd.DataFrame:
        raise TransientDataError("snapshot is not retried")

    def bars(self, symbol: str) -> Bars:
        self.calls[symbol] = self.calls.get(symbol, 0) + 1
        if self.calls[symbol] <= self.failures:
            raise self.error(f"HTTP 429 for {symbol}")
        dates = np.array(["2024-01-02", "2024-01-03"], dtype="datetime64[ns]")
        price = np.array([1.0, 2.0])
        return Bars(dates, price, price, price, price, price * 100)

    def history(self, symbol: str) -> pd.DataFrame:
        return self.bars(symbol).to_frame()


# --- RateLimiter -----------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rate": 0}, "RateLimiter.rate must be > 0, not 0"),
    ({"rate": -1.5}, "RateLimiter.rate must be > 0, not -1.5"),
    ({"rate": 1, "burst": 0}, "RateLimiter.burst must be >= 1, not 0"),
])
def test_limiter_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        RateLimiter(**kwargs)


@pytest.mark.parametrize(("rate", "burst", "calls"), [(10, 1, 20), (4, 5, 25), (0.5, 3, 3)])
def test_acquire_takes_the_expected_virtual_time(rate, burst, calls):
    clock = FakeClock()
    limiter = RateLimiter(rate, burst, clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(calls)]
    assert clock.now == pytest.approx(max(0, calls - burst) / rate)
    assert waits[:burst] == [0.0] * min(burst, calls)
    assert len(clock.sleeps) == max(0, calls - burst)


def test_burst_refills_at_rate_and_is_capped():
    clock = FakeClock()
    limiter = RateLimiter(10, burst=3, clock=clock, sleep=clock.sleep)
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.1
    assert [limiter.try_acquire() for _ in range(2)] == [True, False]
    clock.now += 100.0
    assert sum(limiter.try_acquire() for _ in range(10)) == 3
    assert repr(limiter) == "RateLimiter(rate=10.0, burst=3, tokens=0.00)"


def test_try_acquire_does_not_jump_a_waiting_reservation():
    clock = FakeClock()
    limiter = RateLimiter(1, burst=1, clock=clock, sleep=lambda s: None)
    limiter.acquire()
    assert limiter.acquire() == pytest.approx(1.0)  # reserved, its sleep not yet over
    clock.now = 1.0
    assert not limiter.try_acquire()  # the token due at t=1 belongs to the reservation
    clock.now = 2.0
    assert limiter.try_acquire()


def test_threads_are_admitted_at_most_rate_times_t_plus_burst(no_thread_leaks):
    rate, burst, seconds = 40.0, 5, 0.5
    limiter = RateLimiter(rate, burst)
    admitted: list[float] = []
    lock = threading.Lock()
    start = time.monotonic()

    def worker():
        while time.monotonic() - start < seconds:
            limiter.acquire()
            with lock:
                admitted.append(time.monotonic() - start)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    admitted.sort()
    for i, at in enumerate(admitted):
        assert i + 1 <= rate * at + burst + 1, f"admission {i + 1} at {at:.3f} s is too early"
    assert len(admitted) >= 0.5 * rate * seconds


# --- retry -----------------------------------------------------------------------------------


def failing(errors: list[Exception], result: object = "ok"):
    """A callable that raises the given errors in turn, then returns ``result``."""
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    fn.calls = calls
    return fn


def test_retry_succeeds_after_transient_failures():
    clock = FakeClock()
    fn = failing([TransientDataError("429"), TransientDataError("timeout")])
    assert retry(fn, attempts=4, backoff=0.2, sleep=clock.sleep) == "ok"
    assert len(fn.calls) == 3
    for delay, base in zip(clock.sleeps, [0.2, 0.4], strict=True):
        assert base <= delay <= base * (1 + JITTER)


def test_retry_gives_up_after_attempts_with_the_last_error():
    clock = FakeClock()
    errors = [TransientDataError(f"429 #{i}") for i in range(3)]
    fn = failing(errors)
    with pytest.raises(TransientDataError) as info:
        retry(fn, attempts=3, backoff=1.0, max_backoff=1.5, sleep=clock.sleep)
    assert info.value is errors[-1]
    assert len(fn.calls) == 3
    assert clock.sleeps[0] >= 1.0
    assert clock.sleeps[1] == 1.5


def test_retry_does_not_retry_other_errors():
    clock = FakeClock()
    fn = failing([DataError("no such symbol"), TransientDataError("never reached")])
    with pytest.raises(DataError, match="no such symbol"):
        retry(fn, sleep=clock.sleep)
    assert len(fn.calls) == 1
    assert clock.sleeps == []


def test_retry_on_other_exceptions():
    clock = FakeClock()
    fn = failing([TimeoutError("slow")])
    assert retry(fn, retry_on=(TimeoutError,), sleep=clock.sleep) == "ok"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"attempts": 0}, "retry.attempts must be >= 1, not 0"),
    ({"backoff": -1}, "retry.backoff must be >= 0, not -1"),
    ({"max_backoff": -0.5}, "retry.max_backoff must be >= 0, not -0.5"),
])
def test_retry_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        retry(lambda: None, **kwargs)


# --- ThrottledSource -------------------------------------------------------------------------


def throttled(source, **kwargs) -> ThrottledSource:
    settings = {"requests_per_second": 1000.0, "burst": 10, "attempts": 4, "backoff": 0.001}
    return ThrottledSource(source, **{**settings, **kwargs})


def test_throttled_source_retries_a_flaky_source_end_to_end():
    flaky = FlakySource(failures=2)
    source = throttled(flaky)
    assert isinstance(source, DataSource)
    assert source.name == "flaky"
    bars = source.bars("ACME")
    np.testing.assert_array_equal(bars.close, [1.0, 2.0])
    assert flaky.calls == {"ACME": 3}
    pd.testing.assert_frame_equal(source.history("BETA"), bars.to_frame())
    assert flaky.calls == {"ACME": 3, "BETA": 3}


def test_throttled_source_gives_up_and_keeps_permanent_errors():
    with pytest.raises(TransientDataError, match="HTTP 429 for ACME"):
        throttled(FlakySource(failures=9), attempts=3).bars("ACME")
    permanent = FlakySource(failures=1, error=DataError)
    with pytest.raises(DataError):
        throttled(permanent).bars("ACME")
    assert permanent.calls == {"ACME": 1}


def test_throttled_source_passes_universe_and_snapshot_through():
    source = throttled(FlakySource())
    assert list(source.universe()["symbol"]) == ["ACME"]
    with pytest.raises(TransientDataError, match="snapshot is not retried"):
        source.snapshot()


def test_throttled_source_rate_limits_every_attempt():
    flaky = FlakySource(failures=2)
    source = throttled(flaky, requests_per_second=50.0, burst=1, backoff=0.0)
    start = time.monotonic()
    source.bars("ACME")
    source.bars("BETA")
    assert time.monotonic() - start >= 5 / 50.0 * 0.9  # 6 attempts, the first one free


def test_throttled_source_pickles_with_a_fresh_limiter():
    source = throttled(FlakySource(failures=0), requests_per_second=0.01, burst=2)
    source.bars("ACME")
    assert source._limiter.try_acquire() and not source._limiter.try_acquire()
    clone = pickle.loads(pickle.dumps(source))
    assert "_limiter" not in source.__getstate__()
    assert repr(clone) == repr(source)
    assert clone._limiter.rate == 0.01 and clone._limiter.burst == 2
    assert clone._limiter.try_acquire()  # a full bucket of its own
    np.testing.assert_array_equal(clone.bars("ACME").close, [1.0, 2.0])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"requests_per_second": 0}, "ThrottledSource.requests_per_second must be > 0, not 0"),
    ({"burst": 0}, "ThrottledSource.burst must be >= 1, not 0"),
    ({"attempts": 0}, "ThrottledSource.attempts must be >= 1, not 0"),
    ({"backoff": -1}, "ThrottledSource.backoff must be >= 0, not -1"),
])
def test_throttled_source_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        ThrottledSource(FlakySource(), **kwargs)
    with pytest.raises(TypeError, match="ThrottledSource.source must be a DataSource"):
        ThrottledSource(object())
