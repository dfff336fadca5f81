"""The dashboard's Bokeh WebSocket: time from the server's ``stream`` to the page's model.

Writes the "Bokeh WebSocket" section of BENCHMARKS.md. Run with `make bench`.

Two `panel serve` processes of the probe app (benchmarks/bokeh_ws_app.py: one row
every 100 ms, the dashboard's update period, stamped with the server's wall clock),
one as Bokeh serves it (Nagle's algorithm on: Bokeh's WebSocket handler does not set
TCP_NODELAY), one with TCP_NODELAY set on its listening sockets, which Linux copies to
every accepted connection. A headless Chromium page records, for each row, its wall
clock when BokehJS applies the stream minus the row's stamp (same machine, same clock).
The page's first session sets the option in the second server, so its first page is
a warm-up whose figures are dropped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import percentile, write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROUNDS, SECONDS = 3, 15
RECORD_JS = """() => {
  window.__delays = [];
  const source = Bokeh.documents[0].get_model_by_name("probe");
  source.streaming.connect(() => {
    const now = performance.timeOrigin + performance.now();
    const stamps = source.data.stamp;
    window.__delays.push(now - stamps[stamps.length - 1]);
  });
}"""


def serve(port: int, nodelay: bool) -> subprocess.Popen:
    command = [sys.executable, "-m", "panel", "serve", str(HERE / "bokeh_ws_app.py"),
               "--port", str(port), "--address", "127.0.0.1",
               f"--allow-websocket-origin=127.0.0.1:{port}"]
    env = {**os.environ, "BENCH_NODELAY": "1" if nodelay else "0"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/bokeh_ws_app", timeout=2).ok:
                return process
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("panel serve did not start")
        time.sleep(0.2)


def record(browser, port: int, seconds: float = SECONDS) -> list[float]:
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{port}/bokeh_ws_app")
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 && "
                           "Bokeh.documents[0].get_model_by_name('probe') != null")
    page.evaluate(RECORD_JS)
    page.wait_for_timeout(seconds * 1000)
    delays = page.evaluate("window.__delays")
    page.close()
    return delays[5:]  # the first updates share the page's start-up


def main() -> None:
    from playwright.sync_api import sync_playwright

    load = os.getloadavg()[0]
    delays: dict[bool, list[float]] = {True: [], False: []}
    servers = {True: (5811, serve(5811, True)), False: (5812, serve(5812, False))}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for port, _process in servers.values():
                record(browser, port, seconds=1)  # warm-up: the first session sets the option
            for _ in range(ROUNDS):
                for nodelay, (port, _process) in servers.items():
                    delays[nodelay] += record(browser, port)
            browser.close()
    finally:
        for _port, process in servers.values():
            process.terminate()
            process.wait(30)
    rows = ["| server | updates | p50 / p99 / max | target |", "|---|---|---|---|"]
    for nodelay, label in ((False, "Bokeh's default (Nagle on)"),
                           (True, "TCP_NODELAY on every accepted socket")):
        samples = delays[nodelay]
        rows.append(f"| {label} | {len(samples)} | {percentile(samples, 50):.1f} / "
                    f"{percentile(samples, 99):.1f} / {max(samples):.1f} ms | "
                    f"{'' if nodelay else 'p99 <= 20 ms'} |")
    write_section("Bokeh WebSocket", "\n".join(rows) + f"""

Method: {ROUNDS} interleaved rounds of {SECONDS} s per server, one page each, one row
streamed every 100 ms; the delay is the page's wall clock when BokehJS emits the
source's `streaming` signal minus the row's server stamp (one machine, one clock).
The dashboard is served as in the first row. Load average (1 min) at the start / end:
{load:.1f} / {os.getloadavg()[0]:.1f} (a shared machine).
""")


if __name__ == "__main__":
    main()
