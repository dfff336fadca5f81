"""Executor resources and network waits under attack, on real pools, clusters and sockets.

1. Many ``workers`` values must not multiply process pools or LocalClusters; a killed
   parent leaves no orphans.
2. A scheduler that accepts TCP and never answers fails its scan within the deadline,
   honours Stop, blocks no other scan, and does not keep SIGTERM from ending the process.
3. The LocalCluster listens on loopback only and has no dashboard.
4. Twenty scans of random executors and workers leave one pool and one cluster.
"""

from __future__ import annotations

import importlib.util
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from helpers import wait_until

from technic_panel.data import SyntheticSource
from technic_panel.engine.executors import DaskExecutor, ProcessExecutor, ScanJob
from technic_panel.engine.scanner import Scanner
from technic_panel.engine.scoring import Strategy
from technic_panel.engine.workers import close_shared_workers, set_process_limit, shared_workers
from technic_panel.streaming.manager import StreamManager

HAVE_DISTRIBUTED = importlib.util.find_spec("distributed") is not None
requires_dask = pytest.mark.skipif(not HAVE_DISTRIBUTED, reason="dask.distributed is not "
                                   "installed: pip install 'technic-panel[dask]'")
dask_marks = [pytest.mark.dask, requires_dask]
ROOT = Path(__file__).resolve().parent.parent
SEED = 7


@pytest.fixture(autouse=True)
def fresh_workers():
    """Every test starts and ends with no shared workers and no process limit."""
    close_shared_workers()
    yield
    close_shared_workers()
    set_process_limit(None)


class SilentServer:
    """A loopback TCP server that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self._socket.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self._socket.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def job() -> ScanJob:
    return ScanJob(SyntheticSource(symbols=20, seed=SEED), Strategy().scorer())


def scan(executor, workers: int | None = None, symbols: int = 50, **kwargs):
    return Scanner(SyntheticSource(symbols=symbols, seed=SEED), executor=executor,
                   workers=workers, **kwargs).run(lambda event: None)


def worker_processes(parent: psutil.Process | None = None) -> tuple[list, list]:
    """Return (process pool workers, Dask worker processes) among ``parent``'s descendants.

    Pool workers are the forkserver's children; Dask workers are spawned children.
    """
    parent = parent or psutil.Process()
    pool, dask = [], []
    for child in parent.children():
        try:
            cmdline = " ".join(child.cmdline())
            if "multiprocessing.forkserver" in cmdline:
                pool += [p for p in child.children() if p.status() != psutil.STATUS_ZOMBIE]
            elif "spawn_main" in cmdline and child.status() != psutil.STATUS_ZOMBIE:
                dask.append(child)
        except psutil.NoSuchProcess:
            continue
    return pool, dask


def gone(pids: list[int]) -> bool:
    """Whether every pid has exited (a zombie waiting for its reaper counts as exited)."""
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def child(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """Start ``python -c code args`` in the project root, its stdout a text pipe."""
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, **kwargs)


DESCENDANTS = """
def descendants():
    import psutil
    return [p.pid for p in psutil.Process().children(recursive=True)]
"""


# --- 1. one pool and one cluster, whatever workers; no orphans --------------------------------

def test_process_scans_of_different_workers_share_one_pool():
    for workers in (2, 3):
        assert scan("process", workers).status == "completed"
        state = shared_workers()
        assert (state.process_pools, state.pool_processes, state.pool_scans) == (1, workers, 0)
    wait_until(lambda: len(worker_processes()[0]) <= 3, timeout=15)


def test_an_attached_pool_is_shared_as_it_is_and_resized_when_free():
    first, second = ProcessExecutor(2), ProcessExecutor(3)
    first.start(job())
    second.start(job())
    assert second._pool is first._pool
    assert (shared_workers().pool_processes, shared_workers().pool_scans) == (2, 2)
    symbol = SyntheticSource(symbols=20, seed=SEED).universe()["symbol"][0]
    assert [ok for _, ok, _ in second.submit([symbol]).result(timeout=60)] == [True]
    first.close()
    second.close()
    second.close()
    assert shared_workers().pool_scans == 0
    third = ProcessExecutor(3)
    third.start(job())
    assert (shared_workers().pool_processes, shared_workers().pool_scans) == (3, 1)
    third.close()


def test_the_process_limit_caps_a_pool_asked_for_256_workers():
    set_process_limit(2)
    assert scan("process", 256, symbols=200).status == "completed"
    assert shared_workers().pool_processes == 2
    assert len(worker_processes()[0]) <= 2


@pytest.mark.parametrize("limit", [0, -3])
def test_set_process_limit_refuses_below_one(limit):
    with pytest.raises(ValueError, match=rf"^set_process_limit: limit must be >= 1 or None, "
                                         rf"not {limit}$"):
        set_process_limit(limit)


@pytest.mark.dask
@requires_dask
def test_dask_scans_of_different_workers_share_one_cluster():
    set_process_limit(2)
    for workers in (1, 2, 5):
        assert scan("dask", workers).status == "completed"
    state = shared_workers()
    assert (state.local_clusters, state.cluster_workers, state.cluster_scans) == (1, 2, 0)
    wait_until(lambda: len(worker_processes()[1]) == 2, timeout=30)


ORPHAN_CHILD = DESCENDANTS + """
import json, sys
from technic_panel.data import SyntheticSource
from technic_panel.engine.scanner import Scanner
for executor in sys.argv[1:]:
    summary = Scanner(SyntheticSource(50), executor=executor, workers=2).run(lambda e: None)
    assert summary.status == "completed", summary
print(json.dumps(descendants()), flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("executors", [
    ["process"],
    pytest.param(["dask"], marks=dask_marks),
    pytest.param(["process", "dask"], marks=dask_marks),
])
@pytest.mark.timeout(120)
def test_kill_9_of_the_parent_leaves_no_orphans(executors):
    proc = child(ORPHAN_CHILD, *executors, stdin=subprocess.PIPE)
    try:
        children = json.loads(proc.stdout.readline())
        assert len(children) >= 2  # at least the two workers
        proc.kill()
        proc.wait(10)
        killed = time.monotonic()
        wait_until(lambda: gone(children), timeout=30, interval=0.1)
        print(f"{executors}: {len(children)} children gone {time.monotonic() - killed:.2f} s "
              "after kill -9")
    finally:
        proc.kill()
        proc.stdin.close()
        proc.stdout.close()


# --- 2. a scheduler that accepts and never answers -------------------------------------------

@pytest.mark.dask
@requires_dask
@pytest.mark.timeout(60)
def test_a_silent_scheduler_fails_the_scan_within_its_deadline_and_blocks_nothing(silent):
    started = time.monotonic()
    with pytest.raises(ValueError, match=rf"^Dask scheduler {silent.address} did not answer "
                                         r"within 2 s$"):
        scan(DaskExecutor(scheduler=silent.address, timeout=2))
    assert time.monotonic() - started < 4
    assert silent.accepted  # it did connect: the wait was on the answer

    waiting = Scanner(SyntheticSource(50), executor=DaskExecutor(scheduler=silent.address,
                                                                 timeout=30))
    threading.Timer(0.5, waiting.stop).start()
    started = time.monotonic()
    assert waiting.run(lambda event: None).status == "stopped"
    assert time.monotonic() - started < 2

    def wait_in_vain() -> None:
        with pytest.raises(ValueError, match=f"^Dask scheduler {silent.address} "):
            scan(DaskExecutor(scheduler=silent.address, timeout=30))

    stuck = threading.Thread(target=wait_in_vain, daemon=True)
    stuck.start()  # waits on the same abandoned attempt, holding no lock
    assert scan("dask", 2).status == "completed"
    assert stuck.is_alive()
    started = time.monotonic()
    close_shared_workers()
    assert time.monotonic() - started < 10


@pytest.mark.dask
@requires_dask
@pytest.mark.timeout(60)
def test_the_manager_ends_a_silent_scheduler_scan_failed_naming_it(silent):
    manager = StreamManager(inactivity_timeout=60)
    try:
        scan_id = manager.start_stream({"executor": "dask", "scheduler": silent.address,
                                        "symbols": 50})
        record = wait_until(lambda: (r := manager.get(scan_id)).status != "running" and r,
                            timeout=20)
        assert record.status == "failed"
        assert record.error == (f"ValueError: Dask scheduler {silent.address} did not answer "
                                "within 10 s")
    finally:
        manager.shutdown()


SIGTERM_CHILD = DESCENDANTS + """
import asyncio, json, sys, threading
from technic_panel.data import SyntheticSource
from technic_panel.engine.executors import DaskExecutor
from technic_panel.engine.workers import install_shutdown_handlers
from technic_panel.engine.scanner import Scanner

mode, address = sys.argv[1:]
loop = asyncio.new_event_loop() if mode == "loop" else None
install_shutdown_handlers(loop)
done = Scanner(SyntheticSource(50), executor="process", workers=2).run(lambda e: None)
assert done.status == "completed", done
stuck = Scanner(SyntheticSource(50), executor=DaskExecutor(scheduler=address, timeout=600))
threading.Thread(target=stuck.run, args=(lambda e: None,)).start()  # not even a daemon
print(json.dumps(descendants()), flush=True)
if loop is None:
    threading.Event().wait()
else:
    loop.run_forever()
    print("the loop stopped", flush=True)
    stuck.stop()  # as the server's manager would on shutdown
"""


@pytest.mark.dask
@requires_dask
@pytest.mark.parametrize("mode", ["plain", "loop"])
@pytest.mark.timeout(90)
def test_sigterm_ends_a_process_waiting_on_a_silent_scheduler(silent, mode):
    proc = child(SIGTERM_CHILD, mode, silent.address)
    try:
        children = json.loads(proc.stdout.readline())
        wait_until(lambda: silent.accepted, timeout=30)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(10)
        print(f"{mode}: exited {time.monotonic() - started:.2f} s after SIGTERM, code {code}")
        assert code == (0 if mode == "loop" else -signal.SIGTERM)
        if mode == "loop":
            assert proc.stdout.read() == "the loop stopped\n"
        wait_until(lambda: gone(children), timeout=30, interval=0.1)
    finally:
        proc.kill()
        proc.stdout.close()


# --- 3. the LocalCluster listens on loopback only, without a dashboard -----------------------

@pytest.mark.dask
@requires_dask
def test_the_local_cluster_listens_on_loopback_only_without_a_dashboard():
    executor = DaskExecutor(workers=1)
    executor.start(job())
    try:
        info = executor._pool.scheduler_info()
        assert info["address"].startswith("tcp://127.0.0.1:")
        http = f"http://127.0.0.1:{info['services']['dashboard']}"  # health and metrics only
        with urllib.request.urlopen(f"{http}/health", timeout=10) as answer:
            assert answer.read() == b"ok"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{http}/status", timeout=10)
        assert refused.value.code == 404  # no Bokeh dashboard
        processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
        listening = [conn.laddr for p in processes for conn in p.net_connections("inet")
                     if conn.status == psutil.CONN_LISTEN]
        assert listening
        assert {address.ip for address in listening} <= {"127.0.0.1", "::1"}
    finally:
        executor.close()


# --- 4. twenty random scans: one pool, one cluster ----------------------------------------

@pytest.mark.dask
@requires_dask
@pytest.mark.timeout(180)
def test_twenty_random_scans_leave_one_pool_and_one_cluster():
    set_process_limit(3)
    rng = random.Random(SEED)
    for _ in range(20):
        executor, workers = rng.choice(["thread", "process", "dask"]), rng.randint(1, 8)
        assert scan(executor, workers, symbols=40).status == "completed", (executor, workers)
    state = shared_workers()
    assert (state.process_pools, state.local_clusters, state.schedulers) == (1, 1, ())
    assert state.pool_processes <= 3 and state.cluster_workers <= 3
    assert (state.pool_scans, state.cluster_scans) == (0, 0)

    def bounded() -> bool:
        pool, dask = worker_processes()
        return len(pool) <= state.pool_processes and len(dask) <= state.cluster_workers
    wait_until(bounded, timeout=30, interval=0.1)
