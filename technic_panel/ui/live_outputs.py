"""The live figures of a dashboard: alerts, bars per second, the feed clock and the latency.

:class:`LiveFigures` folds a live scan's messages, in seq order, as the controller applies
them: ``alert`` messages into a bounded list, newest first; the ``progress`` messages' bars
per second; the feed clock (the latest ``bar_time``) and how many bars it has moved on;
and the update latency, from each row's ``feed_time`` (when the feed handed its bar over)
to the moment the controller applied it to the table (:meth:`LiveFigures.applied`). It
imports neither Panel nor Bokeh.

Not thread-safe: the thread that applies the messages (the document's) feeds it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

ALERTS_KEPT = 100
"""Most alerts remembered (and shown), newest first."""

LATENCY_SAMPLES = 500
"""Latest rows whose feed-to-applied latency the figures summarise."""

ALERT_FIELDS = ("symbol", "rule", "signal", "previous_signal", "tech_rating", "bar_time")
"""What an alert shows."""


def wall_ms() -> float:
    """Return the UTC wall clock in milliseconds (the clock of a bar's ``feed_time``)."""
    return time.time_ns() / 1_000_000


class LiveFigures:
    """A live scan's alerts and figures, from its messages; see the module docs."""

    def __init__(self) -> None:
        self.alerts: deque[dict[str, Any]] = deque(maxlen=ALERTS_KEPT)
        """The latest alerts, newest first."""
        self.alerts_total = 0
        self.bars_per_second: float | None = None
        self.feed_clock: str | None = None
        """The latest ``bar_time`` applied (ISO-8601 UTC)."""
        self.bars = 0
        """How often the feed clock moved on."""
        self._latency: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._pending: list[int] = []

    def __repr__(self) -> str:
        return (f"LiveFigures(alerts={self.alerts_total}, bars={self.bars}, "
                f"feed_clock={self.feed_clock!r})")

    def add_all(self, messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Fold ``messages`` in; return their alerts, oldest first."""
        new = []
        for message in messages:
            kind, data = message["type"], message["data"]
            if kind == "alert":
                alert = {name: data.get(name) for name in ALERT_FIELDS}
                self.alerts.appendleft(alert)
                new.append(alert)
            elif kind in ("progress", "final") and data.get("live"):
                self.bars_per_second = data.get("bars_per_second")
            elif kind in ("result", "update") and data.get("bar_time") is not None:
                self._clock(data["bar_time"])
                if data.get("feed_time") is not None:
                    self._pending.append(data["feed_time"])
        self.alerts_total += len(new)
        return new

    def _clock(self, bar_time: str) -> None:
        if self.feed_clock is None or bar_time > self.feed_clock:
            self.bars += self.feed_clock is not None
            self.feed_clock = bar_time

    def applied(self, now_ms: float | None = None) -> None:
        """Count the rows folded in since the last call as applied now (wall clock, ms)."""
        now = wall_ms() if now_ms is None else now_ms
        self._latency.extend(now - feed_time for feed_time in self._pending)
        self._pending.clear()

    def latency_ms(self, q: float = 0.5) -> float | None:
        """Return the ``q`` quantile of the latest feed-to-applied latencies (None: none)."""
        return float(np.quantile(self._latency, q)) if self._latency else None

    def outputs(self) -> dict[str, Any]:
        """Return the controller outputs these figures give."""
        return {"alerts": list(self.alerts), "alerts_total": self.alerts_total,
                "bars_per_second": self.bars_per_second, "feed_clock": self.feed_clock,
                "update_latency_ms": self.latency_ms(),
                "update_latency_ms_p99": self.latency_ms(0.99)}
