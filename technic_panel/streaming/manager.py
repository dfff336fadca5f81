"""StreamManager: every scan of a process, by id, from start to clean-up.

Each :meth:`StreamManager.start_stream` validates the settings, then runs the
scan in its own thread (``technic-scan-<id>``, a
:class:`~technic_panel.streaming.run.ScanRun`, or for ``live=True`` a
:class:`~technic_panel.live.scan.LiveScan`) into a fresh
:class:`~technic_panel.streaming.streamer.ResultStreamer` (compacting by symbol for a
live scan): results, errors, a ``progress`` message at most every
``progress_interval`` seconds, and exactly one ``final``. Early-termination
criteria are checked on every result and by their timer; :meth:`stop_stream` is
the manual one.

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

import builtins
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from technic_panel.config import ScanConfig, source_for, strategy_for
from technic_panel.data import DataSource
from technic_panel.engine.scoring import Strategy
from technic_panel.policy import ServerPolicy
from technic_panel.streaming.run import ScanRecord, ScanRun, stop_scanner
from technic_panel.streaming.streamer import ResultStreamer, Subscription
from technic_panel.streaming.termination import EarlyTerminationCriteria

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ScanRecord", "StreamManager", "TooManyScans", "UnknownScan", "default_manager"]


class UnknownScan(KeyError):
    """No scan with this id (never started, or already cleaned up)."""

    def __str__(self) -> str:
        return str(self.args[0])


class TooManyScans(RuntimeError):
    """Starting a scan would exceed the cap on concurrent scans."""


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
        self._streamer_options: dict[str, Any] = {
            "batch_size": batch_size, "flush_interval": flush_interval,
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
            Scoring rules; by default those of ``config``'s strategy settings
            (:func:`~technic_panel.config.strategy_for`).
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
        strategy = (strategy or strategy_for(config)).validate()
        with self._lock:
            self._sweep()
            self._make_room()
            scan_id = f"scan_{secrets.token_hex(16)}"
            now = self._clock()
            record = ScanRecord(scan_id, config,
                                ResultStreamer(scan_id, compact=config.live,
                                               **self._streamer_options),
                                EarlyTerminationCriteria.from_config(config), now, now,
                                owner=owner, policy=policy)
            run = _run_class(config)(record, strategy, source=self._source,
                                     previous_ratings=self._ratings_for(config),
                                     progress_interval=self.progress_interval, lock=self._lock,
                                     end=self._end)
            record.thread = threading.Thread(target=run, name=f"technic-scan-{scan_id}",
                                             daemon=True)
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

    def _end(self, record: ScanRecord, final: dict[str, Any],
             progress: dict[str, Any]) -> None:
        """Record a scan's outcome and send its ``final`` (in the scan's thread, at its end)."""
        with self._lock:
            record.status, record.reason, record.summary = final["status"], final["reason"], final
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
        stop_scanner(record, self._lock)

    def _ratings_for(self, config: ScanConfig) -> pd.Series | None:
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
            idle = record.released or now - record.idle_since >= self.inactivity_timeout
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

    def _droppable(self) -> builtins.list[str]:
        """Return the ids of finished, unwatched scans, oldest end first (lock held)."""
        finished = [record for record in self._scans.values()
                    if not record.running and not record.streamer.subscriber_count]
        return [record.scan_id for record in sorted(finished, key=lambda r: r.idle_since)]

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


def _run_class(config: ScanConfig) -> type[ScanRun]:
    """Return the thread body of ``config``'s scan: a LiveScan for a live one."""
    if config.live:
        from technic_panel.live.scan import LiveScan

        return LiveScan
    return ScanRun


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
