"""One scan's run: its record, and the thread body that turns scanner events into messages.

A :class:`ScanRun` is the target of a scan's thread (``technic-scan-<id>``). It builds
the data source and the :class:`~technic_panel.engine.scanner.Scanner`, puts each
result and error into the scan's
:class:`~technic_panel.streaming.streamer.ResultStreamer`, adds a ``progress`` message
at most every ``progress_interval`` seconds, checks the early-termination criteria on
every event (their timer runs beside it), and ends with a last ``progress`` and the one
``final``, whose status says how the scan ended. Whatever fails in there, the
scan ends with an ``error`` and a ``final`` of status ``failed``: this is the boundary
where a scan's failure is caught and logged.

The :class:`ScanRecord` is what the run shares with the
:class:`~technic_panel.streaming.manager.StreamManager`; the fields the manager also
changes (``scanner``, ``paused``, the outcome) are read and written under the
manager's lock, which the run is handed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from technic_panel.config import ScanConfig
from technic_panel.data import DataSource
from technic_panel.engine.executors import DaskExecutor, ProcessExecutor, ScanExecutor
from technic_panel.engine.scanner import ScanEvent, Scanner, ScanSummary
from technic_panel.engine.scoring import Strategy
from technic_panel.policy import ServerPolicy
from technic_panel.streaming.contract import validate_data
from technic_panel.streaming.streamer import ResultStreamer
from technic_panel.streaming.tally import measure_pace
from technic_panel.streaming.termination import EarlyTerminationCriteria
from technic_panel.vocabulary import SIGNALS

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SourceFactory = Callable[[ScanConfig, "ServerPolicy | None"], DataSource]
"""Builds the data source of a scan from its settings and the server's policy."""


class ScanWork(Protocol):
    """What a scan's record holds while it runs: the Scanner, then a live scan's rows."""

    processed: int
    results: int
    errors: int
    filtered: int

    @property
    def total(self) -> int:
        """Symbols the scan processes."""
        ...

    def stop(self) -> None:
        """End the work soon; safe from any thread, and twice."""
        ...

    def pause(self) -> None:
        """Submit or send nothing new until :meth:`resume`."""
        ...

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        ...


@dataclass(eq=False)
class ScanRecord:
    """One scan's state; ``status`` is ``running`` until its ``final`` gives the outcome."""

    scan_id: str
    config: ScanConfig
    streamer: ResultStreamer
    criteria: EarlyTerminationCriteria
    started_at: float
    last_activity: float
    started_perf: float = field(default_factory=time.perf_counter)
    owner: str | None = None
    policy: ServerPolicy | None = None
    status: str = "running"
    reason: str | None = None
    error: str | None = None
    paused: bool = False
    released: bool = False
    ended_at: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    scanner: ScanWork | None = None
    live_stats: Callable[[], dict[str, Any]] | None = None
    """A live scan's figures (bars, latency, ...), added to every progress once it is live."""
    ended_progress: dict[str, Any] | None = None
    thread: threading.Thread = field(init=False, repr=False)
    """The scan's thread, set before it starts."""
    signals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    ratings: dict[str, float] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        """Whether the scan has not yet sent its ``final``."""
        return self.ended_at is None

    @property
    def idle_since(self) -> float:
        """The manager's clock at the last activity (running) or at the end (finished)."""
        return self.last_activity if self.ended_at is None else self.ended_at

    @property
    def held_messages(self) -> int:
        """How many messages the scan's stream keeps (its share of the memory budget)."""
        streamer = self.streamer
        return max(0, streamer.last_seq - streamer.first_retained_seq + 1)

    def progress(self) -> dict[str, Any]:
        """Return the counters as the data of a ``progress`` message (frozen at the end)."""
        if self.ended_progress is not None:
            return dict(self.ended_progress)
        scanner = self.scanner
        processed = scanner.processed if scanner else 0
        total = scanner.total if scanner else 0
        elapsed = time.perf_counter() - self.started_perf
        rate, eta = measure_pace(processed, total, elapsed)
        live = self.live_stats() if self.live_stats is not None else {}
        return {
            "processed": processed, "total": total,
            "results": scanner.results if scanner else 0,
            "errors": scanner.errors if scanner else 0,
            "filtered": scanner.filtered if scanner else 0,
            "signals": dict(self.signals), "quality_signals": self.criteria.quality_count,
            "rate": round(rate, 1), "elapsed": round(elapsed, 3),
            "eta": None if eta is None else round(eta, 3), **live,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able description: id, status, settings, progress, last seq."""
        return {
            "scan_id": self.scan_id, "status": self.status, "reason": self.reason,
            "paused": self.paused,
            "config": self.config.to_dict(), "progress": self.progress(),
            "last_seq": self.streamer.last_seq, "subscribers": self.streamer.subscriber_count,
        }


EndCallback = Callable[[ScanRecord, dict[str, Any], dict[str, Any]], None]
"""Takes a finished scan's record, its ``final``'s data and its last progress."""


class ScanRun:
    """Run one scan to its ``final``: the body of the scan's thread; see the module docs.

    Parameters
    ----------
    record
        The scan's record; the run fills in its scanner, counts and ratings.
    strategy
        The validated scoring rules.
    source
        Builds the data source, in the scan's thread (so a failure is the scan's).
    previous_ratings
        Ratings of an earlier scan of the same data, for prioritising (or None).
    progress_interval
        Least seconds between two ``progress`` messages.
    lock
        The manager's lock, held while ``record.scanner`` is set or read.
    end
        Called last with the record, the ``final``'s data and the last progress (which
        the record keeps from then on); it sends the ``final``.
    """

    def __init__(self, record: ScanRecord, strategy: Strategy, *, source: SourceFactory,
                 previous_ratings: pd.Series | None, progress_interval: float,
                 lock: threading.RLock, end: EndCallback) -> None:
        self.record, self.strategy = record, strategy
        self._source, self._previous_ratings = source, previous_ratings
        self.progress_interval = progress_interval
        self._lock, self._end = lock, end
        self._last_progress = float("-inf")

    def __call__(self) -> None:
        """Run the scan; every failure ends it with an ``error`` and a ``failed`` final."""
        record = self.record
        summary: ScanSummary | None = None
        record.criteria.start_timer(lambda: stop_scanner(record, self._lock))
        try:
            scanner = self._scanner()
            with self._lock:  # a pause or stop that came first applies before anyone else's
                record.scanner = scanner
                if record.criteria.reason is not None:
                    scanner.stop()
                if record.paused:
                    scanner.pause()
            summary = scanner.run(lambda event: self._on_event(scanner, event),
                                  around_chunk=record.streamer.holding)
            self._after_scan(scanner)
        except Exception as exc:  # noqa: BLE001 - a failed scan ends with an error and a final
            log.warning("scan %s failed: %s", record.scan_id, exc, exc_info=True)
            record.error = f"{type(exc).__name__}: {exc}"
            record.streamer.add_error({"error": "scan", "message": record.error})
        finally:
            record.criteria.cancel()
            self._finish(summary)

    def _after_scan(self, scanner: Scanner) -> None:
        """Run what follows the scan's pass (a live scan's bars); nothing here."""

    def _scanner(self) -> Scanner:
        config, policy = self.record.config, self.record.policy
        source = self._source(config, policy)
        return Scanner(
            source, self.strategy, executor=config.executor,
            workers=capped_workers(config, policy, getattr(source, "io_bound", False)),
            scheduler=policy.dask_scheduler if policy is not None else config.scheduler,
            filter=config.filter, previous_ratings=self._previous_ratings,
            sectors=config.sectors, min_price=config.min_price,
            min_dollar_volume=config.min_dollar_volume, check_result=check_result)

    def _on_event(self, scanner: Scanner, event: ScanEvent) -> None:
        record, data = self.record, event.data
        if event.kind == "result":
            record.streamer.add_result(data)
            record.signals[data["signal"]] += 1
            record.ratings[event.symbol] = data["tech_rating"]
            fired = record.criteria.observe_result(data, scanner.processed, scanner.total)
        else:
            record.streamer.add_error(data)
            fired = record.criteria.observe_progress(scanner.processed, scanner.total)
        if fired:
            scanner.stop()
        now = time.perf_counter()
        if now - self._last_progress >= self.progress_interval:
            self._last_progress = now
            record.streamer.add_progress(record.progress())

    def _finish(self, summary: ScanSummary | None) -> None:
        """Add the last ``progress``, then hand the ``final``'s data to ``end``."""
        record = self.record
        reason = record.criteria.reason
        if summary is None:
            status = "failed"
        elif reason is None:
            status = "completed"
        else:
            status = "stopped" if reason in ("manual", "inactive") else "terminated"
        progress = record.progress()
        record.streamer.add_progress(progress)
        final = {"status": status, "reason": reason, "scan_id": record.scan_id, **progress,
                 "first_result_after": summary.first_event_after if summary else None,
                 "error": record.error}
        self._end(record, final, progress)


def capped_workers(config: ScanConfig, policy: ServerPolicy | None, io_bound: bool) -> int | None:
    """Return the workers a scan runs with: its setting or its executor's default, capped.

    With a ``policy`` (a remote client's scan) the count is at most what it allows,
    also when the request names none; without one the executor decides (None).
    """
    if policy is None:
        return config.workers
    kinds: dict[str, type[ScanExecutor]] = {
        "thread": ScanExecutor, "process": ProcessExecutor, "dask": DaskExecutor}
    limit = policy.max_workers if config.executor == "thread" else policy.max_processes
    chosen = config.workers or kinds[config.executor].default_workers(io_bound)
    return min(chosen, limit)


def stop_scanner(record: ScanRecord, lock: threading.RLock) -> None:
    """Stop the record's scanner, if it has one yet (one built later sees the criteria)."""
    with lock:
        scanner = record.scanner
    if scanner is not None:
        scanner.stop()


def check_result(data: dict) -> None:
    """Raise ``MessageError`` (a ValueError) if ``data`` breaks the contract of a result."""
    validate_data("result", data)
