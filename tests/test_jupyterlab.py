"""The dashboard in a real JupyterLab page: ``Dashboard(controller)`` in a cell renders, streams.

The issue asks that displaying ``Dashboard(ScanController())`` in JupyterLab renders and streams
live. nbclient runs a notebook without a browser, so it cannot see that. This test starts a
JupyterLab server, opens a notebook in headless Chromium, runs its one cell, clicks Start in
the cell's output and watches the results table fill up. In a notebook Panel sends every
update from the kernel over a Jupyter comm, which pyviz_comms' JupyterLab extension hands to
BokehJS; rows arriving in the table prove that whole path works in JupyterLab. JupyterLab
keeps its defaults but the news toast: in particular comm messages travel over a kernel
subshell ("commsOverSubshells": "perCommTarget", with ipykernel 7), as for a user. It caught
two bugs, both fixed: BokehJS could not lay out the table beside a collapsed Card, and rows
were lost or doubled while the browser's messages ran on a subshell thread (see
``technic_panel.ui.notebook.NotebookLayout``).

Offline: Panel's notebook output loads BokehJS and Panel's JavaScript from cdn.bokeh.org and
cdn.holoviz.org (the default, ``inline=False``). The page answers those requests with the same
files of the installed bokeh and panel packages, so it loads what a user's browser would.
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
from urllib.parse import unquote, urlsplit

import pytest
from browser_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    RECORD_JS,
    TABLE_JS,
    UNIQUE_SYMBOLS_JS,
    count,
    require_chromium,
    settled_rows,
    stat,
    table_state,
    wait_answers,
    wait_finished,
    wait_for_table,
)
from helpers import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.browser

SYMBOLS = 300
CELL = f"""import panel as pn

from technic_panel.ui.controller import ScanController
from technic_panel.ui.dashboard import Dashboard

pn.extension(notifications=True)
controller = ScanController(symbols={SYMBOLS}, latency_ms=40, workers=4)
Dashboard(controller)"""
"""The notebook's one cell, as in notebooks/01_quickstart.ipynb; a scan of about 3 s."""

NOTEBOOK = "live.ipynb"
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


def write_notebook(path: Path, source: str) -> None:
    """Write a notebook of one code cell, for the project's Python 3 kernel."""
    cell = {"cell_type": "code", "execution_count": None, "id": "dashboard", "metadata": {},
            "outputs": [], "source": source}
    kernel = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    path.write_text(json.dumps({"cells": [cell], "metadata": {"kernelspec": kernel},
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


def cdn_file(url: str) -> Path | None:
    """Return the installed file a Bokeh or Panel CDN URL of the installed versions names."""
    import bokeh
    import panel

    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.hostname == "cdn.bokeh.org":
        name = re.fullmatch(rf"/bokeh/release/(bokeh(?:-\w+)?)-{re.escape(bokeh.__version__)}"
                            r"\.min\.js", path)
        if name:
            return Path(bokeh.__file__).parent / "server/static/js" / f"{name[1]}.min.js"
    prefix = f"/panel/{panel.__version__}/dist/"
    if parts.hostname == "cdn.holoviz.org" and path.startswith(prefix):
        return Path(panel.__file__).parent / "dist" / path.removeprefix(prefix)
    return None


def serve_cdn_locally(page: Page, unanswered: list[str]) -> None:
    """Answer Bokeh and Panel CDN requests from the installed packages; abort other external ones.

    Requests that cannot be answered so are aborted and kept in ``unanswered``.
    """
    def handle(route) -> None:
        path = cdn_file(route.request.url)
        if path is not None and path.is_file():
            route.fulfill(path=path)
        else:
            unanswered.append(route.request.url)
            route.abort()

    local = ("http://127.0.0.1", "ws://127.0.0.1", "blob:", "data:")
    page.route(lambda url: not url.startswith(local), handle)


@pytest.fixture
def lab_page(tmp_path):
    """Open the dashboard notebook in JupyterLab; collect errors in ``page.errors``.

    ``page.errors`` holds every console error and uncaught exception; nothing is ignored
    (JupyterLab logs none in this setup), so any Bokeh, Panel or comm error fails the test.
    ``page.unanswered`` holds external requests that were aborted.
    """
    require_chromium()
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (pip install -e .[test])")
    from playwright.sync_api import sync_playwright

    root, home = tmp_path / "root", tmp_path / "home"
    root.mkdir()
    write_notebook(root / NOTEBOOK, CELL)
    with jupyterlab(root, home) as (base, token), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.errors, page.unanswered = [], []
            page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error"
                    else None)
            page.on("pageerror", lambda exc: page.errors.append(exc.stack or str(exc)))
            serve_cdn_locally(page, page.unanswered)
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
            yield page
        finally:
            browser.close()


def run_dashboard_cell(page: Page) -> None:
    """Wait for the kernel, run the cell with Shift+Enter and wait for the table's view."""
    page.wait_for_function(KERNEL_IDLE_JS, timeout=90_000)
    page.locator(".jp-Cell .jp-InputArea-editor").first.click()
    page.keyboard.press("Shift+Enter")
    wait_for_table(page, timeout=60_000)


def visible_start_button(page: Page) -> Locator:
    """Return the Start button of the cell's output once visible; fail with the page's errors."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    output = page.locator(".jp-Cell .jp-OutputArea").first
    start = output.get_by_role("button", name="Start", exact=True)
    try:
        start.wait_for(state="visible", timeout=20_000)
    except PlaywrightTimeoutError:
        pytest.fail(f"the dashboard did not render (no visible Start); page errors: "
                    f"{page.errors}; aborted requests: {page.unanswered}")
    return start


def test_the_dashboard_renders_and_streams_live_in_jupyterlab(lab_page):
    page = lab_page
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
    assert page.errors == [] and page.unanswered == []
