"""Dashboard benchmark: click to first row, time to all 5,000 rows, memory over 20 scans.

Serves app.py with `panel serve` (as `make serve` does) and drives it with headless
Chromium. Times are taken in the page's own clock: from the Start button's pointerdown to
the animation frame after the table's grid first holds a row of the new scan / all rows.
Writes the "Dashboard" section of BENCHMARKS.md. Run with `make bench`.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from browser_helpers import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    TABLE_JS,
    offline_routes,
    panel_server,
    wait_finished,
    wait_for_table,
)
from report import write_section  # noqa: E402

SYMBOLS = 5000
RUNS = 5
SCANS = 20
DEFAULT_TIMEOUT = 300
"""Seconds the default manager keeps a finished, unwatched scan (TECHNIC_INACTIVITY_TIMEOUT)."""
SHORT_TIMEOUT = 2

PROBE_JS = f"""() => {{
  const view = {TABLE_JS};
  const source = view.model.source;
  window.__probe = {{clicked: null, reset: false, first: null, all: null}};
  document.addEventListener("pointerdown", () => {{
    window.__probe = {{clicked: performance.now(), reset: false, first: null, all: null}};
  }}, {{capture: true}});
  source.properties.data.change.connect(() => {{ window.__probe.reset = true; }});
  source.streaming.connect(() => {{
    const probe = window.__probe, shown = view.data.getLength();
    if (!probe.reset) return;
    if (probe.first == null && shown > 0)
      requestAnimationFrame(() => {{ probe.first = performance.now() - probe.clicked; }});
    if (probe.all == null && shown >= {SYMBOLS})
      requestAnimationFrame(() => {{ probe.all = performance.now() - probe.clicked; }});
  }});
}}"""
"""Timestamps the first streamed row and the last of the scan, after the data reset."""


def one_scan(page) -> tuple[float, float]:
    """Click Start, wait for the end; return (ms to first row, ms to all rows) in the page."""
    page.get_by_role("button", name="Start").click()
    page.wait_for_function("() => window.__probe.all != null", timeout=60_000)
    wait_finished(page)
    probe = page.evaluate("window.__probe")
    return probe["first"], probe["all"]


def sort_by_rating(page) -> None:
    header = page.locator(".slick-header-column", has_text="Rating")
    header.click()
    header.click()


def timings(browser, base: str) -> dict[str, list[float]]:
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    offline_routes(page)
    page.goto(f"{base}/app?symbols={SYMBOLS}")
    wait_for_table(page)
    page.evaluate(PROBE_JS)
    cold = one_scan(page)
    runs = [one_scan(page) for _ in range(RUNS)]
    sort_by_rating(page)
    sorted_runs = [one_scan(page) for _ in range(RUNS)]
    page.close()
    return {"cold": list(cold), "first": [r[0] for r in runs], "all": [r[1] for r in runs],
            "all_sorted": [r[1] for r in sorted_runs]}


def memory(browser, base: str, server: psutil.Process) -> list[float]:
    """Resident MB of the server after each of SCANS consecutive scans in one session."""
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    offline_routes(page)
    page.goto(f"{base}/app?symbols={SYMBOLS}")
    wait_for_table(page)
    page.evaluate(PROBE_JS)
    rss = []
    for _ in range(SCANS):
        one_scan(page)
        time.sleep(0.2)
        rss.append(server.memory_info().rss / 2**20)
    page.close()
    return rss


def memory_row(label: str, rss: list[float]) -> str:
    return (f"| {label}: after scan 1 / 5 / {SCANS} (peak) | {rss[0]:.0f} / {rss[4]:.0f} / "
            f"{rss[-1]:.0f} MB ({max(rss):.0f} MB); growth {rss[-1] - rss[0]:+.1f} MB from scan "
            f"1, {rss[-1] - rss[4]:+.1f} MB from scan 5 | growth < 20 MB |")


def body(times: dict[str, list[float]], rss: dict[str, list[float]]) -> str:
    first, full = statistics.median(times["first"]), statistics.median(times["all"])
    full_sorted = statistics.median(times["all_sorted"])
    return "\n".join([
        f"`panel serve app.py` on loopback, headless Chromium ({CHROMIUM}), default settings, "
        f"{SYMBOLS:,} synthetic symbols, thread executor, `update_period` 100 ms. Times in the "
        "page's clock from the Start button's pointerdown to the animation frame after the "
        f"table's grid holds the first / the last row of the new scan. Medians of {RUNS} runs "
        "in one tab after one cold run (first scan of the server: universe generation). "
        f"Memory: resident memory of the server process after each of {SCANS} consecutive "
        f"{SYMBOLS:,}-symbol scans started from one tab.",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| click to first row in the table | {first:.0f} ms "
        f"(runs: {', '.join(f'{t:.0f}' for t in times['first'])}) | <= 300 ms |",
        f"| click to all {SYMBOLS:,} rows in the table | {full / 1000:.2f} s | <= 3 s |",
        f"| the same, table sorted by tech_rating while rows stream in | "
        f"{full_sorted / 1000:.2f} s | <= 3 s |",
        f"| cold run (first scan after the server started): first row / all rows | "
        f"{times['cold'][0]:.0f} ms / {times['cold'][1] / 1000:.2f} s | |",
        memory_row("memory, default StreamManager (finished scans kept "
                   f"{DEFAULT_TIMEOUT} s)", rss["default"]),
        memory_row(f"memory, `TECHNIC_INACTIVITY_TIMEOUT={SHORT_TIMEOUT}` (finished scans "
                   "dropped soon: the dashboard alone)", rss["short"]),
        "",
        "The controller releases the scan it showed when it starts the next one "
        "(`StreamManager.release`), so the manager drops each finished scan's message log "
        "at once instead of after the inactivity timeout; memory levels off after a few "
        "scans (the heap holds two scans at once, the one shown and the one being started).",
    ])


def main() -> None:
    from playwright.sync_api import sync_playwright

    rss = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            with panel_server() as (base, process):
                times = timings(browser, base)
            with panel_server() as (base, process):
                rss["default"] = memory(browser, base, psutil.Process(process.pid))
            with panel_server(TECHNIC_INACTIVITY_TIMEOUT=str(SHORT_TIMEOUT)) as (base, process):
                rss["short"] = memory(browser, base, psutil.Process(process.pid))
        finally:
            browser.close()
    write_section("Dashboard", body(times, rss))


if __name__ == "__main__":
    main()
