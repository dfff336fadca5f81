"""ScanTally: one scan's messages folded into rows and counts, for any reader of a stream.

The dashboard's controller, the ``technic-scan`` table and anyone else who shows a scan
read the same messages and need the same answers: one row per symbol (its latest
``result`` or ``update``), how many results per signal, the best rating, the errors, how
far the scan has got, its rate and when it will be done. :class:`ScanTally` gives them,
from the messages alone, and imports neither Panel nor Bokeh: a view feeds its own models
from it.

>>> tally = ScanTally()
>>> tally.add({"type": "progress", "data": {"processed": 5, "total": 20},
...            "metadata": {"scan_id": "scan_1", "seq": 1}})
>>> (tally.processed, tally.total, tally.last_seq)
(5, 20, 1)
>>> measure_pace(processed=5, total=20, elapsed=2.0)
Pace(rate=2.5, eta=6.0)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from technic_panel.vocabulary import SIGNALS

Row = dict[str, Any]
"""One symbol's latest result data."""


class Pace(NamedTuple):
    """How fast a scan goes: symbols per second, and seconds left at that rate."""

    rate: float
    eta: float | None
    """None while the rate is unknown (nothing processed yet)."""


def measure_pace(processed: int, total: int, elapsed: float) -> Pace:
    """Return the rate of ``processed`` symbols in ``elapsed`` s and the ETA of ``total``."""
    rate = processed / elapsed if elapsed > 0 else 0.0
    return Pace(rate, (total - processed) / rate if rate > 0 else None)


class RowChange(NamedTuple):
    """What one ``result`` or ``update`` did: the symbol, its new row and its previous one."""

    symbol: str
    row: Row
    previous: Row | None
    """None for a symbol's first row."""

    def became(self, signal: str) -> bool:
        """Whether the symbol has ``signal`` now and did not have it before."""
        return self.row["signal"] == signal and (
            self.previous is None or self.previous["signal"] != signal)


class ScanTally:
    """Fold one scan's messages, in seq order, into rows by symbol and counters.

    Not thread-safe: feed it from one thread (the one that reads the subscription).

    Parameters
    ----------
    elapsed
        Seconds the scan has already run (when a reader joins a scan under way).
    clock
        Seconds for the elapsed time, rate and ETA; tests inject a fake one.
    """

    def __init__(self, *, elapsed: float = 0.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started = clock() - elapsed
        self.rows: dict[str, Row] = {}
        """Every symbol's latest result, in order of first arrival."""
        self.processed = self.total = self.errors = self.last_seq = 0
        self.scan_id: str | None = None
        self.final: Row | None = None
        """The ``final`` message's data, once it has arrived."""
        self.best_symbol: str | None = None
        """The symbol with the highest tech_rating (None before any result)."""
        self._signals: Counter[str] = Counter()
        self._rating_sum = 0.0

    def __repr__(self) -> str:
        return (f"ScanTally(rows={len(self.rows)}, processed={self.processed}, "
                f"total={self.total}, errors={self.errors}, last_seq={self.last_seq})")

    @property
    def signal_counts(self) -> dict[str, int]:
        """Rows per signal, every signal named (0 when none has it)."""
        return {signal: self._signals[signal] for signal in SIGNALS}

    @property
    def mean_rating(self) -> float | None:
        """The mean tech_rating of the rows (None before any)."""
        return self._rating_sum / len(self.rows) if self.rows else None

    def elapsed(self) -> float:
        """Return the seconds since the scan started."""
        return self._clock() - self._started

    def pace(self) -> Pace:
        """Return the rate of the symbols processed so far and the ETA of the rest."""
        return measure_pace(self.processed, self.total, self.elapsed())

    def add_all(self, messages: Iterable[Mapping[str, Any]]) -> list[RowChange]:
        """Fold ``messages`` in; return what their results and updates changed, in order."""
        changes = [self.add(message) for message in messages]
        return [change for change in changes if change is not None]

    def add(self, message: Mapping[str, Any]) -> RowChange | None:
        """Fold one message in; return the row change of a ``result`` or ``update``.

        Errors are counted unless they are a reader's local notice (``metadata.local``,
        such as ``behind_window``); ``processed`` never goes back.
        """
        kind, data, metadata = message["type"], message["data"], message["metadata"]
        self.scan_id, self.last_seq = metadata["scan_id"], metadata["seq"]
        change = self._add_row(data) if kind in ("result", "update") else None
        if kind == "error" and not metadata.get("local"):
            self.errors += 1
        elif kind == "final":
            self.final = data
        if "total_processed" in data:
            self.processed = max(self.processed, data["total_processed"])
            self.total = data["total_processed"] + data["total_remaining"]
        elif kind in ("progress", "final"):
            self.processed, self.total = max(self.processed, data["processed"]), data["total"]
        return change

    def _add_row(self, row: Row) -> RowChange:
        symbol = row["symbol"]
        previous = self.rows.get(symbol)
        if previous is not None:
            self._signals[previous["signal"]] -= 1
            self._rating_sum -= previous["tech_rating"]
        self.rows[symbol] = row
        self._signals[row["signal"]] += 1
        self._rating_sum += row["tech_rating"]
        self._track_best(symbol, previous)
        return RowChange(symbol, row, previous)

    def _track_best(self, symbol: str, previous: Row | None) -> None:
        rows, rating = self.rows, self.rows[symbol]["tech_rating"]
        if self.best_symbol == symbol and previous is not None \
                and rating < previous["tech_rating"]:
            self.best_symbol = max(rows, key=lambda name: rows[name]["tech_rating"])
        elif self.best_symbol is None or rating > rows[self.best_symbol]["tech_rating"]:
            self.best_symbol = symbol
