"""Where a scan's symbols are computed: threads, processes or a Dask cluster, one interface.

A :class:`ScanExecutor` is started with a :class:`ScanJob` (the source and the
scorer, shipped once per worker, not once per task), then takes chunks of
symbols with :meth:`~ScanExecutor.submit`. Each returns a future with
``add_done_callback``, ``result`` and ``cancel`` (a ``concurrent.futures``
future, or a ``distributed`` one, which offers the same three).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from technic_panel.data.base import DataError, DataSource
from technic_panel.engine.indicators import latest_indicators
from technic_panel.engine.scoring import Scorer
from technic_panel.engine.workers import (
    DASK_TIMEOUT,
    close_shared_workers,  # noqa: F401 - tests, notebooks and benchmarks import it here
    dask_clients,
    in_daemon_thread,
    process_pool,
)
from technic_panel.vocabulary import EXECUTOR_KINDS

log = logging.getLogger(__name__)


Outcome = tuple[str, bool, dict[str, Any]]
"""One symbol's outcome: (symbol, ok, row or error details)."""


@dataclass
class ScanJob:
    """What every worker needs for a scan: the data source and the frozen scorer."""

    source: DataSource
    scorer: Scorer


def _never() -> bool:
    return False


def scan_symbols(job: ScanJob, symbols: list[str],
                 cancelled: Callable[[], bool] = _never) -> list[Outcome]:
    """Compute indicators and scores of ``symbols``; a failing symbol becomes an error outcome.

    This is the boundary of the per-symbol work, so any exception is caught
    here: one bad symbol must not end the scan. ``cancelled`` is checked before
    each symbol, so a stopped scan's threads end after at most one more fetch.
    """
    outcomes: list[Outcome] = []
    for symbol in symbols:
        if cancelled():
            break
        try:
            row: dict[str, Any] = latest_indicators(job.source.bars(symbol), symbol)
            row.update(job.scorer.score(row))
            outcomes.append((symbol, True, row))
        except DataError as exc:
            outcomes.append((symbol, False, {"error": "data", "message": str(exc)}))
        except Exception as exc:  # noqa: BLE001 - the per-symbol boundary
            log.debug("symbol %s failed", symbol, exc_info=True)
            outcomes.append((symbol, False, {"error": "internal",
                                             "message": f"{type(exc).__name__}: {exc}"}))
    return outcomes


class ScanExecutor:
    """Runs chunks of symbols in a thread pool; the base of the other executors.

    ``chunk_limit`` is the largest chunk worth sending: small enough that stop
    and pause act within a few milliseconds, large enough to amortise a task.
    """

    kind = "thread"
    chunk_limit = 32

    def __init__(self, workers: int | None = None, *, io_bound: bool = False) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"{type(self).__name__}.workers must be >= 1, not {workers}")
        self.workers = workers or self.default_workers(io_bound)
        if io_bound:
            self.chunk_limit = 1  # waiting dominates: one symbol a task, all waits overlap
        self._pool: Any = None
        self._job: ScanJob | None = None
        self._cancel = threading.Event()

    def __repr__(self) -> str:
        state = "started" if self._pool is not None else "idle"
        return f"{type(self).__name__}(workers={self.workers}, {state})"

    @staticmethod
    def default_workers(io_bound: bool = False) -> int:
        """One thread for computing (TA-Lib holds the GIL), 32 for waiting on a provider."""
        return 32 if io_bound else 1

    def start(self, job: ScanJob) -> None:
        """Prepare the workers for ``job``."""
        self._job = job
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="technic-scan")

    def submit(self, symbols: list[str]) -> Future:
        """Start computing ``symbols``; the future's result is a list of outcomes."""
        return self._pool.submit(scan_symbols, self._job, symbols, self._cancel.is_set)

    def close(self) -> None:
        """Cancel pending chunks and wait for the threads; safe to call twice.

        Running chunks stop at their next symbol, so this waits out one fetch at most.
        """
        pool, self._pool = self._pool, None
        if pool is not None:
            self._cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)


class ProcessExecutor(ScanExecutor):
    """Runs chunks in the process pool this process shares between scans (forkserver).

    The job travels with each chunk: it pickles to a few hundred bytes (sources
    drop their caches), and the synthetic universe is cached per worker process.
    The pool is sized for ``workers`` (capped by :func:`~technic_panel.engine.workers.
    set_process_limit`) unless another scan is attached to it; see
    :mod:`technic_panel.engine.workers`.
    """

    kind = "process"
    chunk_limit = 64

    @staticmethod
    def default_workers(io_bound: bool = False) -> int:
        """One process per core."""
        return os.cpu_count() or 1

    def start(self, job: ScanJob) -> None:
        """Attach to the shared pool (starting or resizing it if no scan is attached)."""
        self._job = job
        self._pool = process_pool.attach(self.workers)

    def submit(self, symbols: list[str]) -> Future:
        """Start computing ``symbols`` in a worker process."""
        return self._pool.submit(scan_symbols, self._job, symbols)

    def close(self) -> None:
        """Detach from the shared pool; this scan's futures are cancelled by the scanner."""
        pool, self._pool = self._pool, None
        if pool is not None:
            process_pool.detach()


class DaskExecutor(ScanExecutor):
    """Runs chunks on a Dask cluster: the shared LocalCluster, or the one at ``scheduler``.

    The job is scattered to every worker once per scan. Every wait on the cluster
    (connecting, scattering, gathering a chunk's outcomes) ends within ``timeout``
    seconds; submitting only queues a message. The LocalCluster (loopback only, no
    dashboard) and the clients are shared by every scan; see :mod:`technic_panel.engine.workers`.
    """

    kind = "dask"
    chunk_limit = 128

    def __init__(self, workers: int | None = None, scheduler: str | None = None, *,
                 timeout: float = DASK_TIMEOUT) -> None:
        super().__init__(workers)
        if not timeout > 0:
            raise ValueError(f"DaskExecutor.timeout must be > 0 seconds, not {timeout}")
        self.scheduler = scheduler
        self.timeout = timeout
        self._job_future: Any = None

    @staticmethod
    def default_workers(io_bound: bool = False) -> int:
        """One single-threaded worker per core in the LocalCluster."""
        return os.cpu_count() or 1

    def start(self, job: ScanJob) -> None:
        """Connect to the cluster and scatter ``job`` to every worker, each within ``timeout``.

        Raises ``ValueError`` naming the scheduler if it cannot be reached or is silent.
        """
        if importlib.util.find_spec("distributed") is None:
            raise ValueError("executor='dask' needs dask.distributed: "
                             "pip install 'technic-panel[dask]'")
        self._pool = dask_clients.attach(self.scheduler, self.workers, self.timeout)
        client = self._pool
        scattered = in_daemon_thread("technic-dask-scatter", lambda: client.scatter(
            job, broadcast=True, hash=False, timeout=self.timeout))
        if not wait([scattered], self.timeout).done:
            self.close()
            dask_clients.discard(self.scheduler, client)
            where = f"Dask scheduler {self.scheduler}" if self.scheduler else "the local cluster"
            raise ValueError(f"{where} did not take the scan's job within {self.timeout:g} s")
        try:
            self._job_future = scattered.result()
        except Exception:
            self.close()
            raise

    def submit(self, symbols: list[str]) -> Any:
        """Start computing ``symbols`` as one Dask task."""
        future = self._pool.submit(scan_symbols, self._job_future, symbols, pure=False)
        return _DaskChunk(future, self.timeout)

    def close(self) -> None:
        """Release this scan's job; the shared cluster stays up for the next scan."""
        if self._job_future is not None:
            self._job_future.release()
            self._job_future = None
        client, self._pool = self._pool, None
        if client is not None:
            dask_clients.detach(self.scheduler)


class _DaskChunk:
    """A Dask future whose ``result`` waits at most ``timeout`` s: fetching it is a network wait.

    Done callbacks receive this object, so the scanner finds it among its futures.
    """

    def __init__(self, future: Any, timeout: float) -> None:
        self._future, self._timeout = future, timeout

    def add_done_callback(self, fn: Callable[[_DaskChunk], object]) -> None:
        self._future.add_done_callback(lambda _: fn(self))

    def result(self, timeout: float | None = None) -> list[Outcome]:
        return self._future.result(timeout=self._timeout if timeout is None else timeout)

    def cancel(self) -> None:
        self._future.cancel()

    def cancelled(self) -> bool:
        return self._future.cancelled()


def make_executor(kind: str = "thread", workers: int | None = None,
                  scheduler: str | None = None, *, io_bound: bool = False) -> ScanExecutor:
    """Return an executor of ``kind`` (one of :data:`EXECUTOR_KINDS`).

    ``io_bound`` (the source waits on a remote provider) raises the default
    thread count, since waiting threads release the GIL.
    """
    if kind == "thread":
        return ScanExecutor(workers, io_bound=io_bound)
    if kind == "process":
        return ProcessExecutor(workers)
    if kind == "dask":
        return DaskExecutor(workers, scheduler)
    raise ValueError(f"executor must be one of {', '.join(EXECUTOR_KINDS)}, not {kind!r}")
