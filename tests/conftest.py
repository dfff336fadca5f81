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


@pytest.fixture
def panel_state():
    """Reset Panel's global state after the test, as Panel's own tests do."""
    import panel as pn

    yield
    pn.state.reset()


@pytest.fixture
def dashboard_manager(panel_state):
    """A StreamManager for dashboard tests, shut down (with Panel's state reset) after."""
    from technic_panel.streaming.manager import StreamManager

    manager = StreamManager(inactivity_timeout=60)
    yield manager
    manager.shutdown()
