"""The dashboard in headless Chromium against `panel serve app.py`, as a user drives it.

Rows are counted through the page's BokehJS objects (see ``browser_helpers``), because the
virtualised table holds only the rows in view in its DOM. Every wait happens in the page
(``wait_for_function``, locators, ``wait_for_timeout``) or samples it from inside
(``sampler_js``): the sync API delivers page events only while it runs, and a loaded test
process polling from Python would miss states. Every page fails any request that would
leave the machine and records it (``offline_routes``): each test asserts there was none.

The screenshot test writes to a temporary file; ``make screenshot`` sets
``TECHNIC_SCREENSHOT=docs/screenshot.png`` to regenerate the README's picture.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import urllib.parse
import urllib.request

import pytest
from browser_helpers import (
    RECORD_JS,
    ROOT,
    TABLE_JS,
    click_start,
    count,
    inside,
    is_descending,
    offline_routes,
    overlaps,
    panel_server,
    require_chromium,
    sampler_js,
    settled_rows,
    stat,
    stop_sampler,
    table_state,
    table_view_js,
    wait_finished,
    wait_for_table,
    wait_shown,
    within,
)

pytestmark = pytest.mark.browser

STREAMING = "symbols=2000&latency_ms=6&workers=8"
"""About 2 s of streaming: long enough to watch rows arrive."""
SLOW = "symbols=3000&latency_ms=20&workers=4"
"""About 15 s if left alone."""
SCRIPTED = {"symbols": 1500, "latency_ms": 10, "workers": 4, "stop_atr": 1.5}
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
CONTRAST_JS = """(view) => {
  const parse = (css) => css.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (rgb) => {
    const [r, g, b] = rgb.map((c) => { c /= 255;
      return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const cell = view.shadow_el.querySelector(".slick-cell.selected.l0");
  const style = getComputedStyle(cell);
  const [a, b] = [lum(parse(style.color)), lum(parse(style.backgroundColor))];
  return [Math.max(a, b) + 0.05, Math.min(a, b) + 0.05, style.color, style.backgroundColor];
}"""
"""WCAG contrast of a selected row's Symbol cell, from its computed colours."""
PLAN_BOXES_JS = """() => {
  const box = (x, y, width, height) => ({x, y, width, height});
  const legend = Bokeh.index.query_one((v) => v.model.type == "Legend"
    && v.model.items.some((item) => item.label?.value == "SMA 50"));
  const frame = legend.plot_view.frame.bbox;
  const labels = [...Bokeh.index.query((v) => v.model.type == "Label" && v.model.visible
    && v.plot_view === legend.plot_view)].map((v) => {
      const {sx, sy, width, height, anchor} = v._rect;  // what it paints; no public getter
      return box(sx - anchor.x * width, sy - anchor.y * height, width, height); });
  const {x, y, width, height} = legend.bbox;
  return {legend: box(x, y, width, height), labels,
          frame: box(frame.x, frame.y, frame.width, frame.height)};
}"""
"""The price pane's legend, its plan labels and its frame, in canvas pixels."""
CUT_JS = """(view) => [...view.shadow_el.querySelectorAll(".slick-cell.l0")]
  .filter((cell) => cell.scrollWidth > cell.clientWidth).map((cell) => cell.textContent)"""
"""Symbols painted in the view's first column that do not fit their cell."""


@pytest.fixture(scope="module")
def server():
    require_chromium()
    with panel_server() as (base, _process):
        yield base


@pytest.fixture
def open_page(browser, server):
    """Open the dashboard at ``?query``; console errors in ``page.errors``, requests that
    would leave the machine (failed) in ``page.outside``."""
    contexts = []

    def open_(query: str = "", viewport=(1500, 1000)):
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error"
                else None)
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.outside = offline_routes(page)
        page.goto(f"{server}/app?{query}")
        wait_for_table(page)
        return page

    yield open_
    for context in contexts:
        context.close()


def tab_header(page, title: str):
    """Return the header of the table's tab ``title`` (Overview, Technical, ..., Errors)."""
    return page.locator(".bk-tab").filter(has_text=re.compile(f"^{re.escape(title)}$"))


def view_eval(page, name: str, probe: str):
    """Evaluate the JS function ``probe`` on the BokehJS view of the table ``name``."""
    return page.evaluate(f"() => ({probe})({table_view_js(name)})")


@pytest.mark.parametrize("theme", ["default", "dark"])
def test_the_page_loads_offline_without_console_errors(open_page, theme):
    page = open_page(f"theme={theme}")
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("button", name="Start").is_enabled()
    assert stat(page, "status") == "idle" and table_state(page)["received"] == 0
    assert "press Start" in stat(page, "hint")  # the empty state says what to do
    assert stat(page, "eta") == ""
    fonts = page.evaluate("[...document.fonts].map((font) => font.family)")
    assert not [family for family in fonts if "Open Sans" in family]
    assert page.outside == [] and page.errors == []


def test_rows_stream_in_after_start_until_they_match_processed(open_page):
    page = open_page(STREAMING)
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
        count(page, "rows") == count(page, "shown") == count(page, "total") == 2000
    assert page.outside == [] and page.errors == []


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
    assert stat(page, "eta") == ""


def test_the_table_opens_sorted_by_rating_and_stays_sorted_while_rows_stream_in(open_page):
    page = open_page(STREAMING)
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
    assert state["shown"] == 2000 and is_descending(state["ratings"])
    painted = [float(text) for text in state["painted"]]
    assert len(painted) >= 10 and is_descending(painted)
    assert painted[0] == pytest.approx(max(state["ratings"]), abs=0.05)
    header = page.locator(".slick-header-column", has_text="Price").first
    header.click()  # the first click on a number sorts it descending
    prices = page.evaluate(f"""() => {{ const view = {TABLE_JS};
        return Array.from(view.data.index).map((i) => view.model.source.data.price[i]); }}""")
    assert is_descending(prices)
    assert page.outside == [] and page.errors == []


def test_each_view_shows_its_columns_without_cutting_a_symbol(open_page):
    page = open_page("symbols=400", viewport=(1000, 800))
    click_start(page)
    wait_finished(page)
    settled_rows(page)
    expected = {"Technical": ["Symbol", "RSI", "ADX", "Rel vol", "ROC 5"],
                "Trade plan": ["Symbol", "Side", "Entry", "Stop", "Target", "R:R"],
                "Overview": ["Symbol", "Sector", "Signal", "Rating", "Mkt cap"]}
    name = "results-table"
    for tab, titles in expected.items():
        page.get_by_role("button", name=tab, exact=True).click()
        page.wait_for_timeout(500)
        headers = view_eval(page, name, """(view) => [...view.shadow_el.querySelectorAll(
            ".slick-header-column")].map((el) => [el.textContent.trim(),
            el.getBoundingClientRect().width])""")
        assert [title for title in titles if title not in dict(headers)] == [], tab
        assert view_eval(page, name, CUT_JS) == [], f"{tab}: symbols cut"
        assert view_eval(page, name, SORTED_JS) == [400, True], f"{tab} is not sorted"
    plan = view_eval(page, name, """(view) => {
        const d = view.model.source.data; const rows = [];
        for (let i = 0; i < d.symbol.length; i++)
          if (d.signal[i].endsWith("SELL") && !isNaN(d.entry[i]))
            rows.push([d.side[i], d.stop[i] > d.entry[i], d.target[i] < d.entry[i]]);
        return rows; }""")
    assert plan and {tuple(row) for row in plan} == {("short", True, True)}
    assert page.outside == [] and page.errors == []


@pytest.mark.parametrize("theme", ["default", "dark"])
def test_a_selected_row_is_readable(open_page, theme):
    page = open_page(f"symbols=200&theme={theme}")
    click_start(page)
    wait_finished(page)
    settled_rows(page)
    page.locator(".slick-row .slick-cell.l0").first.click()
    page.locator("[data-testid=chart-title]").wait_for(timeout=10_000)
    high, low, color, background = view_eval(page, "results-table", CONTRAST_JS)
    assert high / low >= 4.5, f"{color} on {background}"


def test_at_1000_pixels_nothing_is_off_screen_and_toasts_leave_the_table_free(open_page):
    page = open_page("symbols=600&error_rate=0.05", viewport=(1000, 800))
    click_start(page)
    page.locator(".notice").first.wait_for(timeout=15_000)
    wait_finished(page)
    filters = page.locator(".table-filters")
    download = page.get_by_role("button", name="Download CSV")
    for element in (filters, download):
        assert inside(element.bounding_box(), 1000, 800), element
    table = page.locator(".slick-header").first.bounding_box()
    assert table["x"] + table["width"] <= 1000
    assert page.evaluate("document.documentElement.scrollWidth") <= 1000
    grid = page.evaluate(f"""() => {{ const r = {TABLE_JS}.el.getBoundingClientRect();
        return {{x: r.x, y: r.y, width: r.width, height: r.height}}; }}""")
    toasts = [toast.bounding_box() for toast in page.locator(".notice").all()]
    assert toasts and not [box for box in toasts if box and overlaps(box, grid)]


def test_failed_symbols_are_counted_listed_and_toasted_once(open_page):
    page = open_page("symbols=300&error_rate=0.1&latency_ms=5&workers=4")
    click_start(page)
    wait_finished(page)
    errors = count(page, "errors")
    assert errors > 0 and count(page, "rows") + errors == count(page, "processed") == 300
    toasts = page.locator(".notice", has_text="failed so far")
    assert toasts.count() == 1
    tab_header(page, "Errors").click()
    listed = page.evaluate(f"""() => {{ const view = {table_view_js('errors-table')};
        return [view.data.getLength(), view.model.source.data.message[0]]; }}""")
    assert listed[0] == errors and "error_rate=0.1" in listed[1]
    assert page.outside == [] and page.errors == []


def test_a_filter_set_before_start_holds_and_clearing_it_shows_every_row(open_page):
    page = open_page("symbols=1500&latency_ms=2&workers=8")
    signal = page.locator(".bk-input-group", has=page.get_by_text("Signal", exact=True))
    signal.locator("input").first.click()
    signal.locator(".choices__item--choice", has_text="HOLD").first.click()
    page.keyboard.press("Escape")
    click_start(page)
    wait_finished(page)
    settled_rows(page)
    holds = page.evaluate(f"""() => {TABLE_JS}.model.source.data.signal
        .filter((s) => s === 'HOLD').length""")
    state = table_state(page)
    assert 0 < state["shown"] == holds == count(page, "count-HOLD") == count(page, "shown") \
        < state["received"] == count(page, "rows")
    signal.locator(".choices__button").first.click()
    wait_shown(page, 1500, timeout=5_000)
    assert table_state(page)["shown"] == count(page, "processed") == count(page, "shown") == 1500
    assert page.outside == [] and page.errors == []


def test_settings_that_do_not_apply_are_disabled(open_page):
    page = open_page()
    symbols = page.locator(".bk-input-group", has=page.get_by_text("Symbols", exact=True))
    assert symbols.locator("input").first.is_enabled()
    source = page.locator(".bk-input-group", has=page.get_by_text("Source", exact=True))
    source.locator("select").select_option("sample")
    page.wait_for_function("(q) => window.location.search.includes(q)", arg="source=sample")
    assert symbols.locator("input").first.is_disabled()


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
def test_a_scan_started_through_the_api_can_be_watched_with_its_settings(open_page, server):
    request = urllib.request.Request(f"{server}/scan/stream", method="POST",
                                     data=json.dumps(SCRIPTED).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        scan_id = json.load(response)["scan_id"]
    page = open_page()
    watch = page.locator(".bk-input-group", has=page.get_by_text("Watch scan", exact=True))
    option = watch.locator("select option", has_text=scan_id[:13])
    option.wait_for(state="attached", timeout=10_000)
    assert "1,500 synthetic" in option.inner_text() and "thread×4" in option.inner_text()
    # the label carries the progress (it changes as the scan runs), so pick the option by place
    watch.locator("select").select_option(index=option.evaluate("option => option.index"))
    page.locator("[data-testid=scan-id]", has_text=scan_id).wait_for(state="attached",
                                                                     timeout=15_000)
    symbols = page.locator(".bk-input-group", has=page.get_by_text("Symbols", exact=True))
    assert symbols.locator("input").first.input_value() == "1500"  # the sidebar follows
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


def test_a_bad_url_setting_is_shown_and_the_url_corrected(open_page):
    page = open_page("symbols=700&error_rate=7&max_signals=-3")
    toast = page.locator(".notice", has_text="Ignored in the URL")
    toast.first.wait_for(timeout=10_000)
    assert "error_rate" in toast.first.inner_text() and "max_signals" in toast.first.inner_text()
    page.wait_for_function("() => !window.location.search.includes('error_rate=7')",
                           timeout=5_000)
    query = urllib.parse.parse_qs(page.evaluate("window.location.search").lstrip("?"))
    assert query["error_rate"] == ["0.0"] and query["symbols"] == ["700"]
    assert "max_signals" not in query


def test_a_clicked_row_opens_its_chart_on_six_months_with_its_plan(open_page):
    page = open_page("symbols=300")
    click_start(page)
    wait_finished(page)
    page.locator(".slick-row .slick-cell.l0").first.click()
    page.locator("[data-testid=chart-title]").wait_for(timeout=10_000)
    page.wait_for_timeout(500)
    chart = page.evaluate("""() => {
      const spans = [...Bokeh.index.query((v) => v.model.type == "Span" && v.model.visible
        && v.model.dimension == "width" && v.model.location != null)];
      const figures = [...Bokeh.index.query((v) => v.model.type == "Figure")];
      const range = figures.map((v) => v.model.x_range).find((r) => r.type == "Range1d"
        && r.start > 1e12);
      return {spans: spans.length, days: range ? (range.end - range.start) / 864e5 : null};
    }""")
    assert chart["spans"] >= 3 and 175 <= chart["days"] <= 195
    boxes = page.evaluate(PLAN_BOXES_JS)
    assert len(boxes["labels"]) == 3, boxes
    assert [label for label in boxes["labels"] if overlaps(label, boxes["legend"])] == [], boxes
    assert all(within(label, boxes["frame"]) for label in boxes["labels"]), boxes
    assert page.outside == [] and page.errors == []


def test_a_finished_scan_with_its_chart_makes_the_screenshot(open_page, tmp_path):
    page = open_page("symbols=5000", viewport=(1600, 1500))
    click_start(page)
    wait_finished(page)
    page.locator(".slick-row .slick-cell.l0").first.click()
    page.locator("[data-testid=chart-title]").wait_for(timeout=10_000)
    page.wait_for_timeout(800)  # let the chart paint
    target = os.environ.get(SCREENSHOT_ENV)
    path = ROOT / target if target else tmp_path / "screenshot.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 50_000 and page.errors == [] and page.outside == []
