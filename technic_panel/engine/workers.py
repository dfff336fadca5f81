"""The workers a process shares between scans: one process pool, one Dask cluster, their end.

Overview
--------
Every ``executor='process'`` scan attaches to the one process pool of this process, every
``executor='dask'`` scan to the one LocalCluster (or to the one client of its scheduler
address), whatever ``workers`` it asks for: a request can size a pool, never multiply
pools. :func:`shared_workers` tells what is held; :func:`close_shared_workers` ends it.

Mechanics
---------
Size
    A pool (or LocalCluster) is sized ``min(workers, limit)`` and resized only while no
    scan is attached (a reference count); an attached scan shares it as it is, and bounds
    its own chunks in flight by its ``workers`` (the scanner's window). The LocalCluster
    is resized with ``cluster.scale(n)``. :func:`set_process_limit` sets ``limit``: the
    server sets it from ``ServerPolicy.max_processes``; the CLI and the notebook leave it
    unset.
Deadlines
    Connecting to a scheduler runs on a daemon thread, one attempt per address at a time;
    every caller waits for it with its own deadline and no lock held, so a scheduler that
    accepts and never answers fails its scans (``ValueError``) and blocks nothing else.
    An attempt that never returns is abandoned: later scans of that address wait on the
    same attempt, so stuck threads do not pile up.
Warm start
    Before it forks the first pool process, the forkserver imports the engine and the data
    sources (:data:`POOL_PRELOAD`), once; every pool process starts with them loaded.
    Without it each process imported them on its first chunk (about 0.35 s), so a pool
    warmed by one chunk had one process still cold: a 5,000-symbol store scan after a
    one-symbol scan took 0.55-0.62 s where a warm pool takes 0.33-0.38 s.
Parent death
    Pool processes (forkserver) start a thread that blocks reading a pipe whose only
    writer is this process: when this process dies, even by ``kill -9``, the read ends and
    they exit. Dask's worker processes do the same on their own (distributed's
    ``AsyncProcess`` holds a parent-alive pipe); its nannies live in this process.
Shutdown
    :func:`close_shared_workers` runs at interpreter exit, and on SIGTERM and SIGINT once
    :func:`install_shutdown_handlers` ran; every wait in it is bounded.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

DASK_TIMEOUT = 10.0
"""Seconds one wait on a Dask scheduler may take (connect, scatter, gather), by default."""
LOCAL_CLUSTER_TIMEOUT = 60.0
"""Seconds a LocalCluster may take to start its worker processes."""
POOL_PRELOAD = ("technic_panel.engine.executors", "technic_panel.data.store_source",
                "technic_panel.data.synthetic", "technic_panel.data.files")
"""Modules the forkserver imports before forking pool processes (after ``__main__``, which
it imports by default): what a chunk's job and its per-symbol work import."""
SHUTDOWN_TIMEOUT = 5.0
"""Seconds :func:`close_shared_workers` waits for each pool, client or cluster."""
_GRACE = 1.0

_process_limit: int | None = None


def set_process_limit(limit: int | None) -> None:
    """Cap the processes of the shared pool and of the LocalCluster (None: no cap).

    It applies from the next (re)size on; a scan asking for more workers shares the
    capped pool. The server calls it with ``ServerPolicy.max_processes``.
    """
    global _process_limit
    if limit is not None and limit < 1:
        raise ValueError(f"set_process_limit: limit must be >= 1 or None, not {limit}")
    _process_limit = limit


def _capped(workers: int) -> int:
    limit = _process_limit
    return workers if limit is None else min(workers, limit)


def in_daemon_thread(name: str, fn: Callable[[], T]) -> Future[T]:
    """Run ``fn`` on a new daemon thread; the future holds its result or exception.

    A caller may stop waiting on the future (a deadline, a Stop): the thread is then
    abandoned and never keeps the interpreter from exiting.
    """
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except Exception as exc:  # noqa: BLE001 - handed to whoever waits on the future
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _within(future: Future, timeout: float, what: str) -> bool:
    """Wait up to ``timeout`` s for ``future``; log a warning naming ``what`` if it is late."""
    if not wait([future], timeout).done:
        log.warning("gave up waiting for %s after %g s", what, timeout)
        return False
    if future.exception() is not None:
        log.warning("%s failed: %s", what, future.exception())
    return True


@dataclass(frozen=True)
class SharedWorkers:
    """What this process holds for its scans (see :func:`shared_workers`).

    ``process_pools`` and ``local_clusters`` are 0 or 1; ``pool_processes`` and
    ``cluster_workers`` their sizes; ``*_scans`` the scans attached now.
    """

    process_pools: int
    pool_processes: int
    pool_scans: int
    local_clusters: int
    cluster_workers: int
    cluster_scans: int
    schedulers: tuple[str, ...]


def _exit_with_parent(alive: Connection) -> None:
    """Pool process initializer: exit as soon as the process that owns the pool is gone."""
    threading.Thread(target=_wait_for_parent, args=(alive,), name="technic-parent-watch",
                     daemon=True).start()


def _wait_for_parent(alive: Connection) -> None:
    try:
        alive.recv()  # the owner never sends: this returns only by EOFError
    except EOFError:
        pass
    os._exit(1)


class _SharedPool:
    """The process pool of this process; see the module docs. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._size = self._scans = 0
        self._alive: tuple[Connection, Connection] | None = None

    def attach(self, workers: int) -> ProcessPoolExecutor:
        """Return the pool, (re)sized for ``workers`` if no scan is attached; count the scan."""
        size, retired = _capped(workers), None
        with self._lock:
            if self._pool is not None and not self._scans and self._size != size:
                retired, self._pool = self._pool, None
            if self._pool is None:
                self._pool, self._size = self._start(size), size
            self._scans += 1
            pool = self._pool
        if retired is not None:  # its processes end after their current chunk
            retired.shutdown(wait=False, cancel_futures=True)
        return pool

    def detach(self) -> None:
        """Count one attached scan less."""
        with self._lock:
            self._scans -= 1

    def state(self) -> tuple[int, int, int]:
        """Return (pools, processes, attached scans)."""
        with self._lock:
            return int(self._pool is not None), self._size, self._scans

    def _start(self, size: int) -> ProcessPoolExecutor:
        if self._alive is None:
            self._alive = multiprocessing.Pipe(duplex=False)
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["__main__", *POOL_PRELOAD])  # read when it starts
        return ProcessPoolExecutor(size, mp_context=context, initializer=_exit_with_parent,
                                   initargs=(self._alive[0],))

    def close(self, timeout: float) -> None:
        """Cancel queued chunks, give running ones ``timeout`` s, then end the processes."""
        with self._lock:
            pool, alive = self._pool, self._alive
            self._pool, self._alive, self._size, self._scans = None, None, 0, 0
        if pool is None:
            return
        pool.shutdown(wait=False, cancel_futures=True)
        ended = in_daemon_thread("technic-pool-shutdown", pool.shutdown)
        if not _within(ended, timeout, "the process pool's running chunks") and alive:
            alive[1].close()  # every pool process reads EOF and exits now
            _within(ended, timeout, "the process pool")
        if alive is not None:
            for end in alive:
                end.close()


class _SharedDask:
    """The Dask clients of this process, by scheduler (None: the LocalCluster). Thread-safe.

    Each entry is a future: connecting, connected (its client) or failed.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()  # a connect may end, and call back, while it is held
        self._clients: dict[str | None, Future] = {}
        self._scans: Counter[str | None] = Counter()
        self._local_size = 0

    def attach(self, scheduler: str | None, workers: int, timeout: float) -> Any:
        """Return the client of ``scheduler``, connecting at most ``timeout`` s; count the scan.

        Raises ``ValueError`` naming the address if it cannot be reached or is silent. The
        client's own connect timeout is ``timeout`` too: the wait here gives it one more
        second to report its reason, and ends the wait if it never does.
        """
        size = _capped(workers)
        with self._lock:
            attempt = self._clients.get(scheduler)
            if attempt is None or (attempt.done() and not _usable(attempt)):
                if attempt is not None:
                    _close_in_background(attempt)
                attempt = self._connect(scheduler, size, timeout)
            elif scheduler is None and attempt.done() and not self._scans[None]:
                self._resize_locked(attempt.result(), size)
            self._scans[scheduler] += 1
        wait([attempt], timeout + _GRACE if scheduler else LOCAL_CLUSTER_TIMEOUT)
        if attempt.done() and attempt.exception() is None:
            return attempt.result()
        self.detach(scheduler)
        if not attempt.done():
            raise ValueError(f"Dask scheduler {scheduler} did not answer within {timeout:g} s"
                             if scheduler else "the local Dask cluster did not start within "
                             f"{LOCAL_CLUSTER_TIMEOUT:g} s")
        error = attempt.exception()
        raise ValueError(f"Dask scheduler {scheduler} cannot be reached: {error}" if scheduler
                         else f"the local Dask cluster failed to start: {error}") from error

    def detach(self, scheduler: str | None) -> None:
        """Count one attached scan of ``scheduler`` less."""
        with self._lock:
            self._scans[scheduler] -= 1

    def discard(self, scheduler: str | None, client: Any) -> None:
        """Forget ``client`` (it stopped answering) and close it in the background."""
        with self._lock:
            attempt = self._clients.get(scheduler)
            if attempt is not None and attempt.done() and attempt.exception() is None \
                    and attempt.result() is client:
                del self._clients[scheduler]
        in_daemon_thread("technic-dask-close", lambda: _close_client(client, SHUTDOWN_TIMEOUT))

    def state(self) -> tuple[int, int, int, tuple[str, ...]]:
        """Return (local clusters, their workers, scans attached to them, remote schedulers)."""
        with self._lock:
            local = int(None in self._clients)
            remote = tuple(sorted(key for key in self._clients if key is not None))
            return local, self._local_size if local else 0, self._scans[None], remote

    def _resize_locked(self, client: Any, size: int) -> None:
        if size != self._local_size:
            client.cluster.scale(size)
            self._local_size = size

    def _connect(self, scheduler: str | None, size: int, timeout: float) -> Future:
        if scheduler is None:
            self._local_size = size
        attempt: Future = in_daemon_thread("technic-dask-connect",
                                           lambda: _new_client(scheduler, size, timeout))
        self._clients[scheduler] = attempt
        attempt.add_done_callback(lambda done: self._forget_unless_current(scheduler, done))
        return attempt

    def _forget_unless_current(self, scheduler: str | None, attempt: Future) -> None:
        """Close a client that connected after its entry was dropped (shutdown, discard)."""
        with self._lock:
            current = self._clients.get(scheduler) is attempt
        if not current and attempt.exception() is None:
            _close_client(attempt.result(), SHUTDOWN_TIMEOUT)

    def close(self, timeout: float) -> None:
        """Close every connected client (and the LocalCluster); abandon pending connects."""
        with self._lock:
            attempts = list(self._clients.items())
            self._clients.clear()
            self._scans.clear()
            self._local_size = 0
        for scheduler, attempt in attempts:
            if attempt.done() and attempt.exception() is None:
                client = attempt.result()
                closed = in_daemon_thread("technic-dask-close",
                                          functools.partial(_close_client, client, timeout))
                _within(closed, 2 * timeout, f"the Dask client of {scheduler or 'the cluster'}")


def _usable(attempt: Future) -> bool:
    return attempt.exception() is None and attempt.result().status == "running"


def _new_client(scheduler: str | None, size: int, timeout: float) -> Any:
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout=f"{timeout}s", set_as_default=False)
    cluster = LocalCluster(n_workers=size, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    return Client(cluster, set_as_default=False)


def _close_client(client: Any, timeout: float) -> None:
    cluster = client.cluster
    client.close(timeout=timeout)
    if cluster is not None:
        cluster.close(timeout=timeout)


def _close_in_background(attempt: Future) -> None:
    """Close the client of a finished connect attempt, if it has one, on a daemon thread."""
    if attempt.exception() is None:
        in_daemon_thread("technic-dask-close",
                         lambda: _close_client(attempt.result(), SHUTDOWN_TIMEOUT))


process_pool = _SharedPool()
"""The process pool every process scan of this process shares."""
dask_clients = _SharedDask()
"""The Dask clients (and the LocalCluster) every Dask scan of this process shares."""


def shared_workers() -> SharedWorkers:
    """Return what this process holds: the process pool, the LocalCluster, remote clients."""
    pools, processes, pool_scans = process_pool.state()
    clusters, cluster_workers, cluster_scans, schedulers = dask_clients.state()
    return SharedWorkers(pools, processes, pool_scans, clusters, cluster_workers,
                         cluster_scans, schedulers)


@atexit.register
def close_shared_workers(timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Shut down the process pool, the Dask clients and the LocalCluster this process holds.

    Every wait is bounded by about ``timeout`` s; a connect still pending is abandoned.
    Safe to call twice; a later scan starts them again.
    """
    process_pool.close(timeout)
    dask_clients.close(timeout)


_installed = False


def install_shutdown_handlers(loop: asyncio.AbstractEventLoop | None = None, *,
                              timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """On SIGTERM and SIGINT, close the shared workers first, then end as before.

    Without ``loop`` (a script, the CLI): the previous handler follows (SIGTERM's default
    ends the process, SIGINT's raises KeyboardInterrupt). With ``loop``, the asyncio loop
    that will run in the main thread (under ``panel serve``:
    ``tornado.ioloop.IOLoop.current().asyncio_loop``), the handlers are installed once the
    loop runs, replacing the server's own, and they stop the loop. Call it from the main
    thread, not from a notebook (the kernel owns SIGINT); elsewhere it does nothing.
    """
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        log.debug("shutdown handlers not installed: already done, or not the main thread")
        return
    _installed = True
    if loop is None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _chained(signum, signal.getsignal(signum), timeout))
    else:
        loop.call_soon(_install_on_loop, loop, timeout)


def _chained(signum: int, previous: Any, timeout: float) -> Callable[[int, Any], None]:
    def handle(received: int, frame: Any) -> None:
        log.info("%s: closing the shared workers", signal.Signals(received).name)
        close_shared_workers(timeout)
        if callable(previous):
            previous(received, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
    return handle


def _install_on_loop(loop: asyncio.AbstractEventLoop, timeout: float) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stop_loop, loop, signum, timeout)


def _stop_loop(loop: asyncio.AbstractEventLoop, signum: int, timeout: float) -> None:
    started = time.monotonic()
    log.info("%s: closing the shared workers, then stopping the server loop",
             signal.Signals(signum).name)
    close_shared_workers(timeout)
    log.info("shared workers closed in %.1f s", time.monotonic() - started)
    loop.stop()
