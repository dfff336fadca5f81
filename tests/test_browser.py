"""The dashboard in headless Chromium against `panel serve app.py`, as a user drives it.

Rows are counted through the page's BokehJS objects (see ``browser_helpers``), because the
virtualised table holds only the rows in view in its DOM. Every wait happens in the page
(``wait_for_function``, locators, ``wait_for_timeout``) or samples it from inside
(``sampler_js``): the sync API delivers page events only while it runs, and a loaded test
process polling from Python would miss states.

The screenshot test writes to a temporary file; ``make screenshot`` sets
``TECHNIC_SCREENSHOT=docs/screenshot.png`` to regenerate the README's picture.
"""

from __future__ import annotations

import importlib.util
import json
import os
import urllib.request

import pytest
from browser_helpers import (
    RECORD_JS,
    ROOT,
    click_start,
    count,
    is_descending,
    offline_routes,
    panel_server,
    require_chromium,
    sampler_js,
    settled_rows,
    stat,
    stop_sampler,
    table_state,
    wait_finished,
    wait_for_table,
    wait_shown,
)

pytestmark = pytest.mark.browser

STREAMING = "symbols=2000&latency_ms=6&workers=8"
"""About 2 s of streaming: long enough to watch rows arrive."""
SLOW = "symbols=3000&latency_ms=20&workers=4"
"""About 15 s if left alone."""
SCRIPTED = {"symbols": 1500, "latency_ms": 10, "workers": 4}
"""A scan a script starts through the HTTP API: about 4 s."""
SCREENSHOT_ENV = "TECHNIC_SCREENSHOT"
"""Where the screenshot test writes (relative to the project root); unset: a temporary file."""
SORTED_JS = """(view) => {
  const order = view.data.index, ratings = view.model.source.data.tech_rating;
  if (order.length === 0) return null;
  for (let k = 1; k < order.length; k++) {
    if (ratings[order[k - 1]] < ratings[order[k]]) return [order.length, false];
  }
  return [order.length, true];
}"""
"""[rows shown, whether they are in descending tech_rating order], or null while empty."""


@pytest.fixture(scope="module")
def server():
    require_chromium()
    with panel_server() as (base, _process):
        yield base


@pytest.fixture
def open_page(browser, server):
    """Open the dashboard at ``?query``; collect console errors in ``page.errors``."""
    contexts = []

    def open_(query: str = "", viewport=(1500, 1000)):
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error"
                else None)
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        offline_routes(page)
        page.goto(f"{server}/app?{query}")
        wait_for_table(page)
        return page

    yield open_
    for context in contexts:
        context.close()


def test_the_page_loads_without_console_errors(open_page):
    page = open_page()
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("button", name="Start").is_enabled()
    assert stat(page, "status") == "idle" and table_state(page)["received"] == 0
    assert page.errors == []


def test_rows_stream_in_after_start_until_they_match_processed(open_page):
    page = open_page(STREAMING)
    wait_for_table(page)
    page.evaluate(RECORD_JS)  # samples in the page: a loaded test process cannot miss counts
    clicked = click_start(page)
    first_row = (wait_shown(page, 1) - clicked) / 1000
    wait_finished(page)
    settled_rows(page)
    seen = stop_sampler(page)
    final = table_state(page)
    assert first_row <= 2.0
    assert len(seen) >= 4, f"rows should keep arriving, saw counts {seen}"
    assert final["shown"] == final["received"] == count(page, "processed") == \
        count(page, "rows") == count(page, "total") == 2000
    assert page.errors == []


def test_stop_freezes_the_table_at_the_processed_count(open_page):
    page = open_page(SLOW)
    click_start(page)
    wait_shown(page, 50)
    page.get_by_role("button", name="Stop").click()
    assert "stopped" in wait_finished(page, timeout=15_000)
    rows = settled_rows(page)
    page.wait_for_timeout(1000)  # a frozen table stays frozen
    assert table_state(page)["received"] == rows == count(page, "processed") < 3000
    assert page.get_by_role("button", name="Start").is_enabled()


def test_a_sort_by_rating_holds_while_rows_stream_in(open_page):
    page = open_page(STREAMING)
    header = page.locator(".slick-header-column", has_text="Rating")
    header.click()
    header.click()  # second click: descending
    page.evaluate(sampler_js(SORTED_JS))  # every 20 ms in the page, whatever the load here
    click_start(page)
    wait_finished(page)
    settled_rows(page)
    samples = [sample for sample in stop_sampler(page) if sample is not None]
    unsorted = [rows for rows, ordered in samples if not ordered]
    streaming = {rows for rows, _ in samples if rows < 2000}
    state = table_state(page)
    assert unsorted == [], f"unsorted mid-stream at {unsorted} rows"
    assert len(streaming) >= 3, f"too few states sampled mid-stream: {sorted(streaming)}"
    assert state["shown"] == 2000
    assert is_descending(state["ratings"])
    painted = [float(text) for text in state["painted"]]
    assert len(painted) >= 10 and is_descending(painted)
    assert painted[0] == pytest.approx(max(state["ratings"]), abs=0.05)


def test_a_filter_set_before_start_holds_and_clearing_it_shows_every_row(open_page):
    page = open_page("symbols=1500&latency_ms=2&workers=8")
    signal = page.locator(".bk-input-group", has=page.get_by_text("Signal", exact=True))
    signal.locator("input").first.click()
    page.locator(".choices__item--choice", has_text="STRONG_BUY").first.click()
    page.keyboard.press("Escape")
    click_start(page)
    wait_finished(page)
    settled_rows(page)
    strong = page.evaluate("""() => Bokeh.index.query_one((v) => v.model.name ===
        'results-table').model.source.data.signal.filter((s) => s === 'STRONG_BUY').length""")
    state = table_state(page)
    assert 0 < state["shown"] == strong == count(page, "count-STRONG_BUY") < state["received"]
    signal.locator(".choices__button").first.click()
    wait_shown(page, 1500, timeout=5_000)
    assert table_state(page)["shown"] == count(page, "processed") == 1500
    assert page.errors == []


def test_two_tabs_run_independent_scans(open_page):
    first, second = open_page("symbols=300&latency_ms=5&workers=4"), open_page("symbols=700")
    click_start(first)
    click_start(second)
    wait_finished(first)
    wait_finished(second)
    assert stat(first, "scan-id") != stat(second, "scan-id")
    assert (settled_rows(first), table_state(first)["shown"]) == (300, 300)
    assert (settled_rows(second), table_state(second)["shown"]) == (700, 700)


@pytest.mark.skipif(importlib.util.find_spec("technic_panel.api.rest") is None,
                    reason="technic_panel.api.rest (the HTTP API plugin) is not there yet")
def test_a_scan_started_through_the_api_can_be_watched_live(open_page, server):
    request = urllib.request.Request(f"{server}/scan/stream", method="POST",
                                     data=json.dumps(SCRIPTED).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        scan_id = json.load(response)["scan_id"]
    page = open_page()
    watch = page.locator(".bk-input-group", has=page.get_by_text("Watch scan", exact=True))
    watch.locator("select option", has_text=scan_id).wait_for(state="attached", timeout=10_000)
    watch.locator("select").select_option(scan_id)
    page.locator("[data-testid=scan-id]", has_text=scan_id).wait_for(state="attached",
                                                                     timeout=5_000)
    wait_finished(page)
    assert settled_rows(page) == table_state(page)["shown"] == SCRIPTED["symbols"]


def test_the_url_keeps_step_with_the_controls(open_page):
    page = open_page("symbols=2000&latency_ms=20&max_signals=10")
    symbols = page.locator(".bk-input-group", has=page.get_by_text("Symbols", exact=True))
    assert symbols.locator("input").first.input_value() == "2000"
    symbols.locator("input").first.fill("1234")
    symbols.locator("input").first.press("Enter")
    page.wait_for_function("(query) => window.location.search.includes(query)",
                           arg="symbols=1234", timeout=5_000)
    assert "max_signals=10" in page.evaluate("window.location.search")


def test_a_finished_scan_with_its_chart_makes_the_screenshot(open_page, tmp_path):
    page = open_page("symbols=5000", viewport=(1600, 1500))
    header = page.locator(".slick-header-column", has_text="Rating")
    header.click()
    header.click()
    click_start(page)
    wait_finished(page)
    page.locator(".slick-row .slick-cell.l0").first.click()
    page.get_by_text("daily: SMA 50/200").wait_for(timeout=10_000)
    page.wait_for_timeout(500)  # let the chart paint
    target = os.environ.get(SCREENSHOT_ENV)
    path = ROOT / target if target else tmp_path / "screenshot.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 50_000 and page.errors == []
