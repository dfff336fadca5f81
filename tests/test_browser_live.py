"""Dashboard live mode in headless Chromium against `panel serve app.py`, as a user sees it.

A live scan of a dozen symbols, a bar every 0.5 s: its rows change in place (the table
never holds more rows than symbols, a rating changes under the same row count), changed
cells flash, the sort and the filter hold, an alert appears in the alerts panel, and Stop
ends it. Every wait runs in the page (see tests/test_browser.py); requests that would leave
the machine fail and are recorded.
"""

from __future__ import annotations

import pytest
from browser_helpers import (
    RECORD_JS,
    TABLE_JS,
    click_start,
    is_descending,
    offline_routes,
    panel_server,
    require_chromium,
    stat,
    stop_sampler,
    table_state,
    wait_for_table,
    wait_shown,
)

from technic_panel.ui.live_cells import SORTED_FOR

pytestmark = pytest.mark.browser

SYMBOLS = 12
LIVE = f"live=true&symbols={SYMBOLS}&bar_interval=0.5&alert_cooldown=0&timeout=60"
"""A small live scan, alerts without cooldown, ended by Stop (the timeout as a backstop)."""

RATINGS_JS = f"""() => {{
  const data = {TABLE_JS}.model.source.data;
  return Object.fromEntries(data.symbol.map((symbol, i) => [symbol, data.tech_rating[i]]));
}}"""
"""Each symbol's tech_rating as the browser holds it."""

CHANGED_JS = f"""(before) => {{
  const data = {TABLE_JS}.model.source.data;
  return data.symbol.length === {SYMBOLS}
    && data.symbol.some((symbol, i) => before[symbol] !== data.tech_rating[i]);
}}"""
"""Whether a rating changed while the table kept one row per symbol."""

FILTERED_JS = f"""(needle) => {{
  const view = {TABLE_JS}, symbols = view.model.source.data.symbol;
  return view.data.getLength() >= 1
    && [...view.data.index].every((i) => symbols[i].includes(needle));
}}"""
"""Whether the grid shows only symbols containing the search text (and at least one)."""

PAINTED_JS = f"""() => {{
  const view = {TABLE_JS}, grid = view.grid, data = view.model.source.data;
  const rating = grid.getColumns().findIndex((column) => column.field === "tech_rating");
  const {{top, bottom}} = grid.getViewport(), rows = [];
  for (let r = top; r <= bottom; r++) {{
    const i = view.data.index[r], symbol = grid.getCellNode(r, 0);
    if (i != null && symbol != null)
      rows.push([symbol.textContent, data.symbol[i],
                 parseFloat(grid.getCellNode(r, rating).textContent), data.tech_rating[i]]);
  }}
  return rows;
}}"""
"""Each row in view: the symbol and rating it paints, and the symbol and rating it holds."""


def assert_painted_as_held(page, rows: int) -> None:
    """Across patches, every row in view paints the symbol and rating it holds.

    The grid re-renders only the rows that changed (ui/live_cells.py): a row it skipped
    wrongly would paint an old rating, or another row's symbol.
    """
    for _ in range(10):
        painted = page.evaluate(PAINTED_JS)
        assert len(painted) == rows
        for symbol, held, rating, value in painted:
            assert symbol == held and rating == pytest.approx(value, abs=0.051), painted
        page.wait_for_timeout(150)


FLASHED_JS = f"() => {TABLE_JS}.shadow_el.querySelectorAll('.slick-cell.flash').length > 0"


@pytest.fixture(scope="module")
def server():
    require_chromium()
    with panel_server() as (base, _process):
        yield base


@pytest.fixture
def page(browser, server):
    """The dashboard at the live scan's URL; console errors and outside requests recorded."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.errors = []
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error"
            else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.outside = offline_routes(page)
    page.goto(f"{server}/app?{LIVE}")
    wait_for_table(page)
    yield page
    context.close()


def test_live_rows_change_in_place_flash_and_alert(page):
    click_start(page)
    wait_shown(page, SYMBOLS, timeout=30_000)
    page.evaluate(RECORD_JS)
    before = page.evaluate(RATINGS_JS)
    page.wait_for_function(CHANGED_JS, arg=before, timeout=20_000)
    page.wait_for_function(FLASHED_JS, timeout=20_000)
    page.locator("[data-testid=alert]").first.wait_for(timeout=30_000)
    page.locator("[data-testid=feed-clock]", has_text="T").or_(
        page.locator("[data-testid=feed-clock]", has_text="-")).first.wait_for(timeout=10_000)
    assert_painted_as_held(page, SYMBOLS)
    state = table_state(page)
    assert state["shown"] == state["received"] == SYMBOLS
    assert is_descending(state["ratings"]), "the sort by rating did not hold"
    assert page.evaluate("() => Bokeh.version").startswith(SORTED_FOR), \
        "live_cells re-sorts with BokehJS DataTable internals of SORTED_FOR only: check them " \
        "against this version, then move SORTED_FOR"
    lengths = stop_sampler(page)
    assert max(lengths) == SYMBOLS, f"rows were streamed again: {lengths}"
    header = page.evaluate(f"() => {TABLE_JS}.model.columns.map((c) => c.field).slice(0, 2)")
    assert header == ["symbol", "new"]
    assert int(stat(page, "alerts-total").replace(",", "")) >= 1
    assert float(stat(page, "bars-per-second").replace(",", "")) > 0
    needle = page.evaluate(f"() => {TABLE_JS}.model.source.data.symbol[0]")
    page.get_by_placeholder("search").fill(needle)
    page.wait_for_function(FILTERED_JS, arg=needle, timeout=10_000)
    page.wait_for_function(CHANGED_JS, arg=page.evaluate(RATINGS_JS), timeout=20_000)
    assert page.evaluate(FILTERED_JS, needle), "the filter did not hold while rows changed"
    assert_painted_as_held(page, page.evaluate(f"() => {TABLE_JS}.data.getLength()"))
    page.get_by_role("button", name="Stop").click()
    page.locator("[data-testid=status]", has_text="finished").wait_for(timeout=20_000)
    assert "stopped" in stat(page, "status")
    assert page.errors == [] and page.outside == []
