"""The process heap frozen while live scans run, so the collector's full passes stay short.

A live scan holds its universe's indicator states and the process its modules, functions
and types: some 150,000 long-lived objects that every full pass of the garbage collector
walks while the bars wait (tens of milliseconds at 5,000 symbols, several times a minute).
:func:`frozen_heap` freezes what exists when the first live scan starts (after a
collection, so no garbage is frozen) and unfreezes it when the last one ends, so nothing
frozen outlives the live scans: it is collected as usual from then on.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_live = 0


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the heap as it stood at the first entry frozen until the last exit (any thread)."""
    global _live
    with _lock:
        _live += 1
        if _live == 1:
            gc.collect()
            gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _live -= 1
            if _live == 0:
                gc.unfreeze()
