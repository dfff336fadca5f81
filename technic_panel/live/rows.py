"""LiveRows: a live scan's rows kept current, one bar at a time, on the scan's own thread.

Mechanics: :meth:`LiveRows.run` opens every symbol's
:class:`~technic_panel.live.indicators.IndicatorState` on its history (the row it opens
with is the row the initial scan sent, and the alerts' starting point), then starts the
feed. The feed thread only puts bars into a bounded queue; this thread takes what has
arrived in one go (gathering for :data:`GATHER` seconds after the first), keeps every
closed bar and of the forming bars only the latest per symbol (a forming bar that a later
bar of its symbol supersedes carries nothing new), and for each bar advances (closed) or
peeks (forming) the symbol's state and re-scores it. The row goes to the stream (which
sends it as an ``update`` only if it changed) when the symbol passes the filter or was
sent before, with ``in_filter`` saying which; a closed bar may fire an alert
(:class:`~technic_panel.live.alerts.AlertRules`). A bar's messages carry its ``bar_time``
and ``feed_time``. The bars taken together are published together (``streamer.holding``).
Any failure of one symbol becomes that symbol's ``error`` (once, until it scores again);
the scan goes on.

It ends on :meth:`stop` (any thread: Stop, the timeout), or when the feed ends; the feed's
thread is joined before :meth:`run` returns, so nothing outlives it. :meth:`pause` keeps
the states advancing on closed bars but sends nothing until :meth:`resume`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from technic_panel.data.base import DataError, DataSource
from technic_panel.engine.expressions import FilterExpression
from technic_panel.engine.scanner import fill_result
from technic_panel.engine.scoring import Scorer
from technic_panel.live.alerts import AlertRules
from technic_panel.live.feeds import Bar, BarFeed, bar_timestamp, wall_ms
from technic_panel.live.heap import refreeze
from technic_panel.live.indicators import IndicatorState
from technic_panel.streaming.contract import MessageError
from technic_panel.streaming.streamer import ResultStreamer
from technic_panel.vocabulary import RESULT_COLUMNS

log = logging.getLogger(__name__)

_END = object()
MAX_TAKE = 200
"""Most bars taken off the queue at once (and so published together): some 10 ms of work, so
a bar behind a long take waits little (2,000 gave a p99 twice as long over SSE)."""
GATHER = 0.010
"""Seconds after a bar's hand-over that the bars following it are gathered into its take.
A feed hands bars over one by one; taking each as it came woke this thread, the stream's
subscribers and their writers some 450 times a second at 5,000 bars a second. Gathering
for 10 ms cut the server's CPU over SSE from 45% to 35% of a core (one 45-s run each), for
a latency 10 ms longer at most."""
LATENCY_WINDOW = 2000
"""Bars whose feed-to-scored latency the progress figures summarise."""


class LiveRows:
    """Re-score each symbol on every bar of ``feed`` into ``streamer``; see the module docs.

    Parameters
    ----------
    streamer
        The scan's stream.
    feed
        Where the bars come from.
    source
        Each symbol's history, to open its indicator state on.
    scorer
        The scan's frozen scoring rules.
    fields
        Each symbol's fixed fields (name, sector, ..., ``priority_tier``, ``batch_number``):
        the symbols this scan keeps live.
    filter
        Only symbols passing it are sent, unless they were sent before.
    alert_cooldown
        Least seconds of wall time between two alerts of a symbol.
    shown
        Symbols already sent (the initial scan's results).
    counts
        The initial scan's ``processed``, ``total``, ``results``, ``errors``, ``filtered``.
    progress
        Called (on this thread) at most every ``progress_interval`` s: sends a ``progress``.
    ratings, signals
        The scan's tech_rating by symbol and count of rows by signal, kept current.
    max_queue
        Most bars waiting; a feed that outruns the scan waits for room (or the stop).

    Warning: only :meth:`stop`, :meth:`pause`, :meth:`resume` and :meth:`stats` may be
    called from other threads.
    """

    def __init__(self, streamer: ResultStreamer, feed: BarFeed, source: DataSource,
                 scorer: Scorer, *, fields: Mapping[str, dict[str, Any]],
                 filter: str | None = None, alert_cooldown: float = 60.0,
                 shown: Iterable[str] = (), counts: Mapping[str, int] | None = None,
                 progress: Callable[[], None] | None = None, progress_interval: float = 0.25,
                 ratings: dict[str, float] | None = None,
                 signals: dict[str, int] | None = None, max_queue: int = 100_000) -> None:
        self.streamer, self.feed, self.source, self.scorer = streamer, feed, source, scorer
        self.fields = dict(fields)
        self.filter = FilterExpression(filter, RESULT_COLUMNS) if filter else None
        self.alerts = AlertRules(alert_cooldown)
        self._shown = set(shown)
        counts = counts or {}
        self.total = counts.get("total", len(self.fields))
        self.processed = counts.get("processed", 0)
        self.results, self.errors = counts.get("results", 0), counts.get("errors", 0)
        self.filtered = counts.get("filtered", 0)
        self.bars = self.sent = self.alerted = 0
        self._progress, self.progress_interval = progress, progress_interval
        self._ratings = ratings if ratings is not None else {}
        self._signals = signals if signals is not None else {}
        self._signal_of: dict[str, str] = {}
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._states: dict[str, IndicatorState] = {}
        self._erring: set[str] = set()
        self._stopped = threading.Event()
        self._feed_done = threading.Event()
        self._paused = False
        self._feed_error: BaseException | None = None
        self._latency: deque[int] = deque(maxlen=LATENCY_WINDOW)
        self._last: tuple[int, int] = (0, 0)
        self._started = time.monotonic()
        self._reported = float("-inf")

    def __repr__(self) -> str:
        return (f"LiveRows({self.feed!r}, symbols={len(self._states)}, bars={self.bars}, "
                f"sent={self.sent}, alerts={self.alerted}, stopped={self.stopped})")

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` has been called (or the feed has ended)."""
        return self._stopped.is_set()

    @property
    def paused(self) -> bool:
        """Whether the rows are paused (states advance, nothing is sent)."""
        return self._paused

    def stop(self) -> None:
        """End :meth:`run` soon (from any thread); safe to call twice."""
        self._stopped.set()
        self._wake()

    def pause(self) -> None:
        """Send nothing until :meth:`resume`; closed bars still advance the states."""
        self._paused = True

    def resume(self) -> None:
        """Send rows again; safe when not paused."""
        self._paused = False

    def stats(self) -> dict[str, Any]:
        """Return the live figures a ``progress`` message adds (thread-safe, approximate)."""
        latency = sorted(self._latency)
        elapsed = max(time.monotonic() - self._started, 1e-9)
        feed_time, bar_time = self._last
        return {
            "live": True, "bars": self.bars, "bars_per_second": round(self.bars / elapsed, 1),
            "updates": self.sent, "alerts": self.alerted, "live_symbols": len(self._states),
            "feed_time": feed_time or None, "bar_time": bar_timestamp(bar_time) if bar_time
            else None,
            "latency_ms_p50": _quantile(latency, 0.5), "latency_ms_p99": _quantile(latency, 0.99),
        }

    def run(self) -> None:
        """Open the states, start the feed and keep the rows current until stopped or ended.

        Raises whatever ended the feed, if it failed.
        """
        self._open_all()
        if self.stopped:
            return
        self._started = time.monotonic()
        self.feed.start(self._enqueue, self._feed_ended)
        try:
            while not self.stopped:
                self._apply_all(self._take())
                self._report()
                refreeze()
                if self._feed_done.is_set() and self._queue.empty():
                    break
        finally:
            self.stop()
            self.feed.stop()
            self._drain()
        if self._feed_error is not None:
            raise self._feed_error

    # --- the feed's thread --------------------------------------------------------------

    def _enqueue(self, bar: Bar) -> None:
        """Put one bar in the queue, waiting for room while the rows run."""
        while not self._stopped.is_set():
            try:
                self._queue.put(bar, timeout=0.05)
                return
            except queue.Full:
                continue

    def _feed_ended(self, error: BaseException | None) -> None:
        self._feed_error = error
        self._feed_done.set()
        self._wake()

    # --- this thread ----------------------------------------------------------------------

    def _wake(self) -> None:
        """Wake the thread if it waits on an empty queue (a full one keeps it busy)."""
        try:
            self._queue.put_nowait(_END)
        except queue.Full:
            pass

    def _take(self) -> list[Any]:
        """Return the bars that have arrived (waiting up to ``progress_interval`` for one).

        Once one has come, the bars that follow within :data:`GATHER` seconds of its hand-over
        are taken with it, unless a whole take already waits.
        """
        try:
            first = self._queue.get(timeout=self.progress_interval)
        except queue.Empty:
            return []
        taken = [first]
        if first is not _END and self._queue.qsize() < MAX_TAKE - 1:
            gathering = GATHER - max(wall_ms() - first.feed_time, 0) / 1000  # less its wait
            if gathering > 0:
                self._stopped.wait(gathering)
        while len(taken) < MAX_TAKE:
            try:
                taken.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return taken

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _apply_all(self, taken: list[Any]) -> None:
        if _END in taken:
            taken = taken[:taken.index(_END)]
            self._stopped.set()
        latest = {bar.symbol: index for index, bar in enumerate(taken)}
        with self.streamer.holding():
            for index, bar in enumerate(taken):
                if bar.closed or latest[bar.symbol] == index:
                    self._apply(bar)

    def _open_all(self) -> None:
        for symbol in self.fields:
            if self.stopped:
                return
            self._open(symbol)

    def _open(self, symbol: str) -> None:
        """Open ``symbol``'s state and start its alerts from its opening row."""
        try:
            state, indicators = IndicatorState.opened(symbol, self.source.bars(symbol))
            row: dict[str, Any] = dict(indicators)
            row.update(self.scorer.score(row))
        except DataError as exc:
            self._error(symbol, "data", str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the per-symbol boundary
            log.debug("live state of %s failed to open", symbol, exc_info=True)
            self._error(symbol, "internal", f"{type(exc).__name__}: {exc}")
            return
        self._states[symbol] = state
        self._erring.discard(symbol)
        if symbol in self._shown:
            self._signal_of[symbol] = str(row["signal"])
        self.alerts.start(symbol, str(row["signal"]), self._passes(self._data(symbol, row)))

    def _apply(self, bar: Bar) -> None:
        state = self._states.get(bar.symbol)
        if state is None:
            return
        self.bars += 1
        try:
            row: dict[str, Any] = state.update(bar) if bar.closed else state.peek(bar)
            row.update(self.scorer.score(row))
        except DataError as exc:
            self._error(bar.symbol, "data", str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the per-symbol boundary
            log.debug("live bar of %s failed", bar.symbol, exc_info=True)
            self._error(bar.symbol, "internal", f"{type(exc).__name__}: {exc}")
            return
        self._latency.append(wall_ms() - bar.feed_time)
        self._last = (bar.feed_time, bar.time)
        if not self._paused:
            self._send(bar, row)

    def _send(self, bar: Bar, row: dict[str, Any]) -> None:
        symbol = bar.symbol
        data = self._data(symbol, row)
        passes = self._passes(data)
        data["bar_time"], data["feed_time"] = bar_timestamp(bar.time), bar.feed_time
        data["in_filter"] = passes
        if passes or symbol in self._shown:
            try:
                seq = self.streamer.add_result(data, handed_over=True)
            except MessageError as exc:
                self._error(symbol, "contract", f"the live result for symbol {symbol!r} "
                                                f"breaks the message contract: {exc}")
                return
            self._erring.discard(symbol)
            self._ratings[symbol] = data["tech_rating"]
            self._count_signal(symbol, data["signal"])
            self.sent += seq is not None
            if symbol not in self._shown:
                self._shown.add(symbol)
                self.results += 1
        if bar.closed:
            self._alert(symbol, data, passes, bar)

    def _count_signal(self, symbol: str, signal: str) -> None:
        previous = self._signal_of.get(symbol)
        if previous != signal:
            if previous is not None:
                self._signals[previous] = self._signals.get(previous, 0) - 1
            self._signals[signal] = self._signals.get(signal, 0) + 1
            self._signal_of[symbol] = signal

    def _alert(self, symbol: str, data: dict[str, Any], passes: bool, bar: Bar) -> None:
        alert = self.alerts.observe(symbol, data["signal"], passes, bar.feed_time)
        if alert is not None:
            self.streamer.add_alert({
                "symbol": symbol, "rule": alert.rule, "signal": data["signal"],
                "previous_signal": alert.previous_signal, "tech_rating": data["tech_rating"],
                "bar_time": data["bar_time"], "feed_time": bar.feed_time})
            self.alerted += 1

    def _data(self, symbol: str, row: dict[str, Any]) -> dict[str, Any]:
        """Assemble a row as the scanner does (:func:`~technic_panel.engine.scanner.fill_result`).

        A plain dict (JSON-safe, as the scanner's ``SafeData``), handed over to the streamer.
        """
        return fill_result({"symbol": symbol}, self.fields[symbol], row)

    def _passes(self, data: Mapping[str, Any]) -> bool:
        return self.filter is None or bool(self.filter(data))

    def _error(self, symbol: str, kind: str, message: str) -> None:
        if symbol in self._erring:
            return
        self._erring.add(symbol)
        self.errors += 1
        self.streamer.add_error({"symbol": symbol, "error": kind, "message": message})

    def _report(self) -> None:
        now = time.monotonic()
        if self._progress is not None and now - self._reported >= self.progress_interval:
            self._reported = now
            self._progress()


def _quantile(values: list[int], q: float) -> float | None:
    """Return the ``q`` quantile of sorted ``values`` (None if there are none)."""
    return float(np.quantile(values, q)) if values else None
