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


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Debian's) for a module's browser tests; skips or fails without it."""
    from browser_helpers import CHROMIUM, CHROMIUM_ARGS, require_chromium
    from playwright.sync_api import sync_playwright

    require_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
