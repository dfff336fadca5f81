"""LiveScan: a scan that keeps every symbol current as bars arrive.

A :class:`LiveScan` is the thread body of a scan with ``live=True``: first the scan as any
other (:class:`~technic_panel.streaming.run.ScanRun`: streamed, prioritised, its
``max_signals`` and ``max_fraction`` ending this pass only), then, on the same thread, the
:class:`~technic_panel.live.rows.LiveRows` of every planned symbol, fed by the feed the
settings name (:func:`feed_for`), until Stop, the ``timeout`` or the end of a replay.
The scan's record holds the rows while they run, so Stop, pause and the timeout reach
them as they reach a scanner; its progress messages carry the live figures. The
:class:`~technic_panel.streaming.manager.StreamManager` runs a LiveScan for a live
config, into a stream that compacts by symbol (nothing is ever replayed from seq 1).

For ``feed='replay'`` the first pass scores each symbol's bars before ``replay_from``
(:class:`~technic_panel.live.replay.HistoryBefore`) and the feed replays the rest. A
synthetic source is read without its emulated provider (latency, failures) once live: the
same prices, and a symbol that failed in the first pass stays an error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from technic_panel.config import ScanConfig, source_for
from technic_panel.data.base import DataSource
from technic_panel.engine.planner import META_FIELDS
from technic_panel.engine.scanner import ScanEvent, Scanner
from technic_panel.live.feeds import BarFeed
from technic_panel.live.heap import frozen_heap
from technic_panel.live.replay import HistoryBefore, ReplayFeed, replay_start
from technic_panel.live.rows import LiveRows
from technic_panel.live.synthetic_feed import SyntheticFeed
from technic_panel.policy import ServerPolicy
from technic_panel.streaming.run import ScanRun, SourceFactory

FEED_UPDATES = 4
"""Ticks a bar of a live scan's synthetic feed: three forming updates, then the close."""


def feed_for(config: ScanConfig, source: DataSource, symbols: list[str]) -> BarFeed:
    """Return the feed ``config`` names for ``symbols``, reading ``source``'s bars."""
    if config.feed == "replay":
        assert config.replay_from is not None  # noqa: S101 - validate() requires it
        return ReplayFeed(source, symbols, replay_from=replay_start(config.replay_from),
                          speed=config.speed)
    return SyntheticFeed(source, symbols, bar_interval=config.bar_interval,
                         updates=FEED_UPDATES, seed=config.seed)


def _replaying(factory: SourceFactory) -> SourceFactory:
    """Wrap ``factory``: its sources as they stood before the config's ``replay_from``."""
    def before(config: ScanConfig, policy: ServerPolicy | None) -> DataSource:
        assert config.replay_from is not None  # noqa: S101 - validate() requires it
        return HistoryBefore(factory(config, policy), replay_start(config.replay_from))

    return before


class LiveScan(ScanRun):
    """Run a live scan: the first pass, then its rows kept current; see the module docs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.record.config.feed == "replay":
            self._source = _replaying(self._source)
        self._failed: set[str] = set()

    def _on_event(self, scanner: Scanner, event: ScanEvent) -> None:
        if event.kind != "result":
            self._failed.add(event.symbol)
        super()._on_event(scanner, event)

    def _after_scan(self, scanner: Scanner) -> None:
        """Keep the scanned symbols' rows current until Stop, the timeout or the feed's end."""
        record = self.record
        if record.criteria.reason is not None:
            return
        rows = self._rows(scanner)
        with self._lock:  # a stop that came first reaches the rows, one after reaches them too
            record.scanner = rows
            if record.criteria.reason is not None:
                rows.stop()
            if record.paused:
                rows.pause()
        record.live_stats = lambda: {**rows.stats(),
                                     "initial_reason": record.criteria.initial_reason}
        with frozen_heap():
            rows.run()

    def _rows(self, scanner: Scanner) -> LiveRows:
        record, config = self.record, self.record.config
        source = self._live_source(scanner.source)
        fields = _fields(scanner, source)
        for symbol in self._failed:
            fields.pop(symbol, None)
        feed_source = source.source if isinstance(source, HistoryBefore) else source
        counts = {name: getattr(scanner, name)
                  for name in ("processed", "total", "results", "errors", "filtered")}

        def progress() -> None:
            record.streamer.add_progress(record.progress())

        return LiveRows(
            record.streamer, feed_for(config, feed_source, list(fields)), source,
            self.strategy.scorer(), fields=fields, filter=config.filter,
            alert_cooldown=config.alert_cooldown, shown=record.ratings, counts=counts,
            progress=progress,
            progress_interval=self.progress_interval, ratings=record.ratings,
            signals=record.signals)

    def _live_source(self, scanned: DataSource) -> DataSource:
        """Return where the live rows read history: the scanned source, unemulated."""
        config = self.record.config
        if config.source != "synthetic":
            return scanned
        plain = source_for(config, emulate_provider=False, policy=self.record.policy)
        if isinstance(scanned, HistoryBefore):
            return HistoryBefore(plain, scanned.until)
        return plain


def _fields(scanner: Scanner, source: DataSource) -> dict[str, dict[str, Any]]:
    """Return each planned symbol's fixed fields: metadata, priority tier and batch.

    The tier and batch a symbol was scanned with, or, for one the first pass did not reach,
    those the whole plan gives it. Metadata that is not finite is None, as in the scan.
    """
    plan = scanner.plan().set_index("symbol")
    submitted = scanner.submissions().set_index("symbol")
    tiers = {**plan["priority_tier"].to_dict(), **submitted["priority_tier"].to_dict()}
    batches = {**plan["batch_number"].to_dict(), **submitted["batch_number"].to_dict()}
    meta = source.universe().drop_duplicates("symbol").set_index("symbol")
    meta = meta.reindex(plan.index)[list(META_FIELDS)].replace([np.inf, -np.inf], np.nan)
    columns = [[None if pd.isna(value) else value for value in meta[name].tolist()]
               for name in META_FIELDS]
    fields: dict[str, dict[str, Any]] = {}
    for symbol, *values in zip(plan.index.tolist(), *columns, strict=True):
        row = dict(zip(META_FIELDS, values, strict=True))
        row["priority_tier"], row["batch_number"] = tiers[symbol], int(batches[symbol])
        fields[symbol] = row
    return fields
