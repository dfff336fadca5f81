"""The dashboard under attack: HTML injection, CSV formulas, the token, secrets in logs.

Unit tests drive the dashboard's own paths (a real NotificationArea, real log records);
the rest run a real ``panel serve app.py --plugins technic_panel.api.serve`` on loopback, the
page in headless Chromium.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import http.client
import io
import json
import logging
import re
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bokeh.util.token import generate_jwt_token, generate_session_id
from browser_helpers import (
    offline_routes,
    require_chromium,
    served_app,
    stat,
    wait_finished,
    wait_for_table,
)

from technic_panel.api import auth
from technic_panel.streaming.export import FORMULA_PREFIXES, csv_safe
from technic_panel.streaming.jsonsafe import make_message
from technic_panel.ui.controller import ScanController
from technic_panel.ui.dashboard import Dashboard

INJECTION = "<img src=x onerror=alert(1)>"
"""HTML that runs script wherever it is rendered as HTML."""
SYMBOL = INJECTION.upper()
"""The symbol of a file named ``<img src=x onerror=alert(1)>.csv`` (FileSource upper-cases)."""
TOKEN = "dashboard-test-token-4f9a"
WRONG = "not-the-token-77c1"


# --- unit: the dashboard's toasts, stats, titles and CSV --------------------------------------


def html_named_prices(folder: Path) -> Path:
    """Write 300 daily bars to ``folder/<img src=x onerror=alert(1)>.csv``; return ``folder``."""
    rng = np.random.default_rng(7)
    close = 50 * np.exp(np.cumsum(rng.normal(0.001, 0.01, 300)))
    pd.DataFrame({"date": pd.bdate_range("2023-01-02", periods=300), "open": close * 0.99,
                  "high": close * 1.02, "low": close * 0.97, "close": close,
                  "volume": rng.integers(10_000, 90_000, 300).astype(float)}
                 ).to_csv(folder / f"{INJECTION}.csv", index=False)
    return folder


def last_toast(dashboard: Dashboard) -> str:
    """The newest notice of ``dashboard`` as its HTML (outside a server: the notebook strip)."""
    return dashboard.notices.shown[-1][1]


def result(symbol: str, seq: int, signal: str = "STRONG_BUY", **fields) -> dict:
    data = {"symbol": symbol, "signal": signal, "tech_rating": 90.0 - seq, "alpha_score": 0.5,
            "priority_tier": "high", **fields}
    return make_message("result", data, scan_id="scan_t", seq=seq)


def test_a_strong_buy_toast_shows_an_html_symbol_as_text(dashboard_manager):
    controller = ScanController(manager=dashboard_manager)
    dashboard = Dashboard(controller)
    controller._apply([result(INJECTION, 1)])
    assert last_toast(dashboard) == "STRONG_BUY: &lt;img src=x onerror=alert(1)&gt;"
    assert "<img" not in dashboard.notices.strip.text


def test_a_failed_symbol_is_listed_as_text(dashboard_manager):
    controller = ScanController(manager=dashboard_manager)
    dashboard = Dashboard(controller)
    controller._apply([make_message("error", {"symbol": INJECTION, "error": "data",
                                              "message": f"bad file {INJECTION}"},
                                    scan_id="scan_t", seq=1)])
    assert controller.error_rows.data["symbol"] == [INJECTION]  # shown by a StringFormatter
    errors = dashboard._tabs[-1].object
    assert {type(column.formatter).__name__ for column in errors.columns} == {"StringFormatter"}


def test_a_refused_filter_is_toasted_escaped(dashboard_manager):
    controller = ScanController(manager=dashboard_manager, filter=INJECTION)
    dashboard = Dashboard(controller)
    dashboard._start.clicks += 1
    message = last_toast(dashboard)
    assert controller.status == "idle" and "ScanConfig.filter" in message
    assert "<img" not in message and "&lt;img src=x onerror=alert(1)&gt;" in message


def test_a_refused_url_setting_is_toasted_escaped():
    dashboard = Dashboard(ScanController())
    dashboard._on_url_error({"executor": INJECTION})
    message = last_toast(dashboard)
    assert message.startswith("Ignored in the URL: ") and "executor" in message
    assert "<img" not in message and "&lt;img" in message


def test_stats_and_the_chart_title_show_an_html_symbol_as_text(dashboard_manager, tmp_path):
    folder = html_named_prices(tmp_path)
    controller = ScanController(manager=dashboard_manager, source="files", path=str(folder))
    dashboard = Dashboard(controller)
    controller.run()
    assert controller.best_symbol == SYMBOL
    assert f'data-testid="best">{html.escape(SYMBOL)}<' in dashboard._stats.text
    assert "<img" not in dashboard._stats.text.lower()
    controller.cds.selected.indices = [0]
    title = dashboard._chart_title.text
    assert dashboard._symbol_card.visible and "&lt;IMG SRC=X" in title
    assert "<img" not in title.lower()


FORMULAS = ["=HYPERLINK(\"http://x.example\",\"click\")", "+SUM(A1:A2)", "-2+3", "@cmd",
            "\tTAB", "\rCR"]


def test_csv_safe_prefixes_formula_text_and_keeps_numbers():
    frame = pd.DataFrame({"symbol": [*FORMULAS, "AAPL"], "change_pct": [-1.5, 2.0, -3.0, 0.0,
                                                                        -0.1, 1.0, -7.25],
                          "mixed": [-4, "=1+1", None, "ok", 5.5, "-x", "@"]})
    safe = csv_safe(frame)
    assert safe["symbol"].tolist() == [f"'{text}" for text in FORMULAS] + ["AAPL"]
    assert safe["change_pct"].tolist() == frame["change_pct"].tolist()
    assert safe["mixed"].tolist()[:2] == [-4, "'=1+1"] and safe["mixed"].tolist()[3:] == [
        "ok", 5.5, "'-x", "'@"]
    assert frame["symbol"].tolist()[0].startswith("=")  # the input is left alone


def test_the_csv_download_neutralises_formula_cells(dashboard_manager):
    controller = ScanController(manager=dashboard_manager)
    dashboard = Dashboard(controller)
    controller._apply([result(text, i, signal="BUY", sector=text, change_pct=-2.5)
                       for i, text in enumerate(FORMULAS, start=1)])
    text = dashboard._csv().getvalue()
    back = pd.read_csv(io.StringIO(text), keep_default_na=False)
    assert len(back) == len(FORMULAS)
    assert all(cell.startswith("'") for cell in [*back["symbol"], *back["sector"]])
    assert back["change_pct"].dtype.kind == "f" and (back["change_pct"] == -2.5).all()
    cells = [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]
    assert [cell for cell in cells if cell.startswith(FORMULA_PREFIXES)] == ["-2.5"] * 6


# --- unit: redaction and the login page's redirect targets ------------------------------------


@pytest.mark.parametrize(("line", "kept"), [
    ("GET /app?token=abc&symbols=5 (127.0.0.1)", "token=[redacted]&symbols=5"),
    ("GET /login?next=%2Fapp%3Ftoken%3Dabc%26symbols%3D5 (::1)",
     "token%3D[redacted]%26symbols%3D5"),
    ("GET /app/ws?bokeh-token=eyJabc.def", "bokeh-token=[redacted]"),
])
def test_redact_hides_every_token_value(line, kept):
    redacted = auth.redact(line)
    assert "abc" not in redacted and kept in redacted


def test_tornado_access_lines_are_redacted_once_the_auth_module_is_loaded(caplog):
    auth.install()
    auth.install()  # twice: one filter
    access = logging.getLogger("tornado.access")
    assert sum(getattr(f, "redacts_tokens", False) for f in access.filters) == 1
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        access.warning("%d %s %.2fms", 401, f"GET /scans?token={TOKEN} (127.0.0.1)", 1.0)
    assert TOKEN not in caplog.text and "token=[redacted]" in caplog.text


@pytest.mark.parametrize(("next_url", "target", "token"), [
    ("/app?token=abc&symbols=5", "/app?symbols=5", "abc"),
    ("/app", "/app", None),
    ("//evil.example/app?token=abc", "/", None),
    ("https://evil.example/", "/", None),
    ("/\\evil.example", "/", None),
    ("app", "/", None),
])
def test_the_login_page_redirects_only_to_this_server_and_without_the_token(next_url, target,
                                                                            token):
    assert auth.local_target(next_url) == (target, token)


# --- HTTP: the token covers the page and its WebSocket ----------------------------------------


@pytest.fixture(scope="module")
def guarded():
    """``panel serve app.py`` (API plugin, auth module) with TECHNIC_API_TOKEN set."""
    with served_app(TECHNIC_API_TOKEN=TOKEN) as served:
        yield served


@dataclasses.dataclass
class Answer:
    """An HTTP answer: status, headers and body text."""

    status: int
    headers: http.client.HTTPMessage
    text: str

    def getheader(self, name: str) -> str | None:
        return self.headers.get(name)


def request(base: str, path: str, method: str = "GET", body: str | None = None,
            cookie: str | None = None) -> Answer:
    """One request, redirects not followed."""
    parts = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    headers = {"Cookie": cookie} if cookie else {}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read().decode())
    finally:
        connection.close()


def login_with_link(base: str, query: str) -> tuple[str, Answer]:
    """Open ``/app?{query}`` following redirects by hand; return (cookie, last response)."""
    first = request(base, f"/app?{query}")
    assert first.status == 302 and first.getheader("Location").startswith("./login?next=")
    exchange = request(base, "/" + first.getheader("Location")[2:])
    cookie = exchange.getheader("Set-Cookie") or ""
    return cookie, exchange


def test_without_the_token_the_page_is_a_login_form_and_starts_no_session(guarded):
    first = request(guarded.base, "/app?symbols=50")
    assert first.status == 302
    assert first.getheader("Location") == "./login?next=%2Fapp%3Fsymbols%3D50"
    form = request(guarded.base, "/login?next=%2Fapp%3Fsymbols%3D50")
    assert form.status == 401 and 'name="token"' in form.text
    assert "Bokeh" not in form.text and '"token":' not in form.text
    assert form.getheader("Set-Cookie") is None


def test_a_wrong_token_is_refused_in_the_link_and_in_the_form(guarded):
    cookie, answer = login_with_link(guarded.base, f"token={WRONG}")
    assert answer.status == 401 and cookie == "" and "Wrong token" in answer.text
    posted = request(guarded.base, "/login", "POST",
                     urllib.parse.urlencode({"token": WRONG, "next": "/app"}))
    assert posted.status == 401 and posted.getheader("Set-Cookie") is None
    forged = f"{auth.COOKIE}={auth.cookie_value(WRONG)}"
    assert request(guarded.base, "/app", cookie=forged).status == 302


def test_the_token_link_sets_a_strict_httponly_cookie_and_leaves_the_address(guarded):
    cookie, exchange = login_with_link(guarded.base, f"token={TOKEN}&symbols=50")
    assert exchange.status == 302 and exchange.getheader("Location") == "/app?symbols=50"
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/" in attributes
    pair = cookie.split(";")[0]
    assert pair == f"{auth.COOKIE}={auth.cookie_value(TOKEN)}" and TOKEN not in cookie
    page = request(guarded.base, "/app?symbols=50", cookie=pair)
    assert page.status == 200 and '"token":' in page.text
    assert TOKEN not in page.text and auth.cookie_value(TOKEN) not in page.text
    again = request(guarded.base, f"/app?token={TOKEN}", cookie=pair)
    assert again.status == 302  # a token in the address is always exchanged, never served


def session_token(base: str, cookie: str) -> str:
    page = request(base, "/app", cookie=cookie)
    return re.search(r'"token":\s*"([^"]+)"', page.text).group(1)


def open_socket(base: str, token: str, cookie: str | None):
    import websocket

    url = base.replace("http://", "ws://") + "/app/ws"
    return websocket.create_connection(url, subprotocols=["bokeh", token], timeout=20,
                                       origin=base, cookie=cookie)


def test_the_websocket_needs_the_cookie_whatever_the_session_token(guarded):
    import websocket

    pair = login_with_link(guarded.base, f"token={TOKEN}")[0].split(";")[0]
    real = session_token(guarded.base, pair)
    forged = generate_jwt_token(generate_session_id(), extra_payload={})
    for token in (real, forged):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            open_socket(guarded.base, token, cookie=None)
        assert refused.value.status_code == 403
    socket = open_socket(guarded.base, real, cookie=pair)
    try:
        assert json.loads(socket.recv())["msgtype"] == "ACK"
    finally:
        socket.close()


def test_the_server_log_never_holds_a_token(guarded):
    login_with_link(guarded.base, f"token={WRONG}")
    login_with_link(guarded.base, f"token={TOKEN}")
    api = request(guarded.base, f"/scans?token={TOKEN}")  # the API refuses it in the query
    assert api.status == 401
    log = guarded.log()
    assert "[redacted]" in log and "/scans?token=[redacted]" in log
    assert TOKEN not in log and WRONG not in log
    assert auth.cookie_value(TOKEN) not in log


# --- browser: injection shown as text, the token's login page ---------------------------------


@pytest.fixture(scope="module")
def prices_dir(tmp_path_factory) -> Path:
    """A folder holding one file whose name, so its symbol, is HTML."""
    return html_named_prices(tmp_path_factory.mktemp("prices"))


@pytest.fixture(scope="module")
def open_server(prices_dir):
    """The default server (no token) whose operator allows ``prices_dir`` for files."""
    require_chromium()
    with served_app(TECHNIC_DATA_DIRS=str(prices_dir)) as served:
        yield served


@pytest.fixture
def new_page(browser):
    """A fresh context's page that records dialogs in ``page.dialogs``."""
    contexts = []

    def new():
        context = browser.new_context(viewport={"width": 1500, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.dialogs = []

        def on_dialog(dialog):
            page.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        offline_routes(page)
        return page

    yield new
    for context in contexts:
        context.close()


def assert_shown_as_text(page, text: str) -> None:
    """The toast holding ``text`` is visible as text; no injected element, no dialog."""
    from playwright.sync_api import expect

    toast = page.locator(".notice", has_text=text)
    expect(toast.first).to_be_visible(timeout=10_000)
    page.wait_for_timeout(500)  # time for an injected onerror to fire, were there one
    assert page.locator('img[src="x"]').count() == 0
    assert page.dialogs == []


@pytest.mark.browser
def test_html_in_the_url_filter_is_toasted_as_text_when_start_is_clicked(open_server, new_page):
    page = new_page()
    page.goto(f"{open_server.base}/app?" + urllib.parse.urlencode({"filter": INJECTION}))
    wait_for_table(page)
    page.get_by_role("button", name="Start").click()
    assert_shown_as_text(page, f"filter {INJECTION!r} is not a valid expression")
    assert stat(page, "status") == "idle"


@pytest.mark.browser
def test_a_refused_url_setting_is_toasted_as_text(open_server, new_page):
    page = new_page()
    page.goto(f"{open_server.base}/app?" + urllib.parse.urlencode({"executor": INJECTION}))
    wait_for_table(page)
    assert_shown_as_text(page, "Ignored in the URL")
    assert_shown_as_text(page, INJECTION)


@pytest.mark.browser
def test_an_html_symbol_is_shown_as_text_in_stats_table_and_chart_title(open_server, prices_dir,
                                                                         new_page):
    from playwright.sync_api import expect

    page = new_page()
    query = urllib.parse.urlencode({"source": "files", "path": str(prices_dir)})
    page.goto(f"{open_server.base}/app?{query}")
    wait_for_table(page)
    page.get_by_role("button", name="Start").click()
    assert "completed" in wait_finished(page, timeout=30_000)
    assert stat(page, "best") == SYMBOL
    page.locator(".slick-row .slick-cell.l0").first.click()
    title = page.get_by_test_id("chart-title")
    expect(title).to_be_visible(timeout=10_000)
    expect(title).to_contain_text(f"{SYMBOL} · ")
    page.wait_for_timeout(500)
    assert page.locator('img[src="x"], img[src="X"]').count() == 0 and page.dialogs == []


@pytest.mark.browser
def test_with_a_token_the_browser_logs_in_then_scans(guarded, new_page):
    page = new_page()
    answer = page.goto(f"{guarded.base}/app?symbols=60")
    assert answer.status == 401 and page.url.startswith(f"{guarded.base}/login?next=")
    assert page.evaluate("typeof window.Bokeh") == "undefined"
    page.locator("#token").fill(WRONG)
    page.get_by_role("button", name="Open the dashboard").click()
    page.get_by_role("alert").filter(has_text="Wrong token").wait_for()
    page.locator("#token").fill(TOKEN)
    page.get_by_role("button", name="Open the dashboard").click()
    wait_for_table(page)
    assert page.url == f"{guarded.base}/app?symbols=60"
    cookie = next(c for c in page.context.cookies() if c["name"] == auth.COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert auth.COOKIE not in page.evaluate("document.cookie")
    page.get_by_role("button", name="Start").click()
    assert "completed" in wait_finished(page, timeout=30_000)


@pytest.mark.browser
def test_with_a_token_link_the_page_opens_without_the_token_in_its_address(guarded, new_page):
    page = new_page()
    page.goto(f"{guarded.base}/app?token={TOKEN}&symbols=40")
    wait_for_table(page)
    assert page.url == f"{guarded.base}/app?symbols=40" and page.dialogs == []
    page.get_by_role("button", name="Start").click()
    assert "completed" in wait_finished(page, timeout=30_000)
