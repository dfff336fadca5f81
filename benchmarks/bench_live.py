"""Live scan benchmark: bars in, messages out, at 5,000 and 20,000 symbols a bar a second.

Writes the "Live scan" section of BENCHMARKS.md. Run with `make bench` (a short run) or
`python benchmarks/bench_live.py --long` (the issue's ten minutes).

Three measurements, each a live scan of the synthetic universe with one closed bar per
symbol per second (`bar_interval=1`; the feed's forming updates are off, `updates=1`, so
5,000 symbols are 5,000 bars a second; `--updates 4` adds three forming updates a bar):

- in process: a `StreamManager` in this process and one subscriber thread; feed-to-message
  latency is the subscriber's receipt wall clock minus the bar's `feed_time`;
- over SSE: `make_app()` in a subprocess (this script with `--serve PORT`), one SSE client
  here; feed-to-client latency the same way, with the server's CPU (share of one core, over
  the live phase) and resident memory at 1 minute and at the end;
- the same over SSE at 20,000 symbols, for a shorter run;
- in the browser: `panel serve app.py` and headless Chromium at the live scan's URL; for
  every row a patch changes, the page's wall clock at the animation frame after the patch
  minus the row's `feed_time` (the table's source carries it). Two cases (BROWSER_RUNS):
  5,000 symbols with closed bars only (the served app with `--setup closed_bars_only.py`),
  5,000 bars a second as above; and 1,000 symbols at the served feed's default 4 ticks a
  bar, 4,000 ticks a second. Each runs BROWSER_REPEATS times, the cases interleaved: one
  run's p99 swings several-fold on a shared machine, so the section gives the medians and
  each run's p99.

The clocks are the same machine's wall clock, in whole ms. The machine's load average is
written beside the figures: other processes share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_engine import talib_floor  # noqa: E402
from browser_helpers import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    TABLE_JS,
    offline_routes,
    panel_server,
    wait_finished,
    wait_for_table,
)
from report import percentile, rss_mb, write_section  # noqa: E402

import technic_panel.live.scan as live_scan  # noqa: E402
from technic_panel.api.rest import make_app  # noqa: E402
from technic_panel.data.synthetic import SyntheticSource  # noqa: E402
from technic_panel.streaming.manager import StreamManager  # noqa: E402
from technic_panel.streaming.streamer import StreamEnded  # noqa: E402

BROWSER_SECONDS = 60.0
"""Seconds of the live scan the browser measurement starts (its first pass included)."""
BROWSER_RUNS = ((5000, 1), (1000, 4))
"""(symbols, ticks a bar) of the browser runs: 5,000 bars a second, the issue's rate, then
the served default feed (three forming updates and the close) at 4,000 ticks a second."""
BROWSER_REPEATS = 3
"""Runs of each browser case (interleaved); the section reports their medians."""


def machine_reference() -> float:
    """Return ms of the raw TA-Lib floor on 1,000 synthetic symbols, median of 5 runs.

    The machine's speed when it is taken: the same work costs more CPU time when the
    host is busy, so CPU shares of runs at different times compare only beside it.
    """
    source = SyntheticSource(1000)
    bars = [source.bars(symbol) for symbol in source.universe()["symbol"]]
    return 1000 * statistics.median(talib_floor(bars) for _ in range(5))


def settings(symbols: int, seconds: float) -> dict:
    return {"symbols": symbols, "live": True, "bar_interval": 1.0, "timeout": seconds}


def use_updates(updates: int) -> None:
    """Make every live scan of this process deliver ``updates`` ticks a bar."""
    live_scan.FEED_UPDATES = updates


def latency(message: dict, now_ms: float) -> float | None:
    feed_time = message["data"].get("feed_time") if message["type"] in ("result", "update") \
        else None
    return None if feed_time is None else now_ms - feed_time


# --- in process -------------------------------------------------------------------------------

def in_process(symbols: int, seconds: float) -> dict:
    """Run a live scan here; return latency percentiles, throughput and memory."""
    manager = StreamManager(max_concurrent=2, inactivity_timeout=3600)
    scan_id = manager.start_stream(settings(symbols, seconds))
    subscription = manager.subscribe(scan_id)
    latencies: list[float] = []
    live_from: list[float] = []
    started = time.monotonic()
    while True:
        try:
            batch = subscription.get_batch(timeout=1.0)
        except StreamEnded:
            break
        now = time.time() * 1000
        for message in batch:
            late = latency(message, now)
            if late is not None:
                if not live_from:
                    live_from.append(time.monotonic())
                latencies.append(late)
    final = manager.get(scan_id).summary
    manager.shutdown()
    live_seconds = time.monotonic() - (live_from[0] if live_from else started)
    return {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "messages": len(latencies), "per_second": len(latencies) / live_seconds,
            "bars": final.get("bars", 0), "rss": rss_mb()}


# --- over SSE, server in a subprocess ---------------------------------------------------------

def serve(port: int, updates: int) -> None:
    """Serve the API on 127.0.0.1:``port`` until killed."""
    use_updates(updates)

    async def main() -> None:
        make_app(StreamManager(max_concurrent=2, inactivity_timeout=3600)).listen(
            port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(main())


class Server:
    """The API in a subprocess: its CPU time and resident memory."""

    def __init__(self, updates: int) -> None:
        self.updates = updates

    def __enter__(self) -> Server:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port), str(self.updates)],
            stderr=subprocess.DEVNULL)
        self.psutil = psutil.Process(self.process.pid)
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
        times = self.psutil.cpu_times()
        return times.user + times.system

    def rss_mb(self) -> float:
        return self.psutil.memory_info().rss / 2**20

    def __exit__(self, *exc_info) -> None:
        self.process.terminate()
        self.process.wait(30)


class Samples:
    """The server's CPU seconds and RSS, sampled once a second from the live phase's start."""

    def __init__(self, server: Server) -> None:
        self.server, self.points = server, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def started(self) -> bool:
        return self._thread.is_alive() or bool(self.points)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.points.append((time.monotonic(), self.server.cpu_seconds(),
                                self.server.rss_mb()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def over_sse(symbols: int, seconds: float, updates: int) -> dict:
    """Run a live scan in a server subprocess, read it over SSE; return the figures."""
    with Server(updates) as server:
        answer = requests.post(f"{server.url}/scan/stream", json=settings(symbols, seconds),
                               timeout=30)
        scan_id = answer.json()["scan_id"]
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.request("GET", f"/events/results?scan_id={scan_id}")
        response = connection.getresponse()
        samples = Samples(server)
        latencies: list[float] = []
        for message, now in events(response):
            late = latency(message, now)
            if late is not None:
                if not samples.started:
                    samples.start()
                latencies.append(late)
        samples.stop()
        connection.close()
    return {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "messages": len(latencies), **summarise(samples.points)}


PATCH_PROBE_JS = f"""() => {{
  const source = {TABLE_JS}.model.source;
  window.__feedToRow = [];
  const seen = [];
  source.patching.connect((indices) => {{
    const times = source.data.feed_time, fed = [];
    for (const i of indices) {{
      const feedTime = times[i];
      if (Number.isFinite(feedTime) && feedTime !== seen[i]) {{
        fed.push(feedTime);
        seen[i] = feedTime;
      }}
    }}
    requestAnimationFrame(() => {{
      const now = Date.now();
      for (const feedTime of fed) window.__feedToRow.push(now - feedTime);
    }});
  }});
}}"""
"""Records, for each row a patch changes, ms from its bar's feed_time to the next frame."""


def in_browser(symbols: int, seconds: float, updates: int) -> dict:
    """Run a live scan from the served dashboard in Chromium; return feed-to-row figures.

    The served feed delivers ``updates`` ticks a bar: 4 (the default), or 1 through the
    ``panel serve --setup`` script ``closed_bars_only.py``. The CPU shares (of one core) of
    the server and of Chromium's processes are taken over the second quarter of the run.
    """
    from playwright.sync_api import sync_playwright

    setup = () if updates == 4 else ("--setup", str(HERE / "closed_bars_only.py"))
    assert updates in (1, 4), "the served feed delivers 4 ticks a bar, or 1 with the setup"
    url = (f"/app?live=true&symbols={symbols}&bar_interval=1&timeout={seconds:g}"
           "&alert_cooldown=60")
    with panel_server(60.0, *setup) as (base, process), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        offline_routes(page)
        page.goto(base + url)
        wait_for_table(page)
        page.evaluate(PATCH_PROBE_JS)
        server = psutil.Process(process.pid)
        chromium = [child for child in psutil.Process().children(recursive=True)
                    if "chrom" in child.name()]
        page.get_by_role("button", name="Start").click()
        time.sleep(seconds / 4)
        before = time.monotonic(), cpu_seconds([server]), cpu_seconds(chromium)
        time.sleep(seconds / 4)
        after = time.monotonic(), cpu_seconds([server]), cpu_seconds(chromium)
        wait_finished(page, timeout=(seconds + 180) * 1000)
        latencies = page.evaluate("window.__feedToRow")
        browser.close()
    span = after[0] - before[0]
    return {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "rows": len(latencies), "symbols": symbols, "updates": updates,
            "server_cpu": 100 * (after[1] - before[1]) / span,
            "chromium_cpu": 100 * (after[2] - before[2]) / span}


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """CPU seconds (user and system) of ``processes`` so far; those gone count nothing."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def events(response: http.client.HTTPResponse):
    """Yield each SSE message with the wall clock (ms) when its bytes arrived.

    Reads what has arrived in one go (``read1``) and splits it into events: a reader of
    5,000 messages a second must not take one system call a line.
    """
    pending = b""
    while chunk := response.read1(1 << 16):
        now = time.time() * 1000
        *complete, pending = (pending + chunk).split(b"\n\n")
        for event in complete:
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    yield json.loads(line[6:]), now


def summarise(points: list[tuple[float, float, float]]) -> dict:
    """CPU share over the live phase, RSS at 1 minute (or the first sample) and at the end."""
    first, last = points[0], points[-1]
    minute = next((point for point in points if point[0] - first[0] >= 60), points[0])
    cpu = 100 * (last[1] - first[1]) / max(last[0] - first[0], 1e-9)
    return {"cpu": cpu, "rss_1": minute[2], "rss_end": last[2],
            "span": last[0] - first[0], "minute_at": minute[0] - first[0]}


# --- the section ------------------------------------------------------------------------------

def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="ten minutes at 5,000 symbols")
    parser.add_argument("--seconds", type=float, default=90.0,
                        help="seconds of the 5,000-symbol SSE run (default 90; --long: 600)")
    parser.add_argument("--updates", type=int, default=1, help="feed ticks a bar (default 1)")
    args = parser.parse_args()
    seconds = 600.0 if args.long else args.seconds
    use_updates(args.updates)
    load = os.getloadavg()[0]
    speed = [machine_reference()]
    here = in_process(5000, 30.0)
    print(f"in process: {here}", flush=True)
    sse = over_sse(5000, seconds, args.updates)
    print(f"SSE 5,000: {sse}", flush=True)
    big = over_sse(20_000, 60.0, args.updates)
    print(f"SSE 20,000: {big}", flush=True)
    runs: dict[tuple[int, int], list[dict]] = {case: [] for case in BROWSER_RUNS}
    for _ in range(BROWSER_REPEATS):
        for symbols, updates in BROWSER_RUNS:
            runs[symbols, updates].append(in_browser(symbols, BROWSER_SECONDS, updates))
            print(f"browser: {runs[symbols, updates][-1]}", flush=True)
    pages = [medians(found) for found in runs.values()]
    speed.append(machine_reference())
    write_section("Live scan", section(here, sse, big, pages, seconds, args.updates, load,
                                       speed))


def medians(runs: list[dict]) -> dict:
    """Return the median of each figure of a browser case's runs, and each run's p99."""
    found = {name: statistics.median(run[name] for run in runs)
             for name in ("p50", "p99", "rows", "server_cpu", "chromium_cpu")}
    return {**runs[0], **found, "runs": len(runs), "p99s": [run["p99"] for run in runs]}


def section(here: dict, sse: dict, big: dict, pages: list[dict], seconds: float,
            updates: int, load: float, speed: list[float]) -> str:
    """Return the Markdown of the "Live scan" section."""
    growth = sse["rss_end"] - sse["rss_1"]
    rows = [
        ("feed-to-message p50 / p99, in process, 5,000 symbols",
         f"{here['p50']:.0f} / {here['p99']:.0f} ms",
         f"p99 <= 50 ms ({verdict(here['p99'], 50)})"),
        ("messages a second, in process",
         f"{here['per_second']:,.0f} ({here['messages']:,} in 30 s)", "5,000"),
        (f"feed-to-SSE-client p50 / p99, 5,000 symbols, {seconds:.0f} s",
         f"{sse['p50']:.0f} / {sse['p99']:.0f} ms",
         f"p99 <= 100 ms ({verdict(sse['p99'], 100)})"),
        ("server CPU, 5,000 symbols", f"{sse['cpu']:.0f}% of one core",
         f"<= 60% ({verdict(sse['cpu'], 60)})"),
        (f"server RSS at {sse['minute_at']:.0f} s / at {sse['span']:.0f} s",
         f"{sse['rss_1']:.0f} / {sse['rss_end']:.0f} MB ({growth:+.1f} MB)",
         f"growth <= 20 MB ({verdict(growth, 20)})"),
        ("feed-to-SSE-client p50 / p99, 20,000 symbols, 60 s",
         f"{big['p50']:.0f} / {big['p99']:.0f} ms", "-"),
        ("server CPU / RSS at the end, 20,000 symbols",
         f"{big['cpu']:.0f}% / {big['rss_end']:.0f} MB", "-"),
        *((f"feed-to-row in the browser p50 / p99, {page['symbols']:,} symbols x "
           f"{page['updates']} tick(s) a bar ({page['symbols'] * page['updates']:,} a second), "
           f"{BROWSER_SECONDS:.0f} s, median of {page['runs']} runs ({page['rows']:,.0f} "
           f"changed rows; CPU server {page['server_cpu']:.0f}%, Chromium "
           f"{page['chromium_cpu']:.0f}% of one core)",
           f"{page['p50']:.0f} / {page['p99']:.0f} ms (p99 of each run: "
           f"{', '.join(f'{p99:.0f}' for p99 in page['p99s'])})",
           f"p99 <= 250 ms ({verdict(page['p99'], 250)})") for page in pages),
    ]
    table = "\n".join(f"| {name} | {result} | {target} |" for name, result, target in rows)
    return f"""
Method: a live scan of the synthetic universe, every symbol one closed bar a second
(`bar_interval=1`, {updates} feed tick(s) a bar), after its first pass. In process: a
`StreamManager` and one subscriber thread, 30 s. Over SSE: `make_app()` in a subprocess and
one SSE client in this one; server CPU as a share of one core over the live phase, RSS
sampled each second. Latency is receipt wall clock minus the bar's `feed_time` (whole ms),
over every `result` and `update`. In the browser: `panel serve app.py` and Chromium, the
page's wall clock at the animation frame after a patch minus the `feed_time` of each row
whose `feed_time` the patch changed. One run of each, {BROWSER_REPEATS} of each browser
case (interleaved); load average {load:.1f} on {os.cpu_count()} cores when it started
(other processes shared them). The machine's speed, as the raw TA-Lib floor of 1,000
synthetic symbols (median of 5), was {speed[0]:.0f} ms before the runs and {speed[1]:.0f} ms
after them: CPU shares of runs at different times compare only beside it.

| measure | result | target |
|---|---|---|
{table}
"""


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
