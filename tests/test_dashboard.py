"""Dashboard (no browser): widgets from params, filters, stats, toasts, charts, URL, CSV."""

from __future__ import annotations

import threading
import urllib.request

import pandas as pd
import panel as pn
import pytest
from helpers import free_port, wait_until

from technic_panel.config import ScanConfig
from technic_panel.engine.scoring import Strategy
from technic_panel.streaming.jsonsafe import make_message
from technic_panel.ui import charts
from technic_panel.ui.controller import ScanController
from technic_panel.ui.dashboard import TOAST_INTERVAL, Dashboard
from technic_panel.ui.notebook import NotebookLayout

pytestmark = pytest.mark.usefixtures("panel_state")


@pytest.fixture
def manager(dashboard_manager):
    return dashboard_manager




@pytest.fixture
def toasts(monkeypatch):
    """Record the dashboard's notifications as (kind, message)."""
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(Dashboard, "_notify",
                        staticmethod(lambda kind, text, duration=4000: sent.append((kind, text))))
    return sent


@pytest.fixture
def finished(manager):
    """A dashboard whose controller has run a 120-symbol scan."""
    controller = ScanController(manager=manager, symbols=120)
    dashboard = Dashboard(controller)
    controller.run()
    return dashboard


def widget_names(objects) -> set[str]:
    names = set()
    for obj in objects:
        for param_pane in obj.select(pn.Param):
            names |= set(param_pane._widgets)
    return names


def strong_buy(symbol: str, seq: int) -> dict:
    return make_message("result", {"symbol": symbol, "signal": "STRONG_BUY", "tech_rating": 90.0,
                                   "alpha_score": 0.9}, scan_id="scan_t", seq=seq)


def test_view_is_a_layout_in_notebooks_and_a_template_with_a_theme_toggle():
    dashboard = Dashboard(ScanController())
    assert isinstance(pn.panel(dashboard), NotebookLayout)  # what a notebook cell displays
    template = dashboard.template()
    assert isinstance(template, pn.template.FastListTemplate) and template.theme_toggle


def test_the_notebook_layout_has_no_collapsed_card_but_the_served_sidebar_does():
    dashboard = Dashboard(ScanController())
    layout_cards = dashboard.layout().select(pn.Card)
    assert layout_cards and not any(card.collapsed for card in layout_cards)
    assert any(card.collapsed for card in pn.Column(*dashboard.sidebar()).select(pn.Card))


def test_the_sidebar_has_a_widget_for_every_setting_and_strategy_param():
    names = widget_names(Dashboard(ScanController()).sidebar())
    assert set(ScanConfig.setting_names()) | {"update_period"} <= names
    assert {name for name in Strategy.param if name != "name"} <= names


def test_filters_change_the_view_not_the_data(finished):
    dashboard = finished
    before = {name: list(values) for name, values in dashboard.controller.cds.data.items()}
    dashboard.param.update(signals=["BUY"], tiers=["high"], min_tech_rating=55, search=" ab ")
    assert dashboard._view.filter.args == {"signals": ["BUY"], "tiers": ["high"],
                                           "min_rating": 55.0, "search": " ab "}
    after = {name: list(values) for name, values in dashboard.controller.cds.data.items()}
    assert after == before
    dashboard.param.update(signals=[], tiers=[], min_tech_rating=0, search="")
    assert dashboard._view.filter.args == charts.filter_args()


def test_filter_mask_keeps_what_the_browser_filter_keeps():
    frame = pd.DataFrame({"symbol": ["ABC", "XAB", "QQQ"], "signal": ["BUY", "BUY", "SELL"],
                          "priority_tier": ["high", "low", "high"],
                          "tech_rating": [70.0, 65.0, 30.0]})
    keep = charts.filter_mask(frame, charts.filter_args(["BUY"], [], 66, ""))
    assert keep.tolist() == [True, False, False]
    keep = charts.filter_mask(frame, charts.filter_args([], ["high"], 0, "ab"))
    assert keep.tolist() == [True, False, False]
    assert charts.filter_mask(frame, charts.filter_args()).all()


def test_the_csv_download_holds_the_filtered_results(finished):
    dashboard = finished
    everything = pd.read_csv(dashboard._csv())
    assert len(everything) == 120 and set(everything["symbol"]) == set(
        dashboard.controller.results["symbol"])
    dashboard.signals = ["HOLD"]
    holds = pd.read_csv(dashboard._csv())
    assert len(holds) == dashboard.controller.signal_counts["HOLD"]
    assert set(holds["signal"]) == {"HOLD"}


def test_stats_show_the_controller_outputs(finished):
    html = finished._stats.object
    assert 'data-testid="processed">120<' in html and 'data-testid="total">120<' in html
    assert 'data-testid="rows">120<' in html
    assert 'data-testid="status">finished · completed<' in html
    assert f'data-testid="best">{finished.controller.best_symbol}<' in html
    assert finished._progress.value == finished._progress.max == 120


def test_clicking_a_row_opens_its_candlestick_chart(finished):
    dashboard = finished
    symbol = dashboard.controller.cds.data["symbol"][3]
    dashboard.controller.cds.selected.indices = [3]
    assert dashboard._symbol_card.visible and symbol in dashboard._symbol_card.title
    candles = dashboard._candles.data
    assert len(candles["close"]) == 504
    for name in ("sma_50", "sma_200", "bb_upper", "bb_lower", "rsi_14", "volume"):
        assert len(candles[name]) == 504


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
    assert not dashboard._start.disabled and "stopped" in dashboard._stats.object


def test_a_refused_start_is_a_notification_naming_the_field(manager, toasts):
    controller = ScanController(manager=manager, filter="close >")
    dashboard = Dashboard(controller)
    dashboard._start.clicks += 1
    assert controller.status == "idle"
    assert toasts and toasts[0][0] == "error" and "filter" in toasts[0][1]


def test_url_settings_apply_one_by_one_and_bad_ones_are_reported(toasts):
    controller = ScanController(max_signals=5)
    dashboard = Dashboard(controller)
    dashboard._on_url_error({"symbols": 2000, "error_rate": 7, "max_signals": "null"})
    assert controller.symbols == 2000 and controller.max_signals is None
    assert controller.error_rate == 0
    assert len(toasts) == 1 and "error_rate" in toasts[0][1]
    dashboard._on_url_error({"error_rate": 7})  # the browser's URL again: no second toast
    assert len(toasts) == 1


def test_the_watch_list_offers_running_scans_and_watches_the_chosen_one(manager):
    scan_id = manager.start_stream({"symbols": 300, "latency_ms": 20, "workers": 4})
    controller = ScanController(manager=manager)
    dashboard = Dashboard(controller)
    dashboard._refresh_watch_list()
    assert scan_id in dashboard._watch.options
    dashboard._watch.value = scan_id
    assert controller.scan_id == scan_id and controller.status in ("running", "finished")
    manager.stop_stream(scan_id)


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
            url = f"http://127.0.0.1:{port}/app?symbols=2000&latency_ms=20&max_signals=10"
            return urllib.request.urlopen(url, timeout=10).read()

        wait_until(lambda: _ok(page), timeout=10)
        controller = controllers[-1]
        assert (controller.symbols, controller.latency_ms, controller.max_signals) == (
            2000, 20.0, 10)
    finally:
        server.stop()
        server.join(timeout=10)


def _ok(fetch) -> bool:
    try:
        return bool(fetch())
    except OSError:
        return False


def test_signal_colours_cover_every_signal():
    data = charts.signal_counts_data({"BUY": 3})
    assert data["count"] == [0, 3, 0, 0, 0] and len(set(data["color"])) == 5


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
