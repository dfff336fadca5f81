"""The dashboard in a real JupyterLab page, offline: a cell renders it, it streams, it fits.

The issue asks that displaying ``Dashboard(ScanController())`` in JupyterLab renders and streams
live, with no internet, and that the README's notebook snippets run as written there. nbclient
runs a notebook without a browser, so it cannot see that. These tests start a JupyterLab
server, open a notebook in headless Chromium, run its cells, click Start in the cell's output
and watch the results table fill up. In a notebook Panel sends every update from the kernel
over a Jupyter comm, which pyviz_comms' JupyterLab extension hands to BokehJS; rows arriving in
the table prove that whole path works in JupyterLab. The README test runs in a 1,280-pixel
window, a ~930-pixel cell: nothing of the dashboard (a clicked row's chart included) may stick
out past the cell or scroll it sideways, and every setting stays in reach in the sidebar, which
wraps above the table there. JupyterLab keeps its defaults but the news toast: in particular
comm messages travel over a kernel subshell ("commsOverSubshells": "perCommTarget", with
ipykernel 7), as for a user. It caught three bugs, all fixed: BokehJS could not lay out the
table beside a collapsed Card; rows were lost or doubled while the browser's messages ran on a
subshell thread (see ``technic_panel.ui.notebook.NotebookLayout``); and at 1,280 pixels the
layout spilled about 100 pixels past the cell (Panel's Row summed its children's widths as its
least width, so it never wrapped).

Offline: every request that would leave the machine is failed (``offline_routes``), not
answered, and recorded; the tests assert none was attempted. Panel's default notebook output
(``inline=False``) loads BokehJS and Panel's JavaScript from cdn.bokeh.org and cdn.holoviz.org,
so a cell renders offline only with ``pn.extension(inline=True)``; and not with
``notifications=True`` besides, whose inlined Notyf throws "Notyf is not defined" (the
dashboard's notices need no Panel notifications in a notebook: ``technic_panel.ui.notices``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    RECORD_JS,
    TABLE_JS,
    UNIQUE_SYMBOLS_JS,
    count,
    offline_routes,
    require_chromium,
    settled_rows,
    stat,
    table_state,
    wait_answers,
    wait_finished,
    wait_for_table,
    within,
)
from helpers import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.browser

SYMBOLS = 300
CELL = f"""import panel as pn

from technic_panel.ui.controller import ScanController
from technic_panel.ui.dashboard import Dashboard

pn.extension(inline=True)
controller = ScanController(symbols={SYMBOLS}, latency_ms=40, workers=4)
Dashboard(controller)"""
"""The notebook's one cell, as in notebooks/01_quickstart.ipynb but inlined; a scan of about 3 s."""

README = Path(__file__).resolve().parent.parent / "README.md"
NOTEBOOK = "live.ipynb"
CELL_WIDTH = 1280
"""Viewport of the README test: JupyterLab with its file browser open, a cell of ~930 px, an
output of ~850 px (the dashboard's sidebar wraps above its main area)."""
FIRST_ROW_S = 10.0
"""Generous bound on the first row after Start (kernel, comm and a loaded machine)."""

LAB_FLAGS = [
    "--no-browser", "--ServerApp.ip=127.0.0.1",
    "--ServerApp.allow_root=True",  # containers run the tests as root
    "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the test waits for the kernel
    "--LabApp.news_url=None",  # no news feed fetched ...
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",  # ... nor updates
    "--LabApp.extension_manager=readonly",  # no PyPI queries for the extension manager
]

NO_NEWS = {"fetchNews": "false", "checkForUpdates": False}
"""JupyterLab settings: no "Would you like to receive official Jupyter news?" toast."""

KERNEL_IDLE_JS = """() => {
  const kernel = window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel;
  return kernel?.connectionStatus === "connected" && kernel.status === "idle";
}"""
"""True once the notebook's kernel is connected and idle: a cell run now is not dropped."""



# Bokeh.index is page-wide: Panel's notebook output (panel/_templates/doc_nb_js.js) calls
# Bokeh.embed.embed_items_notebook, whose add_document_standalone adds every root view of
# every output to the one Bokeh.index, so TABLE_JS / TABLE_STATE_JS find the table inside
# JupyterLab as in a served page (this notebook shows one dashboard, hence one table).


def jupyter_env(home: Path) -> dict[str, str]:
    """Return an environment whose Jupyter and IPython files all live under ``home``."""
    dirs = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data",
            "JUPYTER_RUNTIME_DIR": "runtime", "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces", "IPYTHONDIR": "ipython"}
    settings = home / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps(NO_NEWS))
    return {**os.environ, **{name: str(home / sub) for name, sub in dirs.items()}}


def readme_notebook_cells() -> list[str]:
    """Return the Python blocks of the README's "In a notebook" section, as written there."""
    section = re.search(r"^## In a notebook\n(.*?)^## ", README.read_text(), re.M | re.S)
    assert section, 'README.md has no "## In a notebook" section'
    return re.findall(r"^```python\n(.*?)^```", section[1], re.M | re.S)


def write_notebook(path: Path, sources: list[str]) -> None:
    """Write a notebook of one code cell per source, for the project's Python 3 kernel."""
    cells = [{"cell_type": "code", "execution_count": None, "id": f"cell{i}", "metadata": {},
              "outputs": [], "source": source} for i, source in enumerate(sources)]
    kernel = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    path.write_text(json.dumps({"cells": cells, "metadata": {"kernelspec": kernel},
                                "nbformat": 4, "nbformat_minor": 5}))


@contextlib.contextmanager
def jupyterlab(root: Path, home: Path, timeout: float = 90.0) -> Iterator[tuple[str, str]]:
    """Run JupyterLab on ``root`` on a free loopback port; yield (base URL, token)."""
    port, token = free_port(), secrets.token_urlsafe(16)
    command = [sys.executable, "-m", "jupyter", "lab", *LAB_FLAGS, f"--port={port}",
               f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}"]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, cwd=root, env=jupyter_env(home), stdout=log,
                                   stderr=subprocess.STDOUT, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_answers(f"{base}/api/status?token={token}", process, log, timeout,
                         "jupyter lab")
            yield base, token
        finally:
            process.terminate()  # JupyterLab shuts its kernels down on SIGTERM
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def lab_page(root: Path, home: Path, sources: list[str], width: int = 1600) -> Iterator[Page]:
    """Open a notebook of ``sources`` in JupyterLab, offline; collect errors in ``page.errors``.

    ``page.errors`` holds every console error and uncaught exception; nothing is ignored
    (JupyterLab logs none in this setup), so any Bokeh, Panel or comm error fails the test.
    ``page.outside`` lists the requests that would have left the machine (all failed).
    """
    require_chromium()
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (pip install -e .[test])")
    from playwright.sync_api import sync_playwright

    root.mkdir()
    write_notebook(root / NOTEBOOK, sources)
    with jupyterlab(root, home) as (base, token), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 1200})
            page.errors = []
            page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error"
                    else None)
            page.on("pageerror", lambda exc: page.errors.append(exc.stack or str(exc)))
            page.outside = offline_routes(page)
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
            yield page
        finally:
            browser.close()


@pytest.fixture
def quickstart_page(tmp_path):
    """JupyterLab, offline, on a notebook of :data:`CELL`."""
    with lab_page(tmp_path / "root", tmp_path / "home", [CELL]) as page:
        yield page


@pytest.fixture
def readme_page(tmp_path):
    """JupyterLab, offline, :data:`CELL_WIDTH` wide, on the README's notebook snippets."""
    cells = readme_notebook_cells()
    assert any("Dashboard(" in cell for cell in cells), "the README shows no dashboard cell"
    with lab_page(tmp_path / "root", tmp_path / "home", cells, CELL_WIDTH) as page:
        yield page


def run_dashboard_cell(page: Page) -> None:
    """Wait for the kernel, run the cell with Shift+Enter and wait for the table's view."""
    page.wait_for_function(KERNEL_IDLE_JS, timeout=90_000)
    page.locator(".jp-Cell .jp-InputArea-editor").first.click()
    page.keyboard.press("Shift+Enter")
    wait_for_table(page, timeout=60_000)


def visible_start_button(page: Page, timeout: float = 20_000) -> Locator:
    """Return the Start button of the cell's output once visible; fail with the page's errors."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    output = page.locator(".jp-Cell .jp-OutputArea").first
    start = output.get_by_role("button", name="Start", exact=True)
    try:
        start.wait_for(state="visible", timeout=timeout)
    except PlaywrightTimeoutError:
        pytest.fail(f"the dashboard did not render (no visible Start); page errors: "
                    f"{page.errors}; failed requests off the machine: {page.outside}")
    return start


def test_the_dashboard_renders_and_streams_live_in_jupyterlab(quickstart_page):
    page = quickstart_page
    run_dashboard_cell(page)
    start = visible_start_button(page)
    assert page.errors == [], "rendering the dashboard logged errors"
    assert stat(page, "status") == "idle" and table_state(page)["received"] == 0

    page.evaluate(RECORD_JS)
    clicked = time.monotonic()
    start.click()
    page.wait_for_function(f"() => {TABLE_JS}.model.source.get_length() > 0",
                           timeout=FIRST_ROW_S * 1000)
    first_row = time.monotonic() - clicked
    wait_finished(page)
    settled_rows(page, timeout=10.0)
    received = page.evaluate("clearInterval(window.__recorder) || window.__received")

    state = table_state(page)
    assert first_row <= FIRST_ROW_S
    assert len(received) >= 4 and received == sorted(received), \
        f"rows should keep arriving, saw counts {received}"
    assert state["received"] == state["shown"] == count(page, "processed") == \
        count(page, "rows") == SYMBOLS
    assert page.evaluate(UNIQUE_SYMBOLS_JS) == SYMBOLS, "a symbol arrived twice"
    assert len(state["painted"]) >= 10, "the table paints no rows"
    assert page.errors == [] and page.outside == []


OVERFLOW_JS = """(output) => {
  const limit = output.closest(".jp-Cell").getBoundingClientRect().right + 1, over = [];
  const name = (el) => `${el.tagName.toLowerCase()}.${el.className}`;
  const walk = (el) => {
    const box = el.getBoundingClientRect();
    if (box.width > 0 && box.right > limit) over.push(`${name(el)} right ${Math.round(box.right)}`);
    if (el.matches(".slick-viewport, .slick-header")) return;  // the grid's own scrolling
    if (el.matches(".bk-Canvas")) return;  // a plot clips its glyphs, which span all the data
    for (const child of [...el.children, ...(el.shadowRoot?.children ?? [])]) walk(child);
  };
  walk(output);
  const areas = output.querySelectorAll(".jp-OutputArea-child, .jp-OutputArea-output");
  const scrollers = [output.closest(".jp-WindowedPanel-outer"), document.documentElement];
  for (const el of [output, ...areas, ...scrollers]) {
    if (el.scrollWidth > el.clientWidth + 1) over.push(`${name(el)} scrolls ${el.scrollWidth}`);
  }
  return {limit: Math.round(limit), over: over.slice(0, 8)};
}"""
"""What sticks out past the right edge of the cell of ``output``, shadow roots included (the
results grid scrolls its own columns; a plot's canvas clips its glyphs), or makes the output
area, the notebook or the page scroll sideways."""


def test_the_readme_notebook_snippets_run_as_written_in_jupyterlab_offline(readme_page):
    page = readme_page
    page.wait_for_function(KERNEL_IDLE_JS, timeout=90_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    start = visible_start_button(page, timeout=60_000)
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    frame = cells.nth(1).locator(".jp-OutputArea-output table.dataframe")
    frame.wait_for(timeout=60_000)
    assert frame.locator("tbody tr").count() == 5, "the DataFrame cell shows no top five"
    assert stat(page, "status") == "idle" and table_state(page)["received"] == 0

    start.click()
    page.wait_for_function(f"() => {TABLE_JS}.model.source.get_length() > 0",
                           timeout=FIRST_ROW_S * 1000)
    toast = cells.first.locator(".notice", has_text="STRONG_BUY")
    toast.first.wait_for(timeout=15_000)
    wait_finished(page)
    rows = settled_rows(page, timeout=10.0)
    assert rows > 0 and len(table_state(page)["painted"]) >= 10, "the table paints no rows"

    page.locator(".slick-row .slick-cell.l0").first.click()  # the chart opens in the cell too
    page.locator("[data-testid=chart-title]").wait_for(timeout=15_000)
    page.wait_for_timeout(500)  # let the chart paint

    assert page.errors == [], "the README's cells logged errors"
    assert page.outside == [], "the notebook tried to leave the machine"
    output = cells.first.locator(".jp-OutputArea")
    fits = output.evaluate(OVERFLOW_JS)
    assert fits["over"] == [], f"the dashboard spills past the cell (right edge {fits['limit']})"
    sidebar = output.locator(".scrollable-vertical").first
    last = output.get_by_text("Update period").first  # the sidebar's last setting
    assert sidebar.evaluate("(el) => getComputedStyle(el).overflowY") == "auto"
    last.scroll_into_view_if_needed()  # the settings below the sidebar's fold are in reach
    assert within(last.bounding_box(), sidebar.bounding_box()), "a setting is out of reach"
