"""EarlyTerminationCriteria: when a scan has found enough and should stop.

Four criteria, named by the reason each gives in the ``final`` message:

- ``max_signals``: ``max_signals`` high-quality results have arrived, where
  high quality is a signal in ``quality_signals`` with tech_rating >= ``min_rating``;
- ``max_fraction``: that share of the universe has been processed;
- ``timeout``: that many seconds have passed, fired by a timer, so it holds
  even when no result arrives;
- ``manual``: someone asked (a Stop button, ``POST /scan/stop``, Ctrl-C);
- ``inactive``: the StreamManager stopped a scan nobody watched or polled.

The first criterion to fire wins; later ones are ignored. Checks are cheap and
thread-safe; the timer is the only thread, and :meth:`cancel` ends it.

A live scan (``live=True``) keeps going after its first pass, so ``max_signals`` and
``max_fraction`` end that pass only: they are recorded as ``initial_reason`` and leave
``reason`` to what ends the scan (``timeout``, ``manual``, ``inactive``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from types import UnionType
from typing import TYPE_CHECKING

from technic_panel.vocabulary import SIGNALS, STOP_REASONS, require

if TYPE_CHECKING:
    from technic_panel.config import ScanConfig


class EarlyTerminationCriteria:
    """Decide when to end a scan early; see the module docs for the criteria."""

    def __init__(self, *, max_signals: int | None = None,
                 quality_signals: Iterable[str] = ("STRONG_BUY",), min_rating: float = 0.0,
                 max_fraction: float | None = None, timeout: float | None = None,
                 live: bool = False) -> None:
        owner = "EarlyTerminationCriteria"
        self.quality_signals = frozenset(quality_signals)
        unknown = sorted(self.quality_signals - set(SIGNALS))
        if unknown or not self.quality_signals:
            raise ValueError(f"{owner}.quality_signals must be a non-empty subset of "
                             f"{', '.join(SIGNALS)}, not {sorted(self.quality_signals)}")
        require(owner, "max_signals", max_signals, "an integer >= 1",
                max_signals is None or (_is_number(max_signals, int) and max_signals >= 1))
        require(owner, "min_rating", min_rating, "a number in [0, 100]",
                _is_number(min_rating, int | float) and 0 <= min_rating <= 100)
        require(owner, "max_fraction", max_fraction, "in (0, 1]",
                max_fraction is None or 0 < max_fraction <= 1)
        require(owner, "timeout", timeout, "finite and > 0",
                timeout is None or (math.isfinite(timeout) and timeout > 0))
        self.max_signals, self.min_rating = max_signals, min_rating
        self.max_fraction, self.timeout = max_fraction, timeout
        self.live = live
        self.quality_count = 0
        self.reason: str | None = None
        self.initial_reason: str | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def __repr__(self) -> str:
        return (f"EarlyTerminationCriteria(max_signals={self.max_signals}, "
                f"max_fraction={self.max_fraction}, timeout={self.timeout}, "
                f"quality_count={self.quality_count}, reason={self.reason!r})")

    @classmethod
    def from_config(cls, config: ScanConfig) -> EarlyTerminationCriteria:
        """Build the criteria from a :class:`~technic_panel.config.ScanConfig`."""
        return cls(max_signals=config.max_signals, quality_signals=config.quality_signals,
                   min_rating=config.min_rating, max_fraction=config.max_fraction,
                   timeout=config.timeout, live=config.live)

    def is_quality(self, result: Mapping) -> bool:
        """Whether ``result`` counts towards ``max_signals``."""
        return (result.get("signal") in self.quality_signals
                and result.get("tech_rating", -1.0) >= self.min_rating)

    def observe_result(self, result: Mapping, processed: int, total: int) -> str | None:
        """Count one result; return the reason if a criterion fires now, else ``None``."""
        if self.is_quality(result):
            with self._lock:
                self.quality_count += 1
                enough = self.max_signals is not None and self.quality_count >= self.max_signals
            if enough and self._end_pass("max_signals"):
                return "max_signals"
        return self.observe_progress(processed, total)

    def observe_progress(self, processed: int, total: int) -> str | None:
        """Check the fraction processed; return ``"max_fraction"`` if it fires now."""
        if (self.max_fraction is not None and total > 0
                and processed >= self.max_fraction * total and self._end_pass("max_fraction")):
            return "max_fraction"
        return None

    def _end_pass(self, reason: str) -> bool:
        """Fire ``reason`` (a live scan: record it as the first pass's); return if it won."""
        if not self.live:
            return self.fire(reason)
        with self._lock:
            if self.reason is not None or self.initial_reason is not None:
                return False
            self.initial_reason = reason
            return True

    def fire(self, reason: str) -> bool:
        """Record ``reason`` unless another already fired; return whether this one won."""
        if reason not in STOP_REASONS:
            raise ValueError(f"EarlyTerminationCriteria reason must be one of "
                             f"{', '.join(STOP_REASONS)}, not {reason!r}")
        with self._lock:
            if self.reason is not None:
                return False
            self.reason = reason
            return True

    def start_timer(self, on_timeout: Callable[[], None]) -> None:
        """Start the timeout timer, if there is a timeout: it fires and calls ``on_timeout``."""
        if self.timeout is None:
            return

        def expire() -> None:
            if self.fire("timeout"):
                on_timeout()

        with self._lock:
            self._timer = threading.Timer(self.timeout, expire)
            self._timer.name = "technic-timeout"
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        """Cancel the timer and wait for its thread to end; safe to call twice."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join()


def _is_number(value: object, kind: type | UnionType) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)

