"""Picklable test doubles that scans ship to worker processes (process and Dask executors).

Why a separate module: ``tests/`` is not a package (test modules import their
helpers as ``from helpers import wait_until``), so pytest's default
``prepend`` import mode puts ``tests/`` itself on ``sys.path`` and imports test
files by their bare name. Worker processes inherit that ``sys.path``: the
forkserver behind the process pool receives the parent's path when it starts,
and Dask's LocalCluster spawns its workers with it. So they can import this
small module by name, ``scan_helpers``, and unpickle its classes, without ever
importing a test module (and pytest with it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import pandas as pd

from technic_panel.data.base import Bars, DataSource


class DelayedSource:
    """Wrap ``inner``; :meth:`bars` of the symbols in ``slow`` first waits ``delay`` seconds.

    Emulates a provider that is slow for a few symbols, to show that results
    are emitted in completion order rather than submission order.
    """

    name = "delayed"

    def __init__(self, inner: DataSource, slow: Iterable[str], delay: float) -> None:
        self.inner = inner
        self.slow = frozenset(slow)
        self.delay = float(delay)

    def __repr__(self) -> str:
        return f"DelayedSource({self.inner!r}, slow={sorted(self.slow)}, delay={self.delay})"

    def universe(self) -> pd.DataFrame:
        """Return the inner source's universe."""
        return self.inner.universe()

    def snapshot(self) -> pd.DataFrame:
        """Return the inner source's snapshot (the scan order does not change)."""
        return self.inner.snapshot()

    def history(self, symbol: str) -> pd.DataFrame:
        """Return ``symbol``'s bars as a DataFrame, after the same delay as :meth:`bars`."""
        return self.bars(symbol).to_frame()

    def bars(self, symbol: str) -> Bars:
        """Return ``symbol``'s bars, ``delay`` seconds late if it is one of the slow ones."""
        if symbol in self.slow:
            time.sleep(self.delay)
        return self.inner.bars(symbol)
