"""Fixtures shared by the tests; the shared helpers themselves live in ``helpers.py``."""

from __future__ import annotations

import threading

import pytest
from helpers import wait_until


@pytest.fixture(autouse=True)
def panel_state():
    """Reset Panel's global state after every test, as Panel's own tests do.

    Autouse, so no test leaks servers, sessions or periodic callbacks into the next; tests
    and fixtures may still request it by name to say that they rely on it.
    """
    import panel as pn

    yield
    pn.state.reset()


@pytest.fixture
def no_thread_leaks():
    """Fail the test if it leaves behind threads it started."""
    before = set(threading.enumerate())
    yield
    wait_until(lambda: not (set(threading.enumerate()) - before), timeout=10)


@pytest.fixture
def dashboard_manager(panel_state):
    """A StreamManager for dashboard tests, shut down (with Panel's state reset) after."""
    from technic_panel.streaming.manager import StreamManager

    manager = StreamManager(inactivity_timeout=60)
    yield manager
    manager.shutdown()
