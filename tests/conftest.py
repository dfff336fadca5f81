"""Shared test helpers: polling instead of sleeping, and thread-leak checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.005):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


@pytest.fixture
def no_thread_leaks():
    """Fail the test if it leaves behind threads it started."""
    before = set(threading.enumerate())
    yield
    wait_until(lambda: not (set(threading.enumerate()) - before), timeout=10)
