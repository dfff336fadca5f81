"""What the controller's read-only outputs are made of: counters, the outcome, dates, failures.

Pure functions of a :class:`~technic_panel.streaming.tally.ScanTally` and of messages, plus
:class:`PauseClock`, the time a scan spent paused: the rate and the ETA count only the time
it ran, so they stand still while it is paused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from technic_panel.streaming.tally import ScanTally, measure_pace


class PauseClock:
    """Seconds spent paused, so far; not thread-safe (the controller's lock guards it)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._since: float | None = None
        self._total = 0.0

    def __repr__(self) -> str:
        return f"PauseClock(paused={self._since is not None}, seconds={self.seconds():.3f})"

    def pause(self) -> None:
        """Start counting paused time (a no-op while already paused)."""
        if self._since is None:
            self._since = self._clock()

    def resume(self) -> None:
        """Stop counting paused time (a no-op while not paused)."""
        if self._since is not None:
            self._total += self._clock() - self._since
            self._since = None

    def seconds(self) -> float:
        """Return the seconds spent paused, the current pause included."""
        return self._total + (self._clock() - self._since if self._since is not None else 0.0)


def counters(tally: ScanTally, paused: float) -> dict[str, Any]:
    """Return the outputs that follow every message: progress, pace, counts, best symbol.

    ``paused`` seconds are left out of the rate. Processed is at least the rows and errors
    received, so the table never runs ahead of it.
    """
    elapsed = tally.elapsed()
    processed = max(tally.processed, len(tally.rows) + tally.errors)
    rate, eta = measure_pace(processed, tally.total, max(elapsed - paused, 0.0))
    return {"processed": processed, "total": tally.total, "rows": len(tally.rows),
            "elapsed": elapsed, "rate": rate, "eta": eta,
            "signal_counts": tally.signal_counts, "best_symbol": tally.best_symbol,
            "mean_rating": tally.mean_rating}


def outcome(final: Mapping[str, Any]) -> dict[str, Any]:
    """Return the outputs a ``final`` message sets: status, outcome, reason, final figures."""
    failed = final["status"] == "failed"
    return {"status": "failed" if failed else "finished", "outcome": final["status"],
            "reason": final.get("error") if failed else final.get("reason"),
            "elapsed": final["elapsed"], "rate": final["rate"], "eta": None,
            "errors": final["errors"]}


def row_dates(messages: Iterable[Mapping[str, Any]]) -> Iterable[tuple[str, str]]:
    """Yield (symbol, ``YYYY-MM-DD``) of each row: its bar's date if live, else the message's."""
    for message in messages:
        if message["type"] in ("result", "update"):
            data = message["data"]
            yield data["symbol"], (data.get("bar_time") or message["metadata"]["timestamp"])[:10]


def failures(messages: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Return the data of the ``error`` messages that are a symbol's (or the scan's) failure.

    A reader's local notice (``metadata.local``, such as ``behind_window``) is not one.
    """
    return [message["data"] for message in messages
            if message["type"] == "error" and not message["metadata"].get("local")]
