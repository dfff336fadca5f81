"""StreamManager: every scan of a process, by id, from start to clean-up.

Each :meth:`StreamManager.start_stream` validates the settings, then runs the
scan in its own thread (``technic-scan-<id>``) into a fresh
:class:`~technic_panel.streaming.streamer.ResultStreamer`: results, errors, a
``progress`` message at most every ``progress_interval`` seconds, and exactly
one ``final``. Early-termination criteria are checked on every result and by
their timer; :meth:`stop_stream` is the manual one.

Clean-up: a scan that is finished and unwatched (no open subscription) is
removed ``inactivity_timeout`` seconds after it ended, however often it is
polled; a running scan that nobody watches or polls for that long is abandoned:
it is stopped (status ``stopped``, reason ``inactive``) and then removed the
same way. ``max_concurrent`` caps the scans held, finished ones included, and
``max_held_messages`` the messages they keep together: when a new scan needs
room, the oldest finished, unwatched scans are dropped first. A janitor thread
(``technic-janitor``) sweeps while there are scans and ends when there are
none; every call sweeps too.

Ownership: a scan started with an ``owner`` (the API and the dashboard pass the
identity of the client's token) is seen and stopped only by calls naming the
same owner; calls with ``owner=None`` (the notebook, the CLI, a server without
a token) see every scan.

All public methods are thread-safe.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from technic_panel.config import ScanConfig
from technic_panel.data import DataSource, FileSource, SampleSource, SyntheticSource
from technic_panel.engine.scanner import ScanEvent, Scanner, ScanSummary
from technic_panel.engine.scoring import Strategy
from technic_panel.policy import ServerPolicy
from technic_panel.streaming.contract import validate_data
from technic_panel.streaming.streamer import ResultStreamer, Subscription
from technic_panel.streaming.termination import EarlyTerminationCriteria
from technic_panel.vocabulary import SIGNALS

log = logging.getLogger(__name__)


class UnknownScan(KeyError):
    """No scan with this id (never started, or already cleaned up)."""

    def __str__(self) -> str:
        return str(self.args[0])


class TooManyScans(RuntimeError):
    """Starting a scan would exceed the cap on concurrent scans."""


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
    scanner: Scanner | None = None
    ended_progress: dict[str, Any] | None = None
    thread: threading.Thread | None = None
    signals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    ratings: dict[str, float] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        """Whether the scan has not yet sent its ``final``."""
        return self.ended_at is None

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
        rate = processed / elapsed if elapsed > 0 else 0.0
        eta = (total - processed) / rate if rate > 0 else None
        return {
            "processed": processed, "total": total,
            "results": scanner.results if scanner else 0,
            "errors": scanner.errors if scanner else 0,
            "filtered": scanner.filtered if scanner else 0,
            "signals": dict(self.signals), "quality_signals": self.criteria.quality_count,
            "rate": round(rate, 1), "elapsed": round(elapsed, 3),
            "eta": None if eta is None else round(eta, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able description: id, status, settings, progress, last seq."""
        return {
            "scan_id": self.scan_id, "status": self.status, "reason": self.reason,
            "paused": self.paused,
            "config": self.config.to_dict(), "progress": self.progress(),
            "last_seq": self.streamer.last_seq, "subscribers": self.streamer.subscriber_count,
        }


class StreamManager:
    """Start, watch, stop and clean up scans; see the module docs.

    Parameters
    ----------
    max_concurrent
        Most scans held, running or finished; when all are running (or watched), one
        more raises :class:`TooManyScans`, else the oldest finished scan makes room.
    inactivity_timeout
        Seconds after which unwatched scans are stopped and removed.
    max_held_messages
        Most messages all held scans keep together (None: no budget); finished,
        unwatched scans are dropped, oldest first, to stay within it.
    batch_size, flush_interval, max_retained
        Passed to each scan's :class:`~technic_panel.streaming.streamer.ResultStreamer`.
    progress_interval
        Least seconds between two ``progress`` messages of a scan.
    clock
        Monotonic seconds for activity and clean-up; tests inject a fake one.
    """

    def __init__(self, max_concurrent: int = 4, inactivity_timeout: float = 300.0, *,
                 batch_size: int = 50,
                 flush_interval: float = ResultStreamer.DEFAULT_FLUSH_INTERVAL,
                 max_retained: int = 100_000, progress_interval: float = 0.25,
                 max_held_messages: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_concurrent < 1:
            raise ValueError(f"StreamManager.max_concurrent must be >= 1, not {max_concurrent}")
        if inactivity_timeout <= 0:
            raise ValueError("StreamManager.inactivity_timeout must be > 0, "
                             f"not {inactivity_timeout}")
        self.max_concurrent, self.inactivity_timeout = max_concurrent, inactivity_timeout
        self.max_held_messages = max_held_messages
        self.progress_interval = progress_interval
        self._streamer_options = {"batch_size": batch_size, "flush_interval": flush_interval,
                                  "max_retained": max_retained}
        self._clock = clock
        self._lock = threading.RLock()
        self._scans: dict[str, ScanRecord] = {}
        self._previous_ratings: dict[tuple, dict[str, float]] = {}
        self._janitor: threading.Thread | None = None
        self._janitor_wake = threading.Event()

    def __repr__(self) -> str:
        with self._lock:
            running = sum(record.running for record in self._scans.values())
            return (f"StreamManager(scans={len(self._scans)}, running={running}, "
                    f"max_concurrent={self.max_concurrent})")

    def start_stream(self, config: ScanConfig | Mapping[str, Any], *,
                     strategy: Strategy | None = None, policy: ServerPolicy | None = None,
                     owner: str | None = None) -> str:
        """Validate ``config``, start its scan in a thread and return the new scan id.

        Parameters
        ----------
        config
            The scan's settings.
        strategy
            Scoring rules (default :class:`~technic_panel.engine.scoring.Strategy`).
        policy
            The server's policy, for scans a remote client asks for (None: no limits).
        owner
            Who started it; only calls naming the same owner see the scan.

        Raises
        ------
        ConfigError
            If a setting is invalid or outside ``policy`` (nothing is started).
        TooManyScans
            If ``max_concurrent`` scans are held and none is finished and unwatched.
        """
        config = (config.validate(policy) if isinstance(config, ScanConfig)
                  else ScanConfig.from_mapping(config, policy))
        strategy = (strategy or Strategy()).validate()
        with self._lock:
            self._sweep()
            self._make_room()
            scan_id = f"scan_{secrets.token_hex(16)}"
            now = self._clock()
            record = ScanRecord(scan_id, config,
                                ResultStreamer(scan_id, **self._streamer_options),
                                EarlyTerminationCriteria.from_config(config), now, now,
                                owner=owner, policy=policy)
            record.thread = threading.Thread(target=self._run, args=(record, strategy),
                                             name=f"technic-scan-{scan_id}", daemon=True)
            self._scans[scan_id] = record
            record.thread.start()
            self._ensure_janitor()
        return scan_id

    def get(self, scan_id: str, owner: str | None = None) -> ScanRecord:
        """Return the scan's record (and count it as activity); raise :class:`UnknownScan`.

        A scan another owner started is unknown to ``owner`` (None sees every scan).
        """
        with self._lock:
            self._sweep()
            record = self._scans.get(scan_id)
            if record is None or not _visible(record, owner):
                raise UnknownScan(f"no scan {scan_id!r} (never started, started by another "
                                  f"client, or cleaned up {self.inactivity_timeout:g} s after "
                                  "its end or last activity)")
            record.last_activity = self._clock()
            return record

    def subscribe(self, scan_id: str, since: int = 0, owner: str | None = None) -> Subscription:
        """Return a subscription to the scan's messages after seq ``since``."""
        return self.get(scan_id, owner).streamer.subscribe(since)

    def stop_stream(self, scan_id: str, owner: str | None = None) -> ScanRecord:
        """Stop the scan by hand (reason ``manual``); idempotent, also once it has ended."""
        record = self.get(scan_id, owner)
        if record.criteria.fire("manual"):
            self._stop_scanner(record)
        return record

    def release(self, scan_id: str) -> None:
        """Say the caller is done with a scan: clean it up without waiting for the timeout.

        It is removed as soon as it has ended and nobody subscribes (a running one
        is stopped first, as an abandoned scan is). Unknown ids are ignored, so
        releasing twice is safe.
        """
        with self._lock:
            record = self._scans.get(scan_id)
            if record is not None:
                record.released = True
                self._sweep()

    def pause_stream(self, scan_id: str) -> ScanRecord:
        """Pause the scan: no new work is submitted; work in flight still arrives."""
        return self._toggle_pause(scan_id, paused=True)

    def resume_stream(self, scan_id: str) -> ScanRecord:
        """Resume a paused scan; safe when it is not paused or has ended."""
        return self._toggle_pause(scan_id, paused=False)

    def _toggle_pause(self, scan_id: str, *, paused: bool) -> ScanRecord:
        record = self.get(scan_id)
        with self._lock:
            scanner = record.scanner
            record.paused = paused and record.running
        if scanner is not None:
            scanner.pause() if paused else scanner.resume()
        return record

    def list(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Return the scans ``owner`` may see, newest first, as :meth:`ScanRecord.to_dict`."""
        with self._lock:
            self._sweep()
            records = sorted((r for r in self._scans.values() if _visible(r, owner)),
                             key=lambda r: r.started_at, reverse=True)
            return [record.to_dict() for record in records]

    def shutdown(self) -> None:
        """Stop every scan, wait for their threads and the janitor, drop everything."""
        with self._lock:
            records = list(self._scans.values())
        for record in records:
            if record.criteria.fire("manual"):
                self._stop_scanner(record)
        for record in records:
            record.thread.join()
        with self._lock:
            for record in self._scans.values():
                record.streamer.close()
            self._scans.clear()
            janitor = self._janitor
        self._janitor_wake.set()
        if janitor is not None:
            janitor.join()

    def _run(self, record: ScanRecord, strategy: Strategy) -> None:
        """Run one scan to its ``final``; the boundary where a scan's failure is caught."""
        config, streamer = record.config, record.streamer
        summary: ScanSummary | None = None
        record.criteria.start_timer(lambda: self._stop_scanner(record))
        try:
            policy = record.policy
            scheduler = policy.dask_scheduler if policy is not None else config.scheduler
            scanner = Scanner(
                self._source(config, policy), strategy, executor=config.executor,
                workers=config.workers, scheduler=scheduler, filter=config.filter,
                previous_ratings=self._ratings_for(config), sectors=config.sectors,
                min_price=config.min_price, min_dollar_volume=config.min_dollar_volume,
                check_result=check_result)
            with self._lock:
                record.scanner = scanner
            if record.criteria.reason is not None:
                scanner.stop()
            if record.paused:
                scanner.pause()
            last_progress = [float("-inf")]
            summary = scanner.run(lambda event: self._on_event(record, event, last_progress),
                                  around_chunk=streamer.holding)
        except Exception as exc:  # noqa: BLE001 - a failed scan ends with an error and a final
            log.warning("scan %s failed: %s", record.scan_id, exc, exc_info=True)
            record.error = f"{type(exc).__name__}: {exc}"
            streamer.add_error({"error": "scan", "message": record.error})
        finally:
            record.criteria.cancel()
            self._finish(record, summary)

    def _on_event(self, record: ScanRecord, event: ScanEvent, last_progress: list[float]) -> None:
        scanner, data = record.scanner, event.data
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
        if now - last_progress[0] >= self.progress_interval:
            last_progress[0] = now
            record.streamer.add_progress(record.progress())

    def _finish(self, record: ScanRecord, summary: ScanSummary | None) -> None:
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
        with self._lock:
            record.status, record.reason, record.summary = status, reason, final
            record.ended_progress, record.scanner = progress, None  # frees the source's data
            record.paused = False
            record.ended_at = record.last_activity = self._clock()
            if record.ratings:
                self._remember_ratings(_source_key(record.config), record.ratings)
            record.streamer.finish(final)
            self._sweep()

    def _remember_ratings(self, key: tuple, ratings: dict[str, float]) -> None:
        """Merge a scan's ratings into its source's (lock held); keep the latest 8 sources."""
        merged = self._previous_ratings.pop(key, {})
        merged.update(ratings)
        self._previous_ratings[key] = merged
        while len(self._previous_ratings) > 8:
            del self._previous_ratings[next(iter(self._previous_ratings))]

    def _stop_scanner(self, record: ScanRecord) -> None:
        with self._lock:
            scanner = record.scanner
        if scanner is not None:
            scanner.stop()

    def _ratings_for(self, config: ScanConfig):
        import pandas as pd

        with self._lock:
            ratings = self._previous_ratings.get(_source_key(config))
        return pd.Series(ratings, dtype=float) if ratings else None

    @staticmethod
    def _source(config: ScanConfig, policy: ServerPolicy | None = None) -> DataSource:
        return source_for(config, policy=policy)

    def _sweep(self) -> None:
        """Stop abandoned scans, remove finished, unwatched, old ones, keep the budget.

        Call with the lock held. A finished scan's age counts from its end, so polling
        it does not keep it alive.
        """
        now = self._clock()
        for scan_id, record in list(self._scans.items()):
            since = record.last_activity if record.running else record.ended_at
            idle = record.released or now - since >= self.inactivity_timeout
            if record.streamer.subscriber_count or not idle:
                continue
            if record.running:
                if record.criteria.fire("inactive"):
                    self._stop_scanner(record)
            else:
                self._drop(scan_id)
        budget = self.max_held_messages
        if budget is not None:
            held = sum(record.held_messages for record in self._scans.values())
            for scan_id in self._droppable():
                if held <= budget:
                    break
                held -= self._scans[scan_id].held_messages
                self._drop(scan_id)

    def _make_room(self) -> None:
        """Drop the oldest finished, unwatched scans until one more fits (lock held)."""
        for scan_id in self._droppable():
            if len(self._scans) < self.max_concurrent:
                break
            self._drop(scan_id)
        if len(self._scans) >= self.max_concurrent:
            running = sum(record.running for record in self._scans.values())
            raise TooManyScans(f"{len(self._scans)} scans are held ({running} running, the "
                               "others watched), the most this server allows "
                               f"(max_concurrent={self.max_concurrent}); stop one or wait")

    def _droppable(self) -> list[str]:
        """Return the ids of finished, unwatched scans, oldest end first (lock held)."""
        finished = [record for record in self._scans.values()
                    if not record.running and not record.streamer.subscriber_count]
        return [record.scan_id for record in sorted(finished, key=lambda r: r.ended_at)]

    def _drop(self, scan_id: str) -> None:
        self._scans.pop(scan_id).streamer.close()

    def _ensure_janitor(self) -> None:
        if self._janitor is None or not self._janitor.is_alive():
            self._janitor_wake.clear()
            self._janitor = threading.Thread(target=self._janitor_loop, name="technic-janitor",
                                             daemon=True)
            self._janitor.start()

    def _janitor_loop(self) -> None:
        interval = min(self.inactivity_timeout / 4, 5.0)
        while not self._janitor_wake.wait(interval):
            with self._lock:
                self._sweep()
                if not self._scans:
                    self._janitor = None
                    return


def source_for(config: ScanConfig, *, emulate_provider: bool = True,
               policy: ServerPolicy | None = None) -> DataSource:
    """Return the data source ``config`` names.

    ``emulate_provider=False`` leaves out the synthetic latency and injected
    failures: the same prices, for charts that must not wait or fail. ``policy``
    bounds the size of the files read.
    """
    if config.source == "files":
        limit = policy.max_file_bytes if policy is not None else None
        return FileSource(config.path, max_file_bytes=limit)
    if config.source == "sample":
        return SampleSource()
    if not emulate_provider:
        return SyntheticSource(config.symbols, seed=config.seed)
    return SyntheticSource(config.symbols, seed=config.seed, latency_ms=config.latency_ms,
                           error_rate=config.error_rate)


def check_result(data: dict) -> None:
    """Raise ``MessageError`` (a ValueError) if ``data`` breaks the contract of a result."""
    validate_data("result", data)


def _visible(record: ScanRecord, owner: str | None) -> bool:
    """Whether a call by ``owner`` may see the scan (None sees all)."""
    return owner is None or record.owner is None or record.owner == owner


def _source_key(config: ScanConfig) -> tuple:
    """Return the key under which scans of the same data share ratings for prioritising."""
    return (config.source, config.path, config.symbols, config.seed)


_default: StreamManager | None = None
_default_lock = threading.Lock()


def default_manager() -> StreamManager:
    """Return the process-wide StreamManager shared by the dashboard sessions and the API.

    Its caps come from the :class:`~technic_panel.policy.ServerPolicy` of the
    environment (``TECHNIC_MAX_SCANS``, ``TECHNIC_MAX_HELD_MESSAGES``) and its
    timeout from ``TECHNIC_INACTIVITY_TIMEOUT`` seconds (default 300).
    """
    global _default
    with _default_lock:
        if _default is None:
            policy = ServerPolicy.from_env()
            _default = StreamManager(
                max_concurrent=policy.max_scans, max_held_messages=policy.max_held_messages,
                inactivity_timeout=policy.inactivity_timeout)
        return _default
