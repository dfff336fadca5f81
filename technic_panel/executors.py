"""Where a scan's symbols are computed: threads, processes or a Dask cluster, one interface.

A :class:`ScanExecutor` is started with a :class:`ScanJob` (the source and the
scorer, shipped once per worker, not once per task), then takes chunks of
symbols with :meth:`~ScanExecutor.submit`. Each returns a future with
``add_done_callback``, ``result`` and ``cancel`` (a ``concurrent.futures``
future, or a ``distributed`` one, which offers the same three).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from technic_panel.data.base import DataError, DataSource
from technic_panel.indicators import latest_indicators
from technic_panel.scoring import Scorer

log = logging.getLogger(__name__)

EXECUTOR_KINDS = ("thread", "process", "dask")

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
            row = latest_indicators(job.source.bars(symbol), symbol)
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


_process_pools: dict[int, ProcessPoolExecutor] = {}
_process_pools_lock = threading.Lock()


def _process_pool(workers: int) -> ProcessPoolExecutor:
    """Return the process-wide pool of ``workers`` processes, started on first use."""
    with _process_pools_lock:
        pool = _process_pools.get(workers)
        if pool is None:
            context = multiprocessing.get_context("forkserver")
            pool = _process_pools[workers] = ProcessPoolExecutor(workers, mp_context=context)
        return pool


class ProcessExecutor(ScanExecutor):
    """Runs chunks in a shared pool of worker processes (forkserver), kept for later scans.

    The job travels with each chunk: it pickles to a few hundred bytes (sources
    drop their caches), and the synthetic universe is cached per worker process.
    """

    kind = "process"
    chunk_limit = 64

    @staticmethod
    def default_workers(io_bound: bool = False) -> int:
        """One process per core."""
        return os.cpu_count() or 1

    def start(self, job: ScanJob) -> None:
        """Attach to the shared pool (starting it on the first scan)."""
        self._job = job
        self._pool = _process_pool(self.workers)

    def submit(self, symbols: list[str]) -> Future:
        """Start computing ``symbols`` in a worker process."""
        return self._pool.submit(scan_symbols, self._job, symbols)

    def close(self) -> None:
        """Detach from the shared pool; this scan's futures are cancelled by the scanner."""
        self._pool = None


class DaskExecutor(ScanExecutor):
    """Runs chunks on a Dask cluster: a shared LocalCluster, or the one at ``scheduler``.

    The job is scattered to every worker once per scan; the LocalCluster is
    started on first use and kept for later scans (closed at interpreter exit).
    """

    kind = "dask"
    chunk_limit = 128

    def __init__(self, workers: int | None = None, scheduler: str | None = None) -> None:
        super().__init__(workers)
        self.scheduler = scheduler
        self._job_future: Any = None

    @staticmethod
    def default_workers(io_bound: bool = False) -> int:
        """One single-threaded worker per core in the LocalCluster."""
        return os.cpu_count() or 1

    def start(self, job: ScanJob) -> None:
        """Connect to the cluster and scatter ``job`` to every worker."""
        self._pool = dask_client(self.scheduler, self.workers)
        self._job_future = self._pool.scatter(job, broadcast=True, hash=False)

    def submit(self, symbols: list[str]) -> Any:
        """Start computing ``symbols`` as one Dask task."""
        return self._pool.submit(scan_symbols, self._job_future, symbols, pure=False)

    def close(self) -> None:
        """Cancel this scan's tasks; the shared cluster stays up for the next scan."""
        if self._job_future is not None:
            self._job_future.release()
            self._job_future = None
        self._pool = None


_clients: dict[tuple[str | None, int], Any] = {}
_clients_lock = threading.Lock()


def dask_client(scheduler: str | None = None, workers: int | None = None) -> Any:
    """Return a cached Dask client for ``scheduler``, or for a LocalCluster started once.

    Raises ``ValueError`` naming the address if the scheduler cannot be reached.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ValueError("executor='dask' needs dask.distributed: "
                         "pip install 'technic-panel[dask]'") from exc
    key = (scheduler, 0 if scheduler else workers or DaskExecutor.default_workers())
    with _clients_lock:
        client = _clients.get(key)
        if client is None or client.status != "running":
            if scheduler:
                try:
                    client = Client(scheduler, timeout="5s", set_as_default=False)
                except OSError as exc:
                    raise ValueError(f"ScanConfig.scheduler {scheduler!r} cannot be reached: "
                                     f"{exc}") from exc
            else:
                cluster = LocalCluster(n_workers=key[1], threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
                client = Client(cluster, set_as_default=False)
            _clients[key] = client
        return client


@atexit.register
def close_shared_workers() -> None:
    """Shut down the process pools and Dask clients (and LocalClusters) this process started."""
    with _process_pools_lock:
        for pool in _process_pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        _process_pools.clear()
    with _clients_lock:
        for client in _clients.values():
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
        _clients.clear()


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
