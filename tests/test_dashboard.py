"""Dashboard (no browser): widgets from params, views, filters, stats, notices, chart, URL, CSV."""

from __future__ import annotations

import html
import threading
import urllib.request

import numpy as np
import pandas as pd
import panel as pn
import param
import pytest
from bokeh.models import HTMLTemplateFormatter, NumberFormatter
from helpers import free_port, wait_until

from technic_panel.config import ScanConfig
from technic_panel.streaming.export import DIGITS
from technic_panel.streaming.jsonsafe import make_message
from technic_panel.ui import charts, columns
from technic_panel.ui.candles import WINDOW
from technic_panel.ui.colors import SIGNAL_CELLS_BACKGROUND, SIGNAL_CELLS_TEXT
from technic_panel.ui.controller import ScanController
from technic_panel.ui.dashboard import (
    SIDEBAR_WIDTH,
    Dashboard,
    OfflineFast,
)
from technic_panel.ui.notebook import NotebookLayout
from technic_panel.ui.notices import TOAST_INTERVAL
from technic_panel.ui.sidebar import APPLIES, scan_label
from technic_panel.vocabulary import SIGNALS

pytestmark = pytest.mark.usefixtures("panel_state")

MAIN_AT_1000 = 1000 - SIDEBAR_WIDTH - 56
"""The table's width in a 1,000-pixel window: the sidebar and the page's paddings aside
(measured in Chromium: 665 px; tests/test_browser.py checks the page itself)."""


@pytest.fixture
def manager(dashboard_manager):
    return dashboard_manager


@pytest.fixture
def toasts(monkeypatch):
    """Record the dashboard's notices as (kind, message) and show them nowhere."""
    from technic_panel.ui.notices import Notices

    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(Notices, "notify", lambda self, kind, text, duration=4000:
                        sent.append((kind, text)))
    return sent


@pytest.fixture
def finished(manager):
    """A dashboard whose controller has run a 120-symbol scan."""
    controller = ScanController(manager=manager, symbols=120)
    dashboard = Dashboard(controller)
    controller.run()
    return dashboard


def luminance(hex_color: str) -> float:
    """WCAG relative luminance of ``#rrggbb``."""
    channels = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def strong_buy(symbol: str, seq: int) -> dict:
    return make_message("result", {"symbol": symbol, "signal": "STRONG_BUY", "tech_rating": 90.0,
                                   "alpha_score": 0.9}, scan_id="scan_t", seq=seq)


def error(symbol: str, seq: int) -> dict:
    return make_message("error", {"symbol": symbol, "error": "data", "message": "<b>gone</b>"},
                        scan_id="scan_t", seq=seq)


# --- the views and the sidebar ----------------------------------------------------------------

def test_view_is_a_layout_in_notebooks_and_an_offline_template_when_served():
    dashboard = Dashboard(ScanController())
    assert isinstance(pn.panel(dashboard), NotebookLayout)  # what a notebook cell displays
    template = dashboard.template()
    assert isinstance(template, pn.template.FastListTemplate) and template.theme_toggle
    assert template.design is OfflineFast and not template.font_url
    fonts = OfflineFast(theme=template.theme).resolve_resources(cdn=False)
    urls = [url for kind in fonts.values() if isinstance(kind, dict) for url in kind.values()]
    assert urls and not [url for url in urls if "//" in url]  # the design loads nothing remote


def test_the_notebook_layout_has_no_collapsed_card_but_the_served_sidebar_does():
    dashboard = Dashboard(ScanController())
    layout_cards = dashboard.layout().select(pn.Card)
    assert layout_cards and not any(card.collapsed for card in layout_cards)
    assert any(card.collapsed for card in pn.Column(*dashboard.sidebar()).select(pn.Card))


def test_the_sidebar_has_a_labelled_widget_for_every_setting():
    controller = ScanController()
    dashboard = Dashboard(controller)
    assert set(dashboard.settings.widgets) == set(ScanConfig.setting_names()) | {"update_period"}
    slider = dashboard.settings.widgets["stop_atr"]
    assert slider.name == "Stop (ATRs)" and (slider.start, slider.end) == (0.5, 5)
    cards = [card.title for card in pn.Column(*dashboard.sidebar()).select(pn.Card)]
    assert cards[:2] == ["Universe", "Strategy"]


@pytest.mark.parametrize("name, off, on", [
    ("symbols", {"source": "sample"}, {"source": "synthetic"}),
    ("error_rate", {"source": "files"}, {"source": "synthetic"}),
    ("path", {"source": "synthetic"}, {"source": "files"}),
    ("scheduler", {"executor": "thread"}, {"executor": "dask"}),
    ("quality_signals", {"max_signals": None}, {"max_signals": 5}),
    ("replay_from", {"live": True, "feed": "synthetic"}, {"live": True, "feed": "replay"}),
    ("feed", {"live": False}, {"live": True}),
])
def test_settings_that_do_not_apply_are_disabled(name, off, on):
    controller = ScanController()
    widgets = Dashboard(controller).settings.widgets
    controller.param.update(**off)
    assert widgets[name].disabled and not APPLIES[name](controller)
    controller.param.update(**on)
    assert not widgets[name].disabled
    assert not widgets["max_fraction"].disabled  # a setting that always applies


def test_every_view_fits_a_1000_pixel_window_and_shows_what_traders_read():
    for title, fields in columns.VIEWS.items():
        assert columns.least_width(fields) <= MAIN_AT_1000, title
        assert fields[0] == "symbol" and "priority_tier" not in fields
    shown = {field for fields in columns.VIEWS.values() for field in fields}
    assert {"rsi_14", "adx_14", "rel_volume", "roc_5", "roc_21", "market_cap",
            "avg_dollar_volume_20", "side", "entry", "stop", "target", "reward_risk"} <= shown


def test_numeric_columns_sort_descending_first_and_format_their_numbers(finished):
    table, views = finished.table, finished._columns
    assert list(views) == list(columns.VIEWS) and columns.DEFAULT_SORT == "tech_rating"
    assert table.name == columns.TABLE_NAME
    assert [c.field for c in table.columns] == list(columns.VIEWS["Overview"])
    assert table.autosize_mode == "none" and table.sizing_mode == "stretch_width"
    for title, shown in views.items():
        assert [column.field for column in shown] == list(columns.VIEWS[title])
        for column in shown:
            numeric = isinstance(column.formatter, (NumberFormatter, HTMLTemplateFormatter))
            assert column.default_sort == ("descending" if numeric else "ascending")
    formats = {c.field: c.formatter for shown in views.values() for c in shown}
    assert formats["market_cap"].format.startswith("$0,0") and formats["price"].format == "0,0.00"
    assert "%" in formats["change_pct"].template and "toFixed(2)" in formats["roc_21"].template


def test_choosing_a_view_swaps_the_table_columns(finished):
    finished._view_choice.value = "Trade plan"
    assert [c.field for c in finished.table.columns] == list(columns.VIEWS["Trade plan"])
    finished._view_choice.value = "Overview"
    assert [c.field for c in finished.table.columns] == list(columns.VIEWS["Overview"])


def test_a_sell_row_reads_as_a_short_plan(finished):
    data = pd.DataFrame(finished.controller.cds.data)
    sells = data[data["signal"].isin(["SELL", "STRONG_SELL"])].dropna(subset=["entry"])
    assert len(sells) and set(sells["side"]) == {"short"}
    assert (sells["stop"] > sells["entry"]).all() and (sells["target"] < sells["entry"]).all()
    assert (sells["risk_pct"] > 0).all() and (sells["reward_pct"] > 0).all()


def test_every_signal_cell_and_the_selected_row_are_readable():
    for signal in SIGNALS:
        assert contrast(SIGNAL_CELLS_BACKGROUND[signal], SIGNAL_CELLS_TEXT[signal]) >= 4.5, signal
    assert "#00603f" in columns.TABLE_CSS and contrast("#00603f", "#ffffff") >= 4.5


# --- filters, stats, hints --------------------------------------------------------------------

def test_filters_change_the_view_not_the_data(finished):
    dashboard = finished
    before = {name: list(values) for name, values in dashboard.controller.cds.data.items()}
    dashboard.param.update(signals=["BUY"], min_tech_rating=55, search=" ab ")
    assert dashboard._view.filter.args == {"signals": ["BUY"], "min_rating": 55.0,
                                           "search": " ab "}
    after = {name: list(values) for name, values in dashboard.controller.cds.data.items()}
    np.testing.assert_equal(after, before)  # NaN equals NaN here (feed_time, outside live)
    dashboard.param.update(signals=[], min_tech_rating=0, search="")
    assert dashboard._view.filter.args == columns.filter_args()


def test_filter_mask_keeps_what_the_browser_filter_keeps():
    frame = pd.DataFrame({"symbol": ["ABC", "XAB", "QQQ"], "signal": ["BUY", "BUY", "SELL"],
                          "tech_rating": [70.0, 65.0, 30.0]})
    assert columns.filter_mask(frame, columns.filter_args(["BUY"], 66)).tolist() == [
        True, False, False]
    assert columns.filter_mask(frame, columns.filter_args([], 0, "ab")).tolist() == [
        True, True, False]
    assert columns.filter_mask(frame, columns.filter_args()).all()


def test_stats_show_rows_shown_and_received_errors_and_labelled_signals(manager):
    controller = ScanController(manager=manager, symbols=150, error_rate=0.1)
    dashboard = Dashboard(controller)
    controller.run()
    text = dashboard._stats.text
    assert 'data-testid="processed">150<' in text
    assert f'data-testid="shown">{controller.rows}<' in text
    assert f'data-testid="rows">{controller.rows}<' in text
    assert f'data-testid="errors" class="errors">{controller.errors}<' in text
    assert controller.errors > 0 and controller.rows + controller.errors == 150
    for signal, label in (("STRONG_BUY", "strong buy"), ("HOLD", "hold")):
        assert f'data-testid="count-{signal}">{controller.signal_counts[signal]}</b> {label}' \
            in text
    dashboard.signals = ["HOLD"]
    assert f'data-testid="shown">{controller.signal_counts["HOLD"]}<' in dashboard._stats.text
    assert dashboard.shown() == controller.signal_counts["HOLD"] < controller.rows


def test_the_eta_is_blank_unless_a_scan_runs(manager):
    controller = ScanController(manager=manager, symbols=400, latency_ms=100, workers=4)
    dashboard = Dashboard(controller)
    assert 'data-testid="eta"></span>' in dashboard._stats.text  # idle: no "— s"
    controller.start()
    wait_until(lambda: controller._drain() or controller.eta, timeout=20, interval=0.02)
    assert f'data-testid="eta">{controller.eta:,.0f}</span> s' in dashboard._stats.text
    controller.stop()
    wait_until(lambda: controller._drain() or controller.status == "finished", timeout=20,
               interval=0.02)
    assert 'data-testid="eta"></span>' in dashboard._stats.text


def test_the_empty_table_says_what_to_do(finished):
    idle = Dashboard(ScanController())
    assert "press <b>Start</b>" in idle._hint.text and idle._hint.div.visible
    assert finished._hint.text == "" and not finished._hint.div.visible
    finished.search = "NO-SUCH-SYMBOL"
    assert "No row matches the table filter" in finished._hint.text


def test_stats_escape_what_comes_from_data():
    controller = ScanController()
    dashboard = Dashboard(controller)
    controller._apply([strong_buy("<i>X</i>", 1)])
    assert "&lt;i&gt;X&lt;/i&gt;" in dashboard._stats.text and "<i>" not in dashboard._stats.text


# --- notices ----------------------------------------------------------------------------------

def test_strong_buy_toasts_come_at_most_one_per_update_and_interval(manager, toasts):
    controller = ScanController(manager=manager)
    Dashboard(controller)
    controller._apply([strong_buy("AAA", 1), strong_buy("BBB", 2)])
    controller._apply([strong_buy("CCC", 3)])
    controller._apply([strong_buy("DDD", 4)])
    assert toasts == [("success", "STRONG_BUY: AAA, BBB")]
    final = make_message("final", {"status": "completed", "reason": None, "elapsed": 1.0,
                                   "rate": 4.0, "errors": 0, "processed": 4, "total": 4},
                         scan_id="scan_t", seq=5)
    controller._apply([final])
    assert toasts[1:] == [("success", "STRONG_BUY: CCC, DDD")]
    assert TOAST_INTERVAL >= 1


def test_one_toast_when_errors_start_and_the_errors_tab_lists_them(manager, toasts):
    controller = ScanController(manager=manager)
    dashboard = Dashboard(controller)
    controller._apply([error("AAA", 1), error("BBB", 2)])
    controller._apply([error("CCC", 3)])
    assert toasts == [("warning", "2 symbols failed so far: see the Errors tab")]
    assert list(controller.error_rows.data["symbol"]) == ["AAA", "BBB", "CCC"]
    assert controller.error_rows.data["message"][0] == "<b>gone</b>"  # text: a StringFormatter
    errors = dashboard._tabs[-1].object
    assert dashboard._tabs._names[-1] == "Errors" and errors.source is controller.error_rows


def test_notebook_notices_show_in_the_layout_escaped_and_expire(monkeypatch):
    dashboard = Dashboard(ScanController())
    notices = dashboard.notices
    notices.notify("error", "bad <b>value</b>", duration=0)
    assert "bad &lt;b&gt;value&lt;/b&gt;" in notices.strip.text and notices.strip.div.visible
    assert notices.strip.pane in dashboard.main()
    with pytest.raises(ValueError, match="kind must be one of"):
        notices.notify("loud", "x")
    notices.expire()
    assert notices.strip.text == "" and not notices.strip.div.visible


# --- the chart, buttons, settings -------------------------------------------------------------

def test_clicking_a_row_shows_its_chart_with_the_plan_and_six_months(finished):
    dashboard = finished
    index = 3
    symbol = dashboard.controller.cds.data["symbol"][index]
    dashboard.controller.cds.selected.indices = [index]
    row = dashboard.controller.row(symbol)
    assert dashboard._symbol_card.visible and html.escape(symbol) in dashboard._chart_title.text
    chart = dashboard._chart
    candles = chart.candles.data
    assert len(candles["close"]) == 504
    for name in ("sma_50", "sma_200", "bb_upper", "rsi_14", "macd", "macd_signal", "macd_hist"):
        assert len(candles[name]) == 504
    for name in ("entry", "stop", "target"):
        assert chart.plan.spans[name].location == pytest.approx(row[name])
        assert chart.plan.spans[name].visible and name in chart.plan.labels[name].text
    last = pd.Timestamp(candles["date"][-1])
    start = pd.Timestamp(chart.x_range.start, unit="ms")
    assert last - WINDOW - pd.Timedelta(days=3) <= start <= last - WINDOW + pd.Timedelta(days=7)
    shown = [i for i, d in enumerate(pd.DatetimeIndex(candles["date"])) if d >= start]
    assert chart.y_range.start < min(candles["low"][i] for i in shown)
    assert chart.y_range.end > max(candles["high"][i] for i in shown)
    for pane in (child[0] for child in chart.model.children):
        tools = [type(tool).__name__ for tool in pane.tools]
        assert "HoverTool" in tools and "CrosshairTool" in tools
        hover = next(tool for tool in pane.tools if type(tool).__name__ == "HoverTool")
        assert {"open", "high", "low", "close", "RSI 14", "MACD / signal"} <= {
            label for label, _ in hover.tooltips}


def test_a_row_without_a_plan_hides_the_plan_lines_and_a_row_with_one_shows_them(finished):
    plan = finished._chart.plan
    plan.show({"entry": None, "stop": float("nan"), "side": "long"})
    assert not any(span.visible for span in plan.spans.values())
    assert all(label.text == "" and not label.visible for label in plan.labels.values())
    plan.show({"entry": 10.0, "stop": 9.0, "target": 12.5, "side": "long"})
    assert [label.text for label in plan.labels.values()] == [
        "entry 10.00 (long)", "stop 9.00", "target 12.50"]
    assert [span.location for span in plan.spans.values()] == [10.0, 9.0, 12.5]


def test_the_crosshair_is_one_vertical_line_through_every_pane(finished):
    panes = [child[0] for child in finished._chart.model.children]
    assert len(panes) == 4 and all(pane.x_range is panes[0].x_range for pane in panes)
    overlays = [next(tool for tool in pane.tools if type(tool).__name__ == "CrosshairTool").overlay
                for pane in panes]
    vertical = {span.id for overlay in overlays for span in overlay if span.dimension == "height"}
    assert len(vertical) == 1


def test_buttons_follow_the_status(manager):
    controller = ScanController(manager=manager, symbols=400, latency_ms=100, workers=4)
    dashboard = Dashboard(controller)
    assert not dashboard._start.disabled and dashboard._stop.disabled
    dashboard._start.clicks += 1
    assert controller.status == "running" and dashboard._start.disabled
    dashboard._pause.clicks += 1
    assert controller.status == "paused" and dashboard._pause.label == "Resume"
    dashboard._pause.clicks += 1
    assert controller.status == "running" and dashboard._pause.label == "Pause"
    dashboard._stop.clicks += 1
    assert controller.status == "stopping" and dashboard._stop.disabled

    def ended():
        controller._drain()
        return controller.status == "finished"

    wait_until(ended, timeout=20, interval=0.02)
    assert not dashboard._start.disabled and "stopped" in dashboard._stats.text


def test_a_refused_start_is_a_notification_naming_the_field(manager, toasts):
    controller = ScanController(manager=manager, filter="close >")
    dashboard = Dashboard(controller)
    dashboard._start.clicks += 1
    assert controller.status == "idle"
    assert toasts and toasts[0][0] == "error" and "filter" in toasts[0][1]


def test_a_strategy_slider_rescores_the_table_and_the_stats(finished, toasts):
    controller = finished.controller
    holds = controller.signal_counts["HOLD"]
    slider = finished.settings.widgets["buy_threshold"]
    with param.edit_constant(slider):  # what the browser sets when the slider is released
        slider.value_throttled = 60.0
    assert controller.buy_threshold == 60.0 and controller.signal_counts["HOLD"] < holds
    assert f'data-testid="count-HOLD">{controller.signal_counts["HOLD"]:,}<' in \
        finished._stats.text
    with param.edit_constant(slider):
        slider.value_throttled = 95.0
    assert toasts and toasts[-1][0] == "error" and "buy_threshold" in toasts[-1][1]


def test_url_settings_apply_one_by_one_and_bad_ones_are_reported(toasts):
    controller = ScanController(max_signals=5)
    dashboard = Dashboard(controller)
    dashboard._on_url_error({"symbols": 2000, "error_rate": 7, "max_signals": "null"})
    assert controller.symbols == 2000 and controller.max_signals is None
    assert controller.error_rate == 0
    assert len(toasts) == 1 and "error_rate" in toasts[0][1]
    dashboard._on_url_error({"error_rate": 7})  # the browser's URL again: no second toast
    assert len(toasts) == 1


def test_the_watch_list_names_scans_by_their_settings_and_watches_the_chosen_one(manager):
    scan_id = manager.start_stream({"symbols": 300, "latency_ms": 20, "workers": 4})
    controller = ScanController(manager=manager)
    dashboard = Dashboard(controller)
    dashboard._refresh_watch_list()
    label = next(label for label, value in dashboard._watch.options.items() if value == scan_id)
    assert label.startswith(scan_id[:13]) and "300 synthetic" in label and "thread×4" in label
    dashboard._watch.value = scan_id
    assert controller.scan_id == scan_id and controller.status in ("running", "finished")
    assert (controller.symbols, controller.latency_ms, controller.workers) == (300, 20.0, 4)
    assert dashboard.settings.widgets["symbols"].value == 300  # the sidebar follows
    manager.stop_stream(scan_id)


def test_scan_label_names_files_and_progress():
    label = scan_label({"scan_id": "scan_0123456789abcdef", "config": {
        "source": "files", "path": "/data/prices", "executor": "process", "workers": None},
        "progress": {"processed": 5, "total": 20}})
    assert label == "scan_01234567 · files in /data/prices · process, 25%"


def test_a_served_page_takes_its_settings_from_the_url(manager):
    port, controllers = free_port(), []

    def app():
        controller = ScanController(manager=manager)
        controllers.append(controller)
        return Dashboard(controller)

    server = pn.serve({"app": app}, port=port, address="127.0.0.1", threaded=True, show=False,
                      verbose=False)
    try:
        def page():
            url = (f"http://127.0.0.1:{port}/app?symbols=2000&latency_ms=20&max_signals=10"
                   "&stop_atr=1.5")
            return urllib.request.urlopen(url, timeout=10).read()

        wait_until(lambda: _ok(page), timeout=10)
        controller = controllers[-1]
        assert (controller.symbols, controller.latency_ms, controller.max_signals,
                controller.stop_atr) == (2000, 20.0, 10, 1.5)
    finally:
        server.stop()
        server.join(timeout=10)


def _ok(fetch) -> bool:
    try:
        return bool(fetch())
    except OSError:
        return False


# --- the CSV ----------------------------------------------------------------------------------

def test_the_csv_holds_the_filtered_rows_a_date_first_and_rounded_figures(finished):
    dashboard = finished
    everything = pd.read_csv(dashboard._csv())
    assert len(everything) == 120 and set(everything["symbol"]) == set(
        dashboard.controller.results["symbol"])
    assert everything.columns[0] == "date"
    assert pd.to_datetime(everything["date"], format="%Y-%m-%d").notna().all()
    assert "total_processed" not in everything and "position" not in everything
    text = dashboard._csv().getvalue()
    for name in ("close", "tech_rating", "entry"):
        decimals = everything[name].astype(str).str.partition(".")[2].str.len()
        assert decimals.max() <= DIGITS[name], name
    assert "411.7956848144531" not in text
    dashboard.signals = ["HOLD"]
    holds = pd.read_csv(dashboard._csv())
    assert len(holds) == dashboard.controller.signal_counts["HOLD"]
    assert set(holds["signal"]) == {"HOLD"}


def test_signal_colours_cover_every_signal():
    data = charts.signal_counts_data({"BUY": 3})
    assert data["count"] == [0, 3, 0, 0, 0] and len(set(data["color"])) == 5


# --- the notebook layout ----------------------------------------------------------------------

def _browser_patch(*events: dict) -> dict:
    """A PATCH-DOC message as Panel's notebook CommManager sends it from the browser."""
    return {"header": {"msgid": "m1", "msgtype": "PATCH-DOC"}, "metadata": {},
            "content": {"events": list(events)}, "_buffers": {}}


@pytest.fixture
def notebook_root(finished):
    """The finished dashboard's notebook layout rendered for a comm: (dashboard, send)."""
    from bokeh.document import Document
    from panel.io.state import state
    from panel.models.comm_manager import CommManager

    layout, doc = finished.layout(), Document()
    comm = state._comm_manager.get_server_comm()
    root = layout.get_root(doc, comm)
    doc.add_root(root)  # as Panel's notebook rendering does
    ref = root.ref["id"]
    manager = CommManager(comm_id=comm.id, plot_id=ref)
    return finished, lambda msg: layout._on_msg(ref, manager, msg)


def test_the_notebook_layout_wraps_rather_than_spill_past_the_cell(finished):
    layout = finished.layout()
    assert layout.styles["flex-wrap"] == "wrap"
    sidebar, main = layout.objects
    assert sidebar.width == SIDEBAR_WIDTH
    assert main.min_width >= max(columns.least_width(f) for f in columns.VIEWS.values())


def test_the_notebook_layout_drops_the_browsers_echo_of_streamed_rows(notebook_root):
    dashboard, send = notebook_root
    cds = dashboard.controller.cds
    rows = len(cds.data["symbol"])
    echo = {"kind": "ColumnsStreamed", "model": {"id": cds.id}, "attr": "data", "rollover": None,
            "data": {"type": "map", "entries": [[name, [cds.data[name][0]]]
                                                for name in cds.data]}}
    click = {"kind": "ModelChanged", "model": {"id": cds.selected.id}, "attr": "indices",
             "new": [0]}
    send(_browser_patch(echo, click))
    assert len(cds.data["symbol"]) == rows == 120
    assert cds.selected.indices == [0] and dashboard._symbol == cds.data["symbol"][0]


def test_the_notebook_layout_applies_browser_messages_under_the_document_lock(notebook_root):
    dashboard, send = notebook_root
    selected = dashboard.controller.cds.selected
    click = {"kind": "ModelChanged", "model": {"id": selected.id}, "attr": "indices", "new": [1]}
    with dashboard.controller.document_lock:
        worker = threading.Thread(target=send, args=(_browser_patch(click),))
        worker.start()
        worker.join(0.3)
        assert worker.is_alive() and selected.indices == []
    worker.join(5)
    assert not worker.is_alive() and selected.indices == [1]
