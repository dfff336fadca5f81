"""The results table's side of the controller: which rows the ColumnDataSource shows.

:class:`ResultsTable` remembers where each symbol's row is and what the source has not
been sent yet, so the controller streams new rows and patches changed ones in one flush,
on the document's thread (it touches the Bokeh source only in :meth:`ResultsTable.flush`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from bokeh.models import ColumnDataSource

from technic_panel.streaming.tally import RowChange

TABLE_COLUMNS = ("symbol", "sector", "signal", "tech_rating", "alpha_score", "price",
                 "change_pct", "priority_tier", "entry", "stop", "target")
"""Columns of :attr:`ScanController.cds`: one row per symbol, in arrival order."""

NUMBER_COLUMNS = frozenset({"tech_rating", "alpha_score", "price", "change_pct", "entry",
                            "stop", "target"})
"""Columns held as float64 arrays: Bokeh sends those as binary buffers, not JSON lists."""


class ResultsTable:
    """Which symbols :attr:`ScanController.cds` shows, where, and what it has not been sent."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self._new: list[str] = []
        self._changed: set[str] = set()

    def note(self, change: RowChange) -> None:
        """Remember a row to stream (a new symbol) or to patch (one the table shows)."""
        if change.previous is None:
            self._new.append(change.symbol)
        elif change.symbol in self.index:
            self._changed.add(change.symbol)

    def flush(self, cds: ColumnDataSource, rows: Mapping[str, dict[str, Any]]) -> None:
        """Patch the rows already shown that changed, then stream the new ones."""
        if self._changed:
            patches: dict[str, list] = {name: [] for name in TABLE_COLUMNS}
            for symbol in self._changed:
                row = rows[symbol]
                for name in TABLE_COLUMNS:
                    patches[name].append((self.index[symbol], cell(name, row.get(name))))
            cds.patch(patches)
            self._changed.clear()
        if self._new:
            first = len(self.index)
            self.index.update((symbol, first + i) for i, symbol in enumerate(self._new))
            cds.stream(columns([rows[symbol] for symbol in self._new]))
            self._new.clear()


def cell(name: str, value: Any) -> Any:
    """Return ``value`` as the table holds it: NaN for a missing number."""
    return np.nan if value is None and name in NUMBER_COLUMNS else value


def columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Return table columns of ``rows``: float64 arrays for numbers (NaN for None), lists."""
    return {name: (np.array([cell(name, row.get(name)) for row in rows], dtype=float)
                   if name in NUMBER_COLUMNS else [row.get(name) for row in rows])
            for name in TABLE_COLUMNS}
