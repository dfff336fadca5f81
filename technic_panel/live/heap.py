"""The process heap frozen while live scans run, so the collector's full passes stay short.

A live scan holds its universe's indicator states and the process its modules, functions
and types: some 150,000 long-lived objects that every full pass of the garbage collector
walks while the bars wait (tens of milliseconds at 5,000 symbols, several times a minute).
:func:`frozen_heap` freezes what exists when the first live scan starts (after a
collection, so no garbage is frozen) and unfreezes it when the last one ends, so nothing
frozen outlives the live scans: it is collected as usual from then on.

What a live scan keeps after it started ages too: its stream's retained window, 100,000
messages that renew every 20 s at 5,000 bars a second. Left to the collector, they made
each full pass 0.5-0.6 s, twice every 30 s, from the first minute on (feed-to-message p99
77 ms in the first 30 s, 250-630 ms after). So the live rows call :func:`refreeze` as they
run: every :data:`REFREEZE_SECONDS` it collects the young generations and freezes what
survived. A frozen object that is let go is still freed at once (reference counting); only
a cycle formed among frozen objects waits for the last live scan's end.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator

REFREEZE_SECONDS = 2.0
"""Seconds between two freezes of what the running live scans retained."""

_lock = threading.Lock()
_live = 0
_frozen_at = float("-inf")


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the heap as it stood at the first entry frozen until the last exit (any thread)."""
    global _live, _frozen_at
    with _lock:
        _live += 1
        if _live == 1:
            gc.collect()
            gc.freeze()
            _frozen_at = time.monotonic()
    try:
        yield
    finally:
        with _lock:
            _live -= 1
            if _live == 0:
                gc.unfreeze()


def refreeze(clock: Callable[[], float] = time.monotonic) -> bool:
    """Freeze what survived since the last freeze, if live scans run and its time has come.

    The young generations are collected first, so young garbage is not frozen. Returns
    whether it froze.
    """
    global _frozen_at
    with _lock:
        now = clock()
        if not _live or now - _frozen_at < REFREEZE_SECONDS:
            return False
        gc.collect(1)
        gc.freeze()
        _frozen_at = now
        return True
