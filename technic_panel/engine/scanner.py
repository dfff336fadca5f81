"""The scanner: runs a universe through an executor and emits each symbol as it completes.

Mechanics: a :class:`~technic_panel.engine.planner.ProgressivePlan` reads the source's
plan parts on a background thread, screens and ranks them as they arrive; the scan
never waits for the last part. Chunks of the best known symbols not yet submitted
start at one symbol (so the first result comes at once) and double up to the
executor's ``chunk_limit``; at most ``2 * workers`` chunks are in flight. Workers'
done-callbacks and the plan only put onto a ``queue.SimpleQueue`` (a finished future,
or a wake-up); the thread that called :meth:`Scanner.run` takes them off, submits
more, and calls ``on_event`` once per symbol, in completion order. When workers are
idle and no known symbol is left, it waits there for the next part.

Warning: ``on_event`` runs on the thread that called :meth:`Scanner.run`;
:meth:`Scanner.stop`, :meth:`Scanner.pause` and :meth:`Scanner.resume` may be
called from any thread (or from ``on_event`` itself).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from technic_panel.data.base import DataSource
from technic_panel.engine.executors import ScanExecutor, ScanJob, make_executor
from technic_panel.engine.expressions import FilterExpression
from technic_panel.engine.planner import ProgressivePlan, Screen, full_plan
from technic_panel.engine.scoring import Strategy
from technic_panel.engine.workers import in_daemon_thread
from technic_panel.vocabulary import RESULT_COLUMNS, SafeData

log = logging.getLogger(__name__)

_LEADING = ("signal", "tech_rating", "alpha_score")
"""Fields a reader looks for first; a result's keys start with them, as in the contract."""
_WAKE = object()


def fill_result(data: dict[str, Any], fields: Mapping[str, Any],
                row: Mapping[str, Any]) -> dict[str, Any]:
    """Lay a result out in ``data`` (which holds its symbol), as every producer of rows does.

    The leading fields, the symbol's fixed ``fields``, the scored ``row``, the price: a
    symbol's rows keep one order, which the stream's dedup compares fastest.
    """
    data.update((key, row.get(key)) for key in _LEADING)
    data.update(fields)
    data.update(row)
    data["price"] = row.get("close")
    return data


@dataclass(frozen=True)
class ScanEvent:
    """One symbol's outcome: ``kind`` is ``"result"`` or ``"error"``; ``data`` its fields."""

    kind: str
    symbol: str
    data: dict[str, Any]


@dataclass
class ScanSummary:
    """How a scan ended: ``status`` is ``completed`` or ``stopped``, with its counts."""

    status: str
    total: int
    processed: int
    results: int
    errors: int
    filtered: int
    elapsed: float
    first_event_after: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Scanner:
    """Scan ``source`` with ``strategy`` on an executor, emitting results in completion order.

    Parameters
    ----------
    source
        Where prices come from.
    strategy
        Scoring rules (default :class:`~technic_panel.engine.scoring.Strategy`).
    executor
        ``"thread"``, ``"process"``, ``"dask"`` or a :class:`ScanExecutor`.
    filter
        Only results passing this expression are emitted (others count as filtered).
    previous_ratings
        tech_rating by symbol from an earlier scan, to prioritise with.
    symbols
        Scan only these symbols (default: the source's whole universe).
    sectors, min_price, min_dollar_volume
        Screen the universe as it is planned: only these sectors (empty: all), a
        last close and a 20-day average dollar volume at least this high. Symbols
        whose price is unknown stay in, so their failure is reported.
    batch_size
        Symbols per ``batch_number`` (counted in submission order).
    check_result
        Called with each assembled result; a ``ValueError`` it raises (the streaming
        core passes its message contract) turns the result into that symbol's error.
    """

    def __init__(self, source: DataSource, strategy: Strategy | None = None, *,
                 executor: str | ScanExecutor = "thread", workers: int | None = None,
                 scheduler: str | None = None, filter: str | None = None,
                 previous_ratings: pd.Series | None = None,
                 symbols: Sequence[str] | None = None, sectors: Sequence[str] = (),
                 min_price: float = 0.0, min_dollar_volume: float = 0.0,
                 batch_size: int = 50,
                 check_result: Callable[[dict], None] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"Scanner.batch_size must be >= 1, not {batch_size}")
        self.source = source
        self.check_result = check_result
        self.scorer = (strategy or Strategy()).scorer()
        if not workers and executor == "thread":
            workers = getattr(source, "read_threads", None)  # the source knows its reads
        self.executor = (executor if isinstance(executor, ScanExecutor)
                         else make_executor(executor, workers, scheduler,
                                            io_bound=getattr(source, "io_bound", False)))
        self.filter = FilterExpression(filter, RESULT_COLUMNS) if filter else None
        self.previous_ratings = previous_ratings
        self.screen = Screen(None if symbols is None else tuple(symbols), tuple(sectors),
                             float(min_price), float(min_dollar_volume))
        self.batch_size = batch_size
        self.processed = self.results = self.errors = self.filtered = 0
        self._emit_lock = threading.RLock()
        self._wake: queue.SimpleQueue = queue.SimpleQueue()
        self._stopped = self._paused = self._started = False
        self._started_at: float | None = None
        self._around_chunk: Callable[[], AbstractContextManager] = nullcontext
        self._plan = ProgressivePlan(source, self.screen, previous_ratings,
                                     batch_size=batch_size, wake=lambda: self._wake.put(_WAKE))

    def __repr__(self) -> str:
        return (f"Scanner({self.source!r}, executor={self.executor.kind}, "
                f"processed={self.processed}/{self.total}, stopped={self._stopped}, "
                f"paused={self._paused})")

    @property
    def total(self) -> int:
        """Symbols the scan will process: exact once planned; see :mod:`.planner`."""
        return self._plan.total

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` has been called."""
        return self._stopped

    @property
    def paused(self) -> bool:
        """Whether the scan is paused (no new work is being submitted)."""
        return self._paused

    def stop(self) -> None:
        """Stop the scan: nothing is emitted after this returns; safe to call twice.

        The flag is set first, so an emitting thread sees it at its next symbol;
        taking the emit lock then waits out at most the one ``on_event`` call in
        progress.
        """
        self._stopped = True
        self._plan.stop()
        with self._emit_lock:
            self._wake.put(_WAKE)

    def pause(self) -> None:
        """Stop submitting new work; work already running still completes and is emitted."""
        self._paused = True

    def resume(self) -> None:
        """Submit work again after :meth:`pause`; safe to call when not paused."""
        self._paused = False
        self._wake.put(_WAKE)

    def plan(self) -> pd.DataFrame:
        """Return the whole scan order: symbol, priority_score, priority_tier, batch_number.

        It reads every part first, so it is what a scan's order converges to, not what a
        scan submits (see :meth:`submissions`).
        """
        return full_plan(self.source, self.screen, self.previous_ratings,
                         batch_size=self.batch_size)

    def submissions(self) -> pd.DataFrame:
        """Return what :meth:`run` submitted so far, in order, with score, tier and batch."""
        return self._plan.submissions()

    def run(self, on_event: Callable[[ScanEvent], None], *,
            around_chunk: Callable[[], AbstractContextManager] = nullcontext) -> ScanSummary:
        """Run the scan, calling ``on_event`` once per symbol as each completes.

        A chunk's symbols complete together; their events are emitted inside one
        ``around_chunk()`` context (the manager holds the stream's publishing there, so
        a chunk reaches readers in one go). Returns when every symbol is processed or
        :meth:`stop` was called; a Scanner runs once.
        """
        if self._started:
            raise RuntimeError("Scanner.run was already called; create a new Scanner")
        self._started = True
        started_at = self._started_at = time.perf_counter()
        self._around_chunk = around_chunk
        first: list[float] = []

        def emit(event: ScanEvent) -> None:
            if not first:
                first.append(time.perf_counter() - started_at)
            on_event(event)

        try:
            if not self._stopped:
                self._plan.start()
            self._plan.list_source()
            if not self._stopped and self._start_executor(ScanJob(self.source, self.scorer)):
                try:
                    self._loop(emit)
                finally:
                    self.executor.close()
        finally:
            self._plan.stop()
        status = "stopped" if self._stopped else "completed"
        return ScanSummary(status, self.total, self.processed, self.results, self.errors,
                           self.filtered, time.perf_counter() - self._started_at,
                           first[0] if first else None)

    def _start_executor(self, job: ScanJob) -> bool:
        """Start the executor for ``job``; return False if :meth:`stop` came first.

        Starting may wait on the network (a Dask scheduler, within the executor's
        deadline), so it runs on a helper thread while this one waits for it or for a
        stop. After a stop, the helper closes the executor once its start ends.
        """
        started = in_daemon_thread("technic-executor-start", lambda: self.executor.start(job))
        started.add_done_callback(self._wake.put)
        while not (self._stopped or started.done()):
            self._wake.get()
        if started.done():
            started.result()
            return True
        started.add_done_callback(lambda _: self.executor.close())
        return False

    def _chunk_sizes(self) -> Iterator[int]:
        size = 1
        while True:
            yield size
            size = min(size * 2, self.executor.chunk_limit)

    def _loop(self, emit: Callable[[ScanEvent], None]) -> None:
        inflight: dict[Any, list[str]] = {}
        try:
            self._drive(inflight, emit)
        finally:
            for future in inflight:
                future.cancel()

    def _drive(self, inflight: dict[Any, list[str]], emit: Callable[[ScanEvent], None]) -> None:
        """Submit the best known symbols, wait for news, emit what completed; until done.

        A failure of the plan (the source could not be read) ends the scan with it.
        """
        window, sizes = 2 * self.executor.workers, self._chunk_sizes()
        size = next(sizes)
        while not self._stopped:
            if self._plan.error is not None:
                raise self._plan.error
            while not self._paused and len(inflight) < window:
                chunk = self._plan.take(size)
                if not chunk:
                    break
                future = self.executor.submit(chunk)
                inflight[future] = chunk
                future.add_done_callback(self._wake.put)
                size = next(sizes)
            if not inflight and self._plan.finished:
                return
            item = self._wake.get()
            if item is _WAKE or item not in inflight:
                continue
            chunk = inflight.pop(item)
            if not item.cancelled():
                self._emit_chunk(_outcomes(item, chunk), emit)

    def _emit_chunk(self, outcomes: list, emit: Callable[[ScanEvent], None]) -> None:
        with self._emit_lock, self._around_chunk():
            for symbol, ok, row in outcomes:
                if self._stopped:
                    return
                self.processed += 1
                event = self._event(symbol, ok, row)
                if event is not None:
                    emit(event)

    def _event(self, symbol: str, ok: bool, row: dict) -> ScanEvent | None:
        """Return the event of one outcome, or None if the filter drops it.

        A result that ``check_result`` refuses becomes this symbol's ``error``, whose
        message names the symbol and what the check said (the field, the rule and the
        value), so no result leaves the scanner that the message contract would refuse.
        """
        if ok:
            data = self._result_data(symbol, row)
            try:
                if self.check_result is not None:
                    self.check_result(data)
            except ValueError as exc:
                ok, row = False, _contract_error(symbol, exc)
            else:
                if self.filter is not None and not self.filter(data):
                    self.filtered += 1
                    return None
                self.results += 1
                data["position"] = self.results
        if not ok:
            self.errors += 1
            data = SafeData(symbol=symbol)
            data.update(self._plan.fields(symbol))
            data.update(row)
        data["total_processed"] = self.processed
        data["total_remaining"] = self.total - self.processed
        return ScanEvent("result" if ok else "error", symbol, data)

    def _result_data(self, symbol: str, row: dict) -> SafeData:
        """Assemble a result: the leading fields, the symbol's metadata, the row, the price."""
        data = SafeData(symbol=symbol)
        fill_result(data, self._plan.fields(symbol), row)
        return data


def _contract_error(symbol: str, exc: ValueError) -> dict[str, str]:
    """Return the error row of a result that breaks the message contract (say, its symbol)."""
    message = f"the result for symbol {symbol!r} breaks the message contract: {exc}"
    log.warning("%s", message)
    return {"error": "contract", "message": message}


def _outcomes(future: Any, chunk: list[str]) -> list:
    """Return a chunk's outcomes; if its task failed (a worker died), one error per symbol."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a lost task must not end the scan
        log.warning("a chunk of %d symbols failed: %r", len(chunk), exc)
        message = f"worker failed: {type(exc).__name__}: {exc}"
        return [(symbol, False, {"error": "worker", "message": message}) for symbol in chunk]

