"""Executors: construction rules, the per-symbol error boundary, lost chunks, cleanup."""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import psutil
import pytest

from technic_panel.data import Bars, DataError, SyntheticSource
from technic_panel.engine.executors import (
    EXECUTOR_KINDS,
    DaskExecutor,
    ProcessExecutor,
    ScanExecutor,
    ScanJob,
    make_executor,
    scan_symbols,
)
from technic_panel.engine.scanner import Scanner
from technic_panel.engine.scoring import Strategy

HAVE_DISTRIBUTED = importlib.util.find_spec("distributed") is not None
SEED = 7


class FailingSource(SyntheticSource):
    """A synthetic source whose bars fail for chosen symbols with chosen exceptions."""

    def __init__(self, failures: dict[str, Exception], **kwargs) -> None:
        super().__init__(seed=SEED, **kwargs)
        self.failures = failures

    def bars(self, symbol: str) -> Bars:
        if symbol in self.failures:
            raise self.failures[symbol]
        return super().bars(symbol)


class LosingExecutor(ScanExecutor):
    """A thread executor whose ``lose``-th chunk is lost, as if its worker had died.

    ``later=True`` loses it on a pool thread after submit returned (a worker
    dying mid-task); otherwise the returned future has already failed.
    """

    def __init__(self, lose: int, later: bool = False) -> None:
        super().__init__(workers=2)
        self.lose, self.later = lose, later
        self.calls = 0
        self.lost: list[str] = []

    def submit(self, symbols: list[str]) -> Future:
        self.calls += 1
        if self.calls != self.lose:
            return super().submit(symbols)
        self.lost = list(symbols)
        error = BrokenProcessPool("worker 1 died")
        if self.later:
            return self._pool.submit(_raise, error)
        future: Future = Future()
        future.set_exception(error)
        return future


def _raise(error: Exception) -> None:
    raise error


def symbols_of(source: SyntheticSource, n: int | None = None) -> list[str]:
    return source.universe()["symbol"].tolist()[:n]


def test_pool_processes_are_forked_with_the_engine_and_sources_loaded():
    """The forkserver maps TA-Lib and Arrow: its pool processes need not import them."""
    assert Scanner(SyntheticSource(symbols=4, seed=SEED), executor="process",
                   workers=1).run(lambda event: None).status == "completed"
    servers = [child for child in psutil.Process().children()
               if "multiprocessing.forkserver" in " ".join(child.cmdline())]
    assert len(servers) == 1
    libraries = {Path(mapped.path).name.split(".")[0] for mapped in servers[0].memory_maps()}
    assert {"_ta_lib", "libarrow"} <= libraries, sorted(libraries)


@pytest.mark.parametrize(("kind", "cls"), [
    ("thread", ScanExecutor), ("process", ProcessExecutor), ("dask", DaskExecutor),
])
def test_make_executor_kinds(kind, cls):
    executor = make_executor(kind, workers=3)
    assert type(executor) is cls
    assert executor.kind == kind
    assert executor.workers == 3
    assert repr(executor) == f"{cls.__name__}(workers=3, idle)"


def test_make_executor_default_threads_follow_io_bound():
    assert set(EXECUTOR_KINDS) == {"thread", "process", "dask"}
    assert (make_executor().kind, make_executor().workers) == ("thread", 1)
    assert make_executor(io_bound=True).workers == 32
    assert make_executor("thread", 3, io_bound=True).workers == 3
    cores = os.cpu_count() or 1
    assert make_executor("process", io_bound=True).workers == cores
    assert make_executor("dask", io_bound=True).workers == cores


def test_scanner_sizes_the_thread_pool_from_the_source():
    assert Scanner(SyntheticSource(symbols=5, seed=SEED)).executor.workers == 1
    slow = SyntheticSource(symbols=5, seed=SEED, latency_ms=1)
    assert Scanner(slow).executor.workers == 32
    assert Scanner(slow, workers=4).executor.workers == 4


def test_make_executor_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match=r"thread, process, dask, not 'threads'"):
        make_executor("threads")


@pytest.mark.parametrize("kind", EXECUTOR_KINDS)
@pytest.mark.parametrize("workers", [0, -1])
def test_workers_below_one_are_refused(kind, workers):
    with pytest.raises(ValueError, match=rf"\.workers must be >= 1, not {workers}$"):
        make_executor(kind, workers=workers)


def test_workers_error_names_the_class():
    with pytest.raises(ValueError, match=r"^ProcessExecutor\.workers"):
        ProcessExecutor(0)


def test_scan_symbols_turns_failures_into_error_outcomes():
    plain = SyntheticSource(symbols=12, seed=SEED)
    symbols = symbols_of(plain)
    broken, missing = symbols[3], symbols[7]
    source = FailingSource({broken: RuntimeError("disk on fire"),
                            missing: DataError(f"no bars for {missing}")}, symbols=12)
    outcomes = scan_symbols(ScanJob(source, Strategy().scorer()), symbols)
    assert [symbol for symbol, _, _ in outcomes] == symbols
    by_symbol = {symbol: (ok, row) for symbol, ok, row in outcomes}
    assert by_symbol.pop(broken) == (False, {"error": "internal",
                                             "message": "RuntimeError: disk on fire"})
    assert by_symbol.pop(missing) == (False, {"error": "data",
                                              "message": f"no bars for {missing}"})
    reference = dict(((s, row) for s, _, row in
                      scan_symbols(ScanJob(plain, Strategy().scorer()), list(by_symbol))))
    for symbol, (ok, row) in by_symbol.items():
        assert ok
        assert row == reference[symbol]
        assert {"tech_rating", "signal", "rsi_14"} <= set(row)


def test_scan_symbols_of_an_empty_chunk_is_empty():
    job = ScanJob(SyntheticSource(symbols=5, seed=SEED), Strategy().scorer())
    assert scan_symbols(job, []) == []


@pytest.mark.usefixtures("no_thread_leaks")
def test_thread_executor_leaves_no_threads_after_a_scan():
    summary = Scanner(SyntheticSource(symbols=300, seed=SEED)).run(lambda event: None)
    assert summary.status == "completed"


@pytest.mark.usefixtures("no_thread_leaks")
def test_thread_executor_leaves_no_threads_after_a_stop():
    scanner = Scanner(SyntheticSource(symbols=300, seed=SEED, latency_ms=2))
    seen: list[str] = []

    def stop_at_twenty(event) -> None:
        seen.append(event.symbol)
        if len(seen) == 20:
            scanner.stop()

    assert scanner.run(stop_at_twenty).status == "stopped"


def test_thread_executor_close_is_safe_twice_and_before_start():
    executor = ScanExecutor(1)
    executor.close()
    executor.start(ScanJob(SyntheticSource(symbols=5, seed=SEED), Strategy().scorer()))
    assert repr(executor) == "ScanExecutor(workers=1, started)"
    symbols = symbols_of(SyntheticSource(symbols=5, seed=SEED))
    assert [ok for _, ok, _ in executor.submit(symbols).result(timeout=10)] == [True] * 5
    executor.close()
    executor.close()
    assert repr(executor) == "ScanExecutor(workers=1, idle)"


@pytest.mark.parametrize("later", [False, True], ids=["failed-at-submit", "failed-on-worker"])
def test_a_lost_chunk_becomes_one_error_per_symbol_and_the_scan_goes_on(later, caplog):
    source = SyntheticSource(symbols=300, seed=SEED)
    executor = LosingExecutor(lose=3, later=later)  # chunks are 1, 2, 4, ...: 4 symbols lost
    events = []
    with caplog.at_level(logging.WARNING, logger="technic_panel.engine.scanner"):
        summary = Scanner(source, executor=executor).run(events.append)
    assert len(executor.lost) == 4
    assert summary.status == "completed"
    assert sorted(event.symbol for event in events) == sorted(symbols_of(source))
    errors = [event for event in events if event.kind == "error"]
    assert {event.symbol for event in errors} == set(executor.lost)
    for event in errors:
        assert event.data["error"] == "worker"
        assert event.data["message"] == "worker failed: BrokenProcessPool: worker 1 died"
    assert summary.errors == 4 and summary.results == 296
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "a chunk of 4 symbols failed: BrokenProcessPool('worker 1 died')"]


@pytest.mark.dask
@pytest.mark.skipif(not HAVE_DISTRIBUTED, reason="dask.distributed is not installed")
@pytest.mark.timeout(30)
def test_dask_executor_names_an_unreachable_scheduler():
    # A refused port: the client retries until its timeout (2 s), then gives its reason.
    executor = DaskExecutor(scheduler="tcp://127.0.0.1:1", timeout=2)
    job = ScanJob(SyntheticSource(symbols=5, seed=SEED), Strategy().scorer())
    started = time.monotonic()
    with pytest.raises(ValueError, match="^Dask scheduler tcp://127.0.0.1:1 cannot be reached: "
                       ) as info:
        executor.start(job)
    assert time.monotonic() - started < 5
    assert isinstance(info.value.__cause__, OSError)
    assert repr(executor) == "DaskExecutor(workers=%d, idle)" % executor.workers


def test_dask_executor_refuses_a_deadline_that_is_not_positive():
    assert DaskExecutor().timeout == 10
    with pytest.raises(ValueError, match=r"^DaskExecutor\.timeout must be > 0 seconds, not 0$"):
        DaskExecutor(timeout=0)
