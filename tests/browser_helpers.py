"""Helpers of the browser tests and the dashboard benchmark: serve app.py, drive Chromium.

Counting rows: the results DataTable is a virtualised SlickGrid, so the DOM holds only the
rows in view. The page's own BokehJS objects know the truth: ``Bokeh.index`` finds the
table's view by the model's name, ``view.data`` is the grid's data provider (rows after the
CDSView filter, in display order: what the grid scrolls through) and
``view.model.source`` the rows the browser has received. The rows painted in view are
read from the view's shadow DOM, ordered by their position, to check what a user sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TABLE_JS = "Bokeh.index.query_one((view) => view.model.name === 'results-table')"
"""The Overview table's BokehJS view (the other views' names append ``-technical``, ...)."""
TABLE_STATE_JS = f"""() => {{
  if (!window.Bokeh || !Bokeh.index) return null;
  const view = {TABLE_JS};
  if (view == null) return null;
  const data = view.model.source.data;
  const order = Array.from(view.data.index);
  const painted = [...view.shadow_el.querySelectorAll(".slick-row")]
    .sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top))
    .map((row) => row.querySelector(".slick-cell.l3").textContent);
  return {{shown: view.data.getLength(), received: view.model.source.get_length(),
           ratings: order.map((i) => data.tech_rating[i]), painted}};
}}"""
"""Returns {shown, received, ratings (display order), painted (Rating cells in view)}."""



def sampler_js(probe: str) -> str:
    """Return JS that samples ``probe(view)`` every 20 ms, in the page, into ``__received``.

    ``probe`` is a JS function of the results table's view returning a JSON-able value; each
    value that differs from the last one is appended to ``window.__received``. Sampling in
    the page, a loaded test process cannot miss states; :func:`stop_sampler` ends it.
    """
    return f"""() => {{
  const probe = {probe};
  const sample = () => probe({TABLE_JS});
  window.__received = [sample()];
  window.__recorder = setInterval(() => {{
    const value = sample();
    if (JSON.stringify(value) !== JSON.stringify(window.__received.at(-1))) {{
      window.__received.push(value);
    }}
  }}, 20);
}}"""


RECORD_JS = sampler_js("(view) => view.model.source.get_length()")
"""Record every distinct number of rows the table's source holds, every 20 ms."""

STOP_SAMPLER_JS = "clearInterval(window.__recorder) || window.__received"
"""Stop the sampler of :func:`sampler_js` (or :data:`RECORD_JS`); evaluates to its samples."""


def stop_sampler(page) -> list:
    """Stop the page's sampler; return the distinct values it recorded, oldest first."""
    return page.evaluate(STOP_SAMPLER_JS)


def require_chromium() -> None:
    """Skip when Debian's Chromium is missing; under CI (env ``CI`` set) fail instead."""
    if os.path.exists(CHROMIUM):
        return
    reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the browser tests: {reason}")
    pytest.skip(reason)


def serve_command(port: int, *extra: str) -> list[str]:
    """Return the ``panel serve app.py`` command of ``make serve``, with the API plugin.

    As ``make serve``: the dashboard's token check (:mod:`technic_panel.api.auth`, a no-op while
    ``TECHNIC_API_TOKEN`` is unset) and its cookie kept out of the page's session token.
    """
    command = [sys.executable, "-m", "panel", "serve", str(ROOT / "app.py"), "--port", str(port),
               "--address", "127.0.0.1", f"--allow-websocket-origin=127.0.0.1:{port}",
               "--liveness", "--log-level", "warning",
               "--auth-module", str(ROOT / "technic_panel" / "api" / "auth.py"),
               "--exclude-headers=Cookie", "--exclude-cookies=technic_dashboard",
               "--plugins", "technic_panel.api.serve", *extra]
    return command


@dataclasses.dataclass
class Served:
    """A running ``panel serve app.py``: its base URL, process and log (stdout and stderr)."""

    base: str
    process: subprocess.Popen
    log_file: IO[str]

    def log(self) -> str:
        """Return what the server has logged so far."""
        self.log_file.seek(0)
        return self.log_file.read()


@contextlib.contextmanager
def panel_server(timeout: float = 60.0, *extra: str,
                 **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``panel serve app.py`` on a free loopback port; yield (base URL, process).

    ``extra`` adds arguments of ``panel serve`` (``--setup FILE``, ...); ``env`` adds
    environment variables of the server (``TECHNIC_INACTIVITY_TIMEOUT``, ...).
    """
    with served_app(timeout, *extra, **env) as served:
        yield served.base, served.process


@contextlib.contextmanager
def served_app(timeout: float = 60.0, *extra: str, **env: str) -> Iterator[Served]:
    """Run ``panel serve app.py`` as :func:`panel_server` does; yield a :class:`Served`.

    The log is opened for appending, so reading it never moves where the server writes.
    """
    port = free_port()
    env = {**os.environ, "TECHNIC_MAX_SCANS": "8", **env}
    with tempfile.TemporaryFile("a+") as log:
        process = subprocess.Popen(serve_command(port, *extra), cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_answers(f"{base}/liveness", process, log, timeout)
            yield Served(base, process, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_answers(url: str, process: subprocess.Popen, log, timeout: float,
                 name: str = "panel serve") -> None:
    """Wait until ``url`` answers 200; raise with the tail of ``log`` if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{name} exited with {process.returncode}: "
                               f"{log.read()[-2000:]}")
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer {url} within {timeout} s")


LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "blob:", "data:", "about:")
"""URL prefixes of requests that stay on this machine."""


def offline_routes(page) -> list[str]:
    """Fail every request that would leave the machine, as offline; return the list of them.

    Each such request is aborted (the page sees a network error, as with no internet) and
    its URL appended to the returned list, which a test asserts is empty: answering the
    request instead would hide a page that needs the internet.
    """
    outside: list[str] = []

    def fail(route) -> None:
        outside.append(route.request.url)
        route.abort()

    page.route(lambda url: not url.startswith(LOCAL), fail)
    return outside


def wait_for_table(page, timeout: float = 20_000) -> None:
    """Wait until BokehJS has built the results table's view."""
    page.wait_for_function(f"() => window.Bokeh && Bokeh.index && {TABLE_JS} != null",
                           timeout=timeout)


def wait_shown(page, rows: int, timeout: float = 10_000) -> float:
    """Wait until the grid shows at least ``rows`` rows; return that moment's page time (ms).

    The time is ``performance.now()``, the clock :func:`click_start` returns.
    """
    shown = page.wait_for_function(
        f"(n) => {TABLE_JS}.data.getLength() >= n && performance.now()", arg=rows,
        timeout=timeout)
    return shown.json_value()


def table_state(page) -> dict:
    """Return what the table holds and shows; see :data:`TABLE_STATE_JS`."""
    return page.evaluate(TABLE_STATE_JS)


def stat(page, testid: str) -> str:
    """Return the text of a stats field (``processed``, ``rows``, ``status``, ...)."""
    return page.locator(f"[data-testid={testid}]").inner_text()


def count(page, testid: str) -> int:
    """Return a numeric stats field as an int."""
    return int(stat(page, testid).replace(",", ""))


def click_start(page) -> float:
    """Click Start; return the click time in the page's clock (``performance.now()`` ms)."""
    page.evaluate("""() => document.addEventListener(
        "pointerdown", () => { window.__clicked = performance.now(); },
        {capture: true, once: true})""")
    page.get_by_role("button", name="Start").click()
    return page.evaluate("window.__clicked")


UNIQUE_SYMBOLS_JS = f"() => new Set({TABLE_JS}.model.source.data.symbol).size"
"""The number of distinct symbols among the rows the table received."""


def settled_rows(page, timeout: float = 5.0) -> int:
    """Wait until the table has received as many rows as the stats say were processed.

    Call it once the scan has ended. Panel may deliver the stats of the last update a moment
    before BokehJS applies the last streamed rows (they travel as separate messages), so the
    end is awaited, not read. Returns the rows; fails naming rows, distinct symbols and
    processed if they never agree within ``timeout`` seconds.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    processed = count(page, "processed")
    try:
        page.wait_for_function(f"(n) => {TABLE_JS}.model.source.get_length() === n",
                               arg=processed, timeout=timeout * 1000)
    except PlaywrightTimeoutError:
        rows, unique = table_state(page)["received"], page.evaluate(UNIQUE_SYMBOLS_JS)
        pytest.fail(f"the table received {rows} rows ({unique} distinct symbols), "
                    f"the dashboard processed {processed}")
    return table_state(page)["received"]


def table_view_js(name: str) -> str:
    """Return JS that finds the BokehJS view of the DataTable named ``name``."""
    return f"Bokeh.index.query_one((view) => view.model.name === {name!r})"


def overlaps(a: dict, b: dict) -> bool:
    """Whether two Playwright bounding boxes intersect."""
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


def inside(box: dict, width: int, height: int) -> bool:
    """Whether a bounding box lies inside a viewport of ``width`` x ``height``."""
    return box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= width \
        and box["y"] + box["height"] <= height


def within(box: dict, outer: dict) -> bool:
    """Whether Playwright bounding box ``box`` lies inside bounding box ``outer``."""
    return outer["x"] <= box["x"] and box["x"] + box["width"] <= outer["x"] + outer["width"] \
        and outer["y"] <= box["y"] and box["y"] + box["height"] <= outer["y"] + outer["height"]


def wait_finished(page, timeout: float = 60_000) -> str:
    """Wait until the status says the scan ended; return the status text."""
    page.locator("[data-testid=status]", has_text="finished").wait_for(timeout=timeout)
    return stat(page, "status")


def is_descending(values: list[float]) -> bool:
    """Whether ``values`` never increase."""
    return all(a >= b for a, b in zip(values, values[1:], strict=False))
