"""The results table's side of the controller: which rows the ColumnDataSource shows.

:class:`ResultsTable` remembers where each symbol's row is and what the source has not
been sent yet, so the controller streams new rows and patches changed ones in one flush,
on the document's thread (it touches the Bokeh source only in :meth:`ResultsTable.flush`).
The source holds the columns the table's views show (:data:`TABLE_COLUMNS`), two of them
derived from the trade plan (:func:`plan_distances`); the full results stay with the
controller.

Live, four more columns (:data:`LIVE_COLUMNS`) carry what the view marks: ``flash``, the
table fields the row's last update changed, and ``flashes``, a count that rises with each
change (the browser flashes those cells when it sees the count rise); ``new``, ``"new"``
while the row entered (first arrived live, or entered the filter) within the last
``new_bars`` bars of the feed clock (:meth:`ResultsTable.advance`); ``feed_time``, when
the feed handed over the bar of the row's last change (UTC ms), from which the page can
time feed to row (benchmarks/bench_live.py does). Changed rows are patched in place, never
streamed again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from bokeh.models import ColumnDataSource

from technic_panel.streaming.tally import RowChange

TEXT_COLUMNS = ("symbol", "sector", "signal", "side")
"""Text columns of :attr:`ScanController.cds`."""

NUMBER_COLUMNS = ("tech_rating", "alpha_score", "price", "change_pct", "market_cap",
                  "avg_dollar_volume_20", "rsi_14", "adx_14", "rel_volume", "roc_5", "roc_21",
                  "atr_pct", "dist_high_52w", "entry", "stop", "target", "reward_risk",
                  "risk_pct", "reward_pct")
"""Numeric columns, held as float64 arrays: Bokeh sends those as binary buffers, not JSON lists.

``risk_pct`` and ``reward_pct`` are derived: the stop's and the target's distance from the
entry, in percent of it (:func:`plan_distances`).
"""

TABLE_COLUMNS = TEXT_COLUMNS + NUMBER_COLUMNS
"""Result columns of :attr:`ScanController.cds`: one row per symbol, in arrival order."""

LIVE_COLUMNS = ("new", "flash", "flashes", "feed_time")
"""The live marks of each row (see the module docs); blank outside a live scan."""

_PLAN = {"entry", "stop", "target"}
_FLOATS = {*NUMBER_COLUMNS, "flashes", "feed_time"}


class LiveMarks:
    """One row's live marks: its new marker, the fields that last changed, how often, when."""

    __slots__ = ("new", "flash", "flashes", "feed_time", "entered")

    def __init__(self) -> None:
        self.new, self.flash, self.flashes, self.feed_time = "", "", 0.0, np.nan
        self.entered: int | None = None
        """The feed-clock bar the row entered at (None: not new)."""

    def cells(self) -> dict[str, Any]:
        """Return the row's :data:`LIVE_COLUMNS` cells."""
        return {"new": self.new, "flash": self.flash, "flashes": self.flashes,
                "feed_time": self.feed_time}


class ResultsTable:
    """Which symbols :attr:`ScanController.cds` shows, where, and what it has not been sent."""

    def __init__(self, new_bars: int = 3) -> None:
        self.index: dict[str, int] = {}
        self.new_bars = new_bars
        """A row that entered within this many bars of the feed clock is marked new."""
        self.marks: dict[str, LiveMarks] = {}
        self.bar = 0
        """Bars of the feed clock so far (:meth:`advance`)."""
        self._new: list[str] = []
        self._changed: set[str] = set()
        self._entered: set[str] = set()
        """Symbols whose rows carry the new marker (so :meth:`advance` looks at these only)."""

    def __repr__(self) -> str:
        return (f"ResultsTable(rows={len(self.index)}, new={len(self._new)}, "
                f"changed={len(self._changed)})")

    def note(self, change: RowChange) -> None:
        """Remember a row to stream (a new symbol) or to patch (one the table shows)."""
        self._mark(change)
        if change.previous is None:
            self._new.append(change.symbol)
        elif change.symbol in self.index:
            self._changed.add(change.symbol)

    def advance(self, bars: int) -> None:
        """Move the feed clock to ``bars``; rows that entered ``new_bars`` ago lose the marker."""
        self.bar = bars
        for symbol in [symbol for symbol in self._entered
                       if bars - self.marks[symbol].entered >= self.new_bars]:
            marks = self.marks[symbol]
            marks.new, marks.entered = "", None
            self._entered.discard(symbol)
            if symbol in self.index:
                self._changed.add(symbol)

    def _mark(self, change: RowChange) -> None:
        """Note a live row's changed fields and whether it entered just now."""
        row, previous = change.row, change.previous
        if row.get("bar_time") is None:
            return
        marks = self.marks.setdefault(change.symbol, LiveMarks())
        if row.get("feed_time") is not None:
            marks.feed_time = float(row["feed_time"])
        entered = previous is None or (previous.get("in_filter") is False
                                       and row.get("in_filter") is True)
        if entered:
            marks.new, marks.entered = "new", self.bar
            self._entered.add(change.symbol)
        if previous is not None:
            changed = set(row.get("changed") or ())
            if changed & _PLAN:
                changed |= {"risk_pct", "reward_pct"}
            fields = [name for name in TABLE_COLUMNS if name in changed]
            if fields:
                marks.flash, marks.flashes = " ".join(fields), marks.flashes + 1

    def replace(self, cds: ColumnDataSource, rows: Mapping[str, dict[str, Any]]) -> None:
        """Send every row again at once (one event, not a patch per row): after a re-score.

        ``rows`` are in arrival order, as the source (a tally's rows are).
        """
        self._new.clear()
        self._changed.clear()
        self.index = {symbol: i for i, symbol in enumerate(rows)}
        cds.data = columns(list(rows.values()), self._cells(rows))

    def flush(self, cds: ColumnDataSource, rows: Mapping[str, dict[str, Any]]) -> None:
        """Patch the rows already shown that changed, then stream the new ones.

        A number column whose cells changed is patched as one slice, from the first changed
        row to the last, of float64 (a binary buffer): patching thousands of live rows a
        second costs one array copy per column, not a Python object per cell for Bokeh to
        encode and the page to decode. A text column is patched only at the cells that
        changed, as (row, text) pairs: a slice of text is a list Bokeh encodes string by
        string (5,000 live rows, 500 changed a drain: ten times the strings, and half the
        drain's time).
        """
        if self._changed:
            cds.patch(self._patches(cds.data, rows))
            self._changed.clear()
        if self._new:
            first = len(self.index)
            self.index.update((symbol, first + i) for i, symbol in enumerate(self._new))
            cds.stream(columns([rows[symbol] for symbol in self._new], self._cells(self._new)))
            self._new.clear()

    def _patches(self, data: Mapping[str, Any],
                 rows: Mapping[str, dict[str, Any]]) -> dict[str, list]:
        """Return the patches of the changed rows (see :meth:`flush`)."""
        at = sorted((self.index[symbol], symbol) for symbol in self._changed)
        positions = np.array([i for i, _ in at])
        start, stop = at[0][0], at[-1][0] + 1
        marks = self._cells([symbol for _, symbol in at])
        cells = [{**table_row(rows[symbol]), **mark}
                 for (_, symbol), mark in zip(at, marks, strict=True)]
        patches: dict[str, list] = {}
        for name in (*TABLE_COLUMNS, *LIVE_COLUMNS):
            column = data[name]
            if name in _FLOATS:
                old = column[start:stop]
                span = np.array(old, dtype=float)
                span[positions - start] = [cell[name] for cell in cells]
                if not np.array_equal(old, span, equal_nan=True):
                    patches[name] = [(slice(start, stop), span)]
            else:
                changed = [(i, cell[name]) for (i, _), cell in zip(at, cells, strict=True)
                           if column[i] != cell[name]]
                if changed:
                    patches[name] = changed
        return patches

    def _cells(self, symbols: Any) -> list[dict[str, Any]]:
        blank = _BLANK.cells()
        return [self.marks[s].cells() if s in self.marks else blank for s in symbols]


def plan_distances(row: Mapping[str, Any]) -> tuple[float, float]:
    """Return the stop's and the target's distance from the entry, in percent of the entry.

    Both are positive for a long and a short plan alike (a short's stop lies above its
    entry); NaN without a plan.
    """
    entry, stop, target = (row.get(name) for name in ("entry", "stop", "target"))
    if entry is None or stop is None or target is None or not entry > 0:
        return np.nan, np.nan
    return abs(entry - stop) / entry * 100.0, abs(target - entry) / entry * 100.0


def table_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return one result as the table holds it: NaN for a missing number, derived columns."""
    risk, reward = plan_distances(row)
    cells: dict[str, Any] = {name: row.get(name) for name in TEXT_COLUMNS}
    cells.update({name: np.nan if row.get(name) is None else float(row[name])
                  for name in NUMBER_COLUMNS})
    cells.update(risk_pct=risk, reward_pct=reward)
    return cells


def columns(rows: list[Mapping[str, Any]],
            marks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return table columns of ``rows``: float64 arrays for numbers (NaN for None), lists.

    ``marks``: each row's :data:`LIVE_COLUMNS` cells (default: blank).
    """
    cells = [table_row(row) for row in rows]
    live = marks if marks is not None else [_BLANK.cells()] * len(rows)
    data: dict[str, Any] = {name: [cell[name] for cell in cells] for name in TEXT_COLUMNS}
    data.update({name: np.array([cell[name] for cell in cells], dtype=float)
                 for name in NUMBER_COLUMNS})
    data.update(new=[mark["new"] for mark in live], flash=[mark["flash"] for mark in live],
                flashes=np.array([mark["flashes"] for mark in live], dtype=float),
                feed_time=np.array([mark["feed_time"] for mark in live], dtype=float))
    return data


_BLANK = LiveMarks()


ERROR_COLUMNS = ("symbol", "error", "message")
"""Columns of :attr:`ScanController.error_rows`: who failed, in what, and why."""


def error_columns(errors: list[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Return the columns of failed symbols' ``error`` data (a scan's own error: no symbol)."""
    return {name: [str(error.get(name) or "") for error in errors] for name in ERROR_COLUMNS}
