"""HTTP API benchmark: first result after the POST, stream latency under fan-out, memory.

Writes the "HTTP API" section of BENCHMARKS.md. Run with `make bench`.

The server is `make_app()` in a subprocess (this script with `--serve PORT`), so the
clients do not share its interpreter; the clients are ScanClient streams in this process,
half over Server-Sent Events, half over WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import aclosing
from datetime import datetime, timezone
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import percentile, write_section  # noqa: E402

from technic_panel.api.rest import make_app  # noqa: E402
from technic_panel.client.scan_client import ScanClient  # noqa: E402
from technic_panel.streaming.manager import StreamManager  # noqa: E402

RUNS = 5
PACED = {"symbols": 600, "latency_ms": 100, "workers": 6, "seed": 5}
"""About 60 results a second for 10 s: a provider-bound scan, as in production."""
FAN_OUT = (1, 100, 200)
P99_TARGET_MS = {1: 5, 100: 20, 200: 40}
"""Stream latency p99 targets by concurrent streams (issue 17)."""
CLIENT_PROCESSES = 2
"""Processes the 100 and 200 streams are read in, so the clients are not the bottleneck."""
CYCLES = 1000
METHOD = f"""
Method: the server runs in its own process (`make_app()` on 127.0.0.1); clients are
`ScanClient` streams in the benchmark process, alternately SSE and WebSocket.
*First result*: the time from the return of `POST /scan/stream` (a default 5,000-symbol
thread scan) to the first `result` yielded by a stream opened right after it; median of
{RUNS} after a warm-up scan. *Latency*: receipt (`time.time()` when the client yields the
message) minus emission (`metadata.timestamp`, the wall-clock millisecond at which the
scan thread added the message, truncated, so up to 1 ms is added), for every message
emitted after all streams had received their first message, in a scan paced by emulated
provider latency ({PACED['symbols']} symbols, {PACED['latency_ms']} ms each,
{PACED['workers']} workers: about 60 results/s); one stream is read in this process, 100 and
200 in {CLIENT_PROCESSES} reader processes (half each), and the CPU share (CPU seconds over
wall seconds of the stream) of the server and of the busiest reader tells which side limits
the p50. The SSE and WebSocket handlers set TCP_NODELAY, and one fan-out task per scan
writes every caught-up stream. *Memory*: the server process's resident
set (psutil) after 100 warm-up cycles and after {CYCLES:,} more; a cycle opens a stream on
a finished 150-symbol scan, reads its first message and closes it.
"""


def serve(port: int) -> None:
    """Serve the API on 127.0.0.1:``port`` until killed."""
    async def main() -> None:
        make_app(StreamManager(max_concurrent=8, inactivity_timeout=3600)).listen(
            port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(main())


class Server:
    """The API in a subprocess, with its resident memory."""

    def __enter__(self) -> Server:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, __file__, "--serve", str(port)],
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not self._healthy():
            if time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.1)
        return self

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=1).ok
        except requests.ConnectionError:
            return False

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def rss_mb(self) -> float:
        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def __exit__(self, *exc_info) -> None:
        self.process.terminate()
        self.process.wait(30)


def emitted(message: dict) -> float:
    stamp = datetime.fromisoformat(message["metadata"]["timestamp"][:-1])
    return stamp.replace(tzinfo=timezone.utc).timestamp()


async def first_result(client: ScanClient) -> tuple[float, float]:
    """Seconds the POST took, and from its return to the first result at the client."""
    posted = time.perf_counter()
    scan_id = await client.astart({})
    returned = time.perf_counter()
    async with aclosing(client.astream(scan_id)) as stream:
        async for message in stream:
            if message["type"] == "result":
                arrived = time.perf_counter()
                break
    await client.astop(scan_id)
    return returned - posted, arrived - returned


async def read_streams(client: ScanClient, scan_id: str, first: int,
                       last: int) -> list[list[tuple[float, float]]]:
    """Read streams ``first`` to ``last - 1`` (even: SSE, odd: WS) to their final."""
    received: list[list[tuple[float, float]]] = [[] for _ in range(first, last)]

    async def read(k: int) -> None:
        async for message in client.astream(scan_id, via="ws" if k % 2 else "sse"):
            received[k - first].append((emitted(message), time.time()))

    await asyncio.gather(*(read(k) for k in range(first, last)))
    return received


def reader(url: str, first: int, last: int) -> None:
    """A reader process: say ready, read a scan id, print deliveries and CPU share as JSON.

    It is started (and has imported everything) before the scan, so its streams go live
    while the scan runs, however long a loaded machine takes to start a process.
    """
    print("ready", flush=True)
    scan_id = sys.stdin.readline().strip()
    wall, cpu = time.perf_counter(), time.process_time()
    received = asyncio.run(read_streams(ScanClient(url), scan_id, first, last))
    share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    print(json.dumps({"received": received, "cpu_share": share}))


async def latency(client: ScanClient, server: Server, streams: int) -> dict:
    """Seconds from emission to receipt once all streams are live, and the CPU shares."""
    if streams == 1:
        scan_id = await client.astart(PACED)
        server_cpu, wall, cpu = server.cpu_seconds(), time.perf_counter(), time.process_time()
        received = await read_streams(client, scan_id, 0, 1)
        shares = [(time.process_time() - cpu) / (time.perf_counter() - wall)]
    else:
        cuts = [streams * i // CLIENT_PROCESSES for i in range(CLIENT_PROCESSES + 1)]
        readers = [await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--read", client.url, str(a), str(b),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            for a, b in zip(cuts, cuts[1:], strict=False)]
        for process in readers:
            await process.stdout.readline()
        scan_id = await client.astart(PACED)
        server_cpu, wall = server.cpu_seconds(), time.perf_counter()
        for process in readers:
            process.stdin.write(f"{scan_id}\n".encode())
            process.stdin.close()
        outputs = [json.loads(await process.stdout.read()) for process in readers]
        for process in readers:
            await process.wait()
        received = [stream for out in outputs for stream in out["received"]]
        shares = [out["cpu_share"] for out in outputs]
    server_share = (server.cpu_seconds() - server_cpu) / (time.perf_counter() - wall)
    live = max(per_stream[0][1] for per_stream in received)
    samples = [got - sent for per_stream in received for sent, got in per_stream
               if sent >= live]
    if not samples:
        raise RuntimeError(f"the {streams} streams went live only after the scan's last message")
    return {"samples": samples, "server_share": server_share, "client_share": max(shares)}


async def cycles(client: ScanClient, scan_id: str, count: int) -> None:
    """Open a stream, read one message, close it; ``count`` times, ten at a time."""
    async def cycle(k: int) -> None:
        async with aclosing(client.astream(scan_id, via="ws" if k % 2 else "sse")) as stream:
            async for _ in stream:
                break

    for start in range(0, count, 10):
        await asyncio.gather(*(cycle(k) for k in range(start, start + 10)))


async def measure(server: Server) -> dict:
    client = ScanClient(server.url)
    await first_result(client)
    firsts = [await first_result(client) for _ in range(RUNS)]
    latencies = {streams: await latency(client, server, streams) for streams in FAN_OUT}
    scan_id = await client.astart({"symbols": 150})
    await cycles(client, scan_id, 100)
    before = server.rss_mb()
    await cycles(client, scan_id, CYCLES)
    await asyncio.sleep(1)
    return {"post": statistics.median(post for post, _ in firsts),
            "first": statistics.median(first for _, first in firsts),
            "latencies": latencies, "before": before, "after": server.rss_mb()}


def main() -> None:
    load = os.getloadavg()[0]
    with Server() as server:
        figures = asyncio.run(measure(server))
    rows = ["| measure | result | target |", "|---|---|---|",
            f"| first result at the client after `POST /scan/stream` returns, 5,000-symbol "
            f"thread scan (median of {RUNS}; the POST itself took {figures['post'] * 1000:.1f}"
            f" ms) | {figures['first'] * 1000:.1f} ms | <= 50 ms |"]
    for streams, run in figures["latencies"].items():
        samples = run["samples"]
        target = f"p99 <= {P99_TARGET_MS[streams]} ms"
        where = "1 process" if streams == 1 else f"{CLIENT_PROCESSES} processes"
        limit = "server" if run["server_share"] >= run["client_share"] else "client"
        rows.append(f"| stream latency, emission to client receipt, {streams} concurrent "
                    f"stream{'s' if streams > 1 else ''} read in {where} "
                    f"({len(samples):,} deliveries): p50 / p99 (CPU share server "
                    f"{run['server_share']:.0%}, busiest reader {run['client_share']:.0%}: "
                    f"the {limit} limits) | {percentile(samples, 50) * 1000:.1f} / "
                    f"{percentile(samples, 99) * 1000:.1f} ms | {target} |")
    rows.append(f"| server resident memory before / after {CYCLES:,} stream open/close "
                f"cycles | {figures['before']:.0f} / {figures['after']:.0f} MB, "
                f"{figures['after'] - figures['before']:+.1f} MB | flat within 10 MB |")
    write_section("HTTP API", "\n".join(rows) + "\n" + METHOD + "\nLoad average (1 min) at "
                  f"the start / end: {load:.1f} / {os.getloadavg()[0]:.1f} (a shared machine).")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]))
    elif sys.argv[1:2] == ["--read"]:
        reader(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
