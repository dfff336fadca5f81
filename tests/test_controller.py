"""ScanController: settings, run(), the drain into the ColumnDataSource, and clean-up."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request

import panel as pn
import pytest
from bokeh.document import Document
from bokeh.document.events import ColumnsPatchedEvent, ColumnsStreamedEvent
from helpers import bars_frame, free_port, wait_until

from technic_panel.config import ConfigError, ScanConfig, strategy_for
from technic_panel.data import SyntheticSource
from technic_panel.data.store import BarStore
from technic_panel.data.universes import index_universe
from technic_panel.engine.scanner import Scanner
from technic_panel.engine.scoring import STRATEGY_SETTINGS, Strategy
from technic_panel.streaming.jsonsafe import make_message
from technic_panel.streaming.manager import StreamManager, UnknownScan
from technic_panel.ui.controller import TABLE_COLUMNS, ScanController

SLOW = {"symbols": 400, "latency_ms": 100, "workers": 4}
"""About 10 s if left alone: long enough to pause, resume and stop it."""

pytestmark = pytest.mark.usefixtures("panel_state")


@pytest.fixture
def manager(dashboard_manager):
    return dashboard_manager




def drain_to_end(controller: ScanController, timeout: float = 20.0) -> None:
    """Call the periodic callback's function until the controller lets go of its scan."""
    def ended() -> bool:
        controller._drain()
        return controller._subscription is None

    wait_until(ended, timeout=timeout, interval=0.02)


def message(type_: str, seq: int, **data) -> dict:
    return make_message(type_, data, scan_id="scan_test", seq=seq)


def result(symbol: str, seq: int, signal: str = "BUY", rating: float = 70.0,
           type_: str = "result") -> dict:
    return message(type_, seq, symbol=symbol, signal=signal, tech_rating=rating,
                   alpha_score=0.5, sector="Energy", price=10.0, total_processed=seq,
                   total_remaining=10 - seq)


# --- settings -------------------------------------------------------------------------------

def test_every_scan_setting_is_a_parameter_with_the_config_default():
    controller = ScanController()
    for name in ScanConfig.setting_names():
        assert controller.param[name].default == ScanConfig.param[name].default
    assert controller.config.to_dict() == ScanConfig().to_dict()
    assert controller.param.update_period.bounds == (20, 5000)
    for name in STRATEGY_SETTINGS:  # the strategy is settings too, labelled, sliders that fit
        parameter = controller.param[name]
        assert parameter.label == Strategy.param[name].label and parameter.softbounds
        assert parameter.softbounds[0] <= parameter.default <= parameter.softbounds[1]


@pytest.mark.parametrize("name, value", [
    ("symbols", 0), ("latency_ms", -1.0), ("max_fraction", 1.5), ("executor", "gpu"),
    ("update_period", 5), ("weight_trend", -1.0),
])
def test_a_bad_value_raises_value_error_naming_the_field(name, value):
    with pytest.raises(ValueError, match=name):
        ScanController(**{name: value})
    controller = ScanController()
    with pytest.raises(ValueError, match=name):
        setattr(controller, name, value)


def test_outputs_are_read_only():
    controller = ScanController()
    new = {"status": "running", "processed": 5, "rows": 5, "signal_counts": {},
           "best_symbol": "AAA"}
    for name, value in new.items():
        with pytest.raises(TypeError, match="Constant"):
            setattr(controller, name, value)


def test_rules_across_settings_are_checked_before_a_scan_starts(manager):
    controller = ScanController(manager=manager, filter="rsi_14 <")
    with pytest.raises(ConfigError) as error:
        controller.start()
    assert error.value.field == "filter"
    assert controller.status == "idle" and manager.list() == []


# --- run() ----------------------------------------------------------------------------------

def test_run_returns_every_result_and_matches_a_direct_scanner_run(manager):
    controller = ScanController(manager=manager, symbols=150, seed=7)
    frame = controller.run()
    direct = []
    Scanner(SyntheticSource(150, seed=7)).run(lambda event: direct.append(event.data))
    expected = {row["symbol"]: row for row in direct}
    assert len(frame) == len(expected) == 150 and frame["symbol"].is_unique
    for row in frame.to_dict("records"):
        reference = expected[row["symbol"]]
        for name in ("signal", "tech_rating", "alpha_score", "entry", "stop", "target"):
            assert row[name] == reference[name], (row["symbol"], name)
    assert controller.status == "finished" and controller.outcome == "completed"
    assert controller.processed == controller.total == controller.rows == 150
    assert sum(controller.signal_counts.values()) == 150
    assert controller.best_symbol == frame.loc[frame["tech_rating"].idxmax(), "symbol"]
    assert controller.mean_rating == pytest.approx(frame["tech_rating"].mean())
    assert list(controller.cds.data["symbol"]) == list(frame["symbol"])
    assert controller.timeline.data["processed"][-1] == 150


def test_run_reports_symbol_errors_and_early_termination(manager):
    controller = ScanController(manager=manager, symbols=300, error_rate=0.2, max_fraction=0.5)
    frame = controller.run()
    assert controller.outcome == "terminated" and controller.reason == "max_fraction"
    assert controller.errors > 0
    assert len(frame) == controller.rows == controller.processed - controller.errors


def test_run_refuses_while_a_scan_is_active(manager):
    controller = ScanController(manager=manager, **SLOW)
    controller.start()
    with pytest.raises(RuntimeError, match="already shows scan"):
        controller.run()
    controller.stop()
    drain_to_end(controller)


def test_an_interrupted_run_stops_its_scan(manager, monkeypatch):
    controller = ScanController(manager=manager, **SLOW)

    def interrupt(messages):
        raise KeyboardInterrupt

    monkeypatch.setattr(controller, "_apply", interrupt)
    with pytest.raises(KeyboardInterrupt):
        controller.run()
    record = manager.get(controller.scan_id)
    wait_until(lambda: not record.running, timeout=10)
    assert record.status == "stopped" and controller._subscription is None


def test_results_is_an_empty_frame_with_the_table_columns_before_any_scan():
    frame = ScanController().results
    assert frame.empty and list(frame.columns) == list(TABLE_COLUMNS)


# --- the drain ------------------------------------------------------------------------------

def test_drain_streams_new_rows_and_patches_updated_ones():
    controller = ScanController()
    events = []
    doc = Document()
    doc.add_root(controller.cds)
    doc.on_change(lambda event: events.append(type(event)))
    controller._apply([result("AAA", 1, "BUY", 70.0), result("BBB", 2, "HOLD", 50.0)])
    controller._apply([result("AAA", 3, "STRONG_BUY", 90.0, type_="update"),
                       result("CCC", 4, "SELL", 30.0)])
    assert events == [ColumnsStreamedEvent, ColumnsPatchedEvent, ColumnsStreamedEvent]
    data = controller.cds.data
    assert list(data["symbol"]) == ["AAA", "BBB", "CCC"]
    assert list(data["signal"]) == ["STRONG_BUY", "HOLD", "SELL"]
    assert data["tech_rating"][0] == 90.0
    assert controller.rows == 3 and len(controller.results) == 3
    assert controller.signal_counts == {"STRONG_BUY": 1, "BUY": 0, "HOLD": 1, "SELL": 1,
                                        "STRONG_SELL": 0}
    assert controller.strong_buys == ["AAA"] and controller.best_symbol == "AAA"
    assert controller.last_seq == 4


def test_an_update_in_the_same_batch_as_its_result_makes_one_row():
    controller = ScanController()
    controller._apply([result("AAA", 1, "BUY", 70.0),
                       result("AAA", 2, "SELL", 35.0, type_="update")])
    assert list(controller.cds.data["signal"]) == ["SELL"] and controller.rows == 1
    assert controller.strong_buys == [] and controller.mean_rating == 35.0


def test_a_lowered_best_rating_hands_best_symbol_to_the_next():
    controller = ScanController()
    controller._apply([result("AAA", 1, rating=90.0), result("BBB", 2, rating=80.0)])
    controller._apply([result("AAA", 3, rating=60.0, type_="update")])
    assert controller.best_symbol == "BBB"


def test_drain_never_blocks_and_ends_with_the_final(manager):
    controller = ScanController(manager=manager, symbols=200, update_period=50)
    controller.start()
    callback = controller._callback
    assert isinstance(callback, pn.io.PeriodicCallback) and callback.period == 50
    started = time.perf_counter()
    controller._drain()
    assert time.perf_counter() - started < 0.5
    drain_to_end(controller)
    assert controller.status == "finished"
    assert controller.rows == controller.processed == len(controller.cds.data["symbol"]) == 200
    assert controller._callback is None and not callback.running
    assert manager.get(controller.scan_id).streamer.subscriber_count == 0
    controller._drain()  # a late tick after the end is harmless


def test_update_period_changes_reach_the_running_callback(manager):
    controller = ScanController(manager=manager, **SLOW)
    controller.start()
    controller.update_period = 250
    assert controller._callback.period == 250
    controller.stop()
    drain_to_end(controller)


# --- start / stop / pause / resume ----------------------------------------------------------

def test_start_stop_pause_resume_are_safe_to_call_twice(manager):
    controller = ScanController(manager=manager, **SLOW)
    controller.stop(), controller.pause(), controller.resume()  # idle: no-ops
    assert controller.status == "idle"
    scan_id = controller.start()
    assert controller.start() == scan_id and len(manager.list()) == 1
    controller.pause(), controller.pause()
    assert controller.status == "paused" and manager.get(scan_id).paused
    controller.resume(), controller.resume()
    assert controller.status == "running" and not manager.get(scan_id).paused
    wait_until(lambda: controller._drain() or controller.processed > 0, timeout=20,
               interval=0.02)
    controller.stop(), controller.stop()
    assert controller.status == "stopping"
    drain_to_end(controller)
    assert (controller.status, controller.outcome, controller.reason) == (
        "finished", "stopped", "manual")
    assert controller.rows == controller.processed < controller.total
    controller.stop(), controller.pause(), controller.resume()
    assert controller.status == "finished"


def test_a_second_start_after_the_end_begins_a_fresh_scan(manager):
    controller = ScanController(manager=manager, symbols=60)
    controller.start()
    drain_to_end(controller)
    first = controller.scan_id
    controller.symbols = 40
    assert controller.start() != first
    assert controller.rows == 0 and len(controller.cds.data["symbol"]) == 0
    drain_to_end(controller)
    assert controller.rows == 40 and controller.scan_config.symbols == 40


def test_the_strategy_settings_score_the_scan(manager):
    strict = ScanController(manager=manager, symbols=100, strong_buy_threshold=99.0)
    strict.run()
    assert strict.signal_counts["STRONG_BUY"] == 0
    assert manager.get(strict.scan_id).config.strong_buy_threshold == 99.0


def test_a_strategy_change_rescores_the_rows_received_at_once(manager):
    controller = ScanController(manager=manager, symbols=400)
    controller.run()
    before = controller.results.set_index("symbol")
    controller.param.update(strong_buy_threshold=76.0, stop_atr=1.0)
    after = controller.results.set_index("symbol")
    assert controller.rescored == 1 and controller.strategy_error is None
    direct = {}
    Scanner(SyntheticSource(400, seed=42), strategy_for(controller.config)).run(
        lambda event: direct.__setitem__(event.symbol, event.data))
    for symbol, row in after.iterrows():  # as if the bars were scored again, no rescan
        for name in ("signal", "tech_rating", "stop", "reward_risk"):
            assert row[name] == pytest.approx(direct[symbol][name]), (symbol, name)
    assert (after["stop"] != before["stop"]).any()
    counts = after["signal"].value_counts().to_dict()
    assert controller.signal_counts == {s: counts.get(s, 0) for s in controller.signal_counts}
    shown = dict(zip(controller.cds.data["symbol"], controller.cds.data["signal"], strict=True))
    assert shown == after["signal"].to_dict()


def test_rows_arriving_after_a_strategy_change_are_rescored_too(manager):
    controller = ScanController(manager=manager, **SLOW)
    controller.start()
    wait_until(lambda: controller._drain() or controller.rows >= 5, timeout=20, interval=0.02)
    controller.stop_atr = 1.0
    drain_to_end(controller)
    frame = controller.results
    plan = frame.dropna(subset=["entry"])
    risk = (plan["entry"] - plan["stop"]).abs() / plan["atr_14"]
    assert len(plan) > 5 and risk.round(6).max() <= 1.0  # every row, old and new, at 1 ATR
    assert manager.get(controller.scan_id).config.stop_atr == 2.0  # the scan ran unchanged


def test_a_strategy_the_rules_refuse_is_reported_and_changes_nothing(manager):
    controller = ScanController(manager=manager, symbols=60)
    controller.run()
    signals = list(controller.cds.data["signal"])
    controller.buy_threshold = 90.0  # above strong_buy_threshold
    assert "buy_threshold" in controller.strategy_error and controller.rescored == 0
    assert list(controller.cds.data["signal"]) == signals
    controller.buy_threshold = 72.0
    assert controller.strategy_error is None and controller.rescored == 1


def test_failed_symbols_stream_into_error_rows(manager):
    controller = ScanController(manager=manager, symbols=200, error_rate=0.2)
    controller.run()
    errors = controller.error_rows.data
    assert 0 < controller.errors == len(errors["symbol"]) == len(set(errors["symbol"]))
    assert set(errors["symbol"]).isdisjoint(controller.cds.data["symbol"])
    assert all("error_rate=0.2" in message for message in errors["message"])
    assert set(errors["error"]) == {"data"}
    assert controller.rows + controller.errors == controller.processed == 200


def test_a_scan_level_error_has_no_symbol_and_a_local_notice_is_no_error():
    controller = ScanController()
    notice = make_message("error", {"code": "behind_window", "message": "late"},
                          scan_id="scan_test", seq=2)
    notice["metadata"]["local"] = True
    controller._apply([message("error", 1, error="scan", message="source gone"), notice])
    assert controller.errors == 1
    assert controller.error_rows.data == {"symbol": [""], "error": ["scan"],
                                          "message": ["source gone"]}


def test_the_eta_stands_still_while_paused(manager):
    controller = ScanController(manager=manager, **SLOW)
    controller.start()
    wait_until(lambda: controller._drain() or controller.processed >= 8, timeout=20,
               interval=0.02)
    controller.pause()
    time.sleep(0.5)  # work in flight arrives
    controller._drain()
    frozen = (controller.processed, controller.rate, controller.eta)
    time.sleep(1.0)
    controller._drain()
    controller._apply([message("progress", controller.last_seq + 1,
                               processed=controller.processed, total=controller.total)])
    assert controller.processed == frozen[0]  # 1 s paused: the pace has not moved
    assert (controller.rate, controller.eta) == pytest.approx(frozen[1:], rel=1e-4)
    controller.resume()
    controller.stop()
    drain_to_end(controller)


def test_rows_never_run_ahead_of_processed():
    controller = ScanController()
    controller._apply([message("progress", 1, processed=0, total=10),
                       make_message("result", {"symbol": "AAA", "signal": "BUY",
                                               "tech_rating": 70.0, "alpha_score": 0.5},
                                    scan_id="scan_test", seq=2)])
    assert controller.rows == 1 <= controller.processed


def test_the_csv_dates_are_the_days_the_rows_are_as_of():
    controller = ScanController()
    controller._apply([result("AAA", 1),
                       make_message("update", {"symbol": "AAA", "signal": "BUY",
                                               "tech_rating": 70.0, "alpha_score": 0.5,
                                               "bar_time": "2026-03-02T15:30:00.000Z"},
                                    scan_id="scan_test", seq=2),
                       result("BBB", 3)])
    aaa, bbb = controller.result_dates(["AAA", "BBB"])
    assert aaa == "2026-03-02" and len(bbb) == 10 and bbb.count("-") == 2


# --- watch ----------------------------------------------------------------------------------

def test_watch_replays_and_follows_a_scan_started_elsewhere(manager):
    scan_id = manager.start_stream({"symbols": 300, "latency_ms": 5, "workers": 4})
    controller = ScanController(manager=manager)
    assert [scan["scan_id"] for scan in controller.active_scans()] == [scan_id]
    controller.watch(scan_id)
    controller.watch(scan_id)  # twice: still one subscription
    assert controller.status == "running" and controller.scan_id == scan_id
    assert manager.get(scan_id).streamer.subscriber_count == 1
    drain_to_end(controller)
    assert controller.rows == controller.processed == 300
    assert controller.scan_config.symbols == 300


def test_watching_a_scan_shows_its_settings(manager):
    scan_id = manager.start_stream({"symbols": 250, "latency_ms": 5, "workers": 3,
                                    "stop_atr": 1.5, "max_signals": 40})
    controller = ScanController(manager=manager)
    controller.watch(scan_id)
    assert (controller.symbols, controller.latency_ms, controller.workers, controller.stop_atr,
            controller.max_signals) == (250, 5.0, 3, 1.5, 40)
    drain_to_end(controller)
    assert controller.rescored == 0 or controller.strategy_error is None


def test_watch_of_an_unknown_scan_raises_and_changes_nothing(manager):
    controller = ScanController(manager=manager)
    with pytest.raises(UnknownScan):
        controller.watch("scan_nope")
    assert controller.status == "idle"


# --- session clean-up -----------------------------------------------------------------------

def test_a_destroyed_session_stops_its_own_scan_and_unhooks(manager):
    controller = ScanController(manager=manager, **SLOW)
    controller.start()
    callback = controller._callback
    record = manager.get(controller.scan_id)
    controller._on_session_destroyed(None)
    assert controller._callback is None and controller._subscription is None
    assert not callback.running
    wait_until(lambda: not record.running, timeout=10)
    assert record.status == "stopped" and record.streamer.subscriber_count == 0
    with pytest.raises(UnknownScan):
        manager.get(controller.scan_id)


def test_a_destroyed_session_leaves_a_watched_scan_running(manager):
    scan_id = manager.start_stream(SLOW)
    controller = ScanController(manager=manager)
    controller.watch(scan_id)
    controller._on_session_destroyed(None)
    assert manager.get(scan_id).running and controller._subscription is None
    manager.stop_stream(scan_id)


@pytest.fixture
def served(manager):
    """Serve an app whose sessions start a scan each; yield (start a session, sessions)."""
    port, sessions, settings = free_port(), [], {}

    def app():
        controller = ScanController(manager=manager, update_period=50, **settings)
        controller.start()
        sessions.append((controller, pn.state.curdoc, controller._callback))
        return pn.pane.Markdown(controller.scan_id)

    server = pn.serve({"app": app}, port=port, address="127.0.0.1", threaded=True,
                      show=False, verbose=False, check_unused_sessions_milliseconds=100,
                      unused_session_lifetime_milliseconds=1500)

    def open_session(**options):
        settings.clear()
        settings.update(options)
        wait_until(lambda: _reachable(port), timeout=10)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/app", timeout=10).read()
        return sessions[-1]

    yield open_session
    server.stop()
    server.join(timeout=10)


def _reachable(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_real_periodic_callback_drains_on_the_server_then_is_removed(served, manager):
    controller, doc, callback = served(symbols=300)
    # the server thread sets the status, then removes the callback in the same drain
    wait_until(lambda: controller.status == "finished" and controller._callback is None,
               timeout=20)
    assert controller.rows == controller.processed == 300
    assert len(controller.cds.data["symbol"]) == 300
    assert controller._callback is None and not callback.running
    assert doc.session_callbacks == []
    assert manager.get(controller.scan_id).streamer.subscriber_count == 0


def test_a_session_destroyed_mid_scan_stops_the_scan(served, manager):
    controller, doc, callback = served(**SLOW)
    wait_until(lambda: controller.rows > 0, timeout=10)
    record = manager.get(controller.scan_id)
    wait_until(lambda: not record.running, timeout=10)  # the session expires after 1.5 s
    assert record.status == "stopped" and record.reason == "manual"
    assert controller._callback is None and not callback.running
    assert record.streamer.subscriber_count == 0


def test_scans_leave_no_threads_behind(no_thread_leaks):
    manager = StreamManager(inactivity_timeout=60)
    controller = ScanController(manager=manager, symbols=80)
    controller.run()
    controller.symbols = 400
    controller.latency_ms = 50
    controller.start()
    controller.stop()
    drain_to_end(controller)
    manager.shutdown()
    assert not [t for t in threading.enumerate() if t.name.startswith("technic-")]


def test_the_controller_is_a_model_that_never_imports_its_view():
    code = ("import sys, technic_panel.ui.controller as c; "
            "print(','.join(sorted(m for m in sys.modules if m.startswith('technic_panel.ui.'))), "
            "hasattr(c.ScanController, 'view'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split() == [
        "technic_panel.ui.controller,technic_panel.ui.live_outputs,technic_panel.ui.locking,"
        "technic_panel.ui.outputs,"
        "technic_panel.ui.rescoring,technic_panel.ui.table", "False"]


def test_the_sector_filter_works_on_an_index_universe_in_a_store(manager, tmp_path):
    store = tmp_path / "sp500.duckdb"
    with BarStore(store, create=True) as bar_store:
        bar_store.set_universe(index_universe("sp500"))
        bar_store.write({symbol: bars_frame(seed)
                         for seed, symbol in enumerate(("AAPL", "JPM", "XOM", "BAC"))})
    controller = ScanController(manager=manager, source="store", path=str(store),
                                sectors=["Financials"])
    assert "Financials" in controller.param.sectors.objects
    controller.start()
    drain_to_end(controller)
    shown = dict(zip(controller.cds.data["symbol"], controller.cds.data["sector"], strict=True))
    assert controller.status == "finished" and shown == {"BAC": "Financials",
                                                          "JPM": "Financials"}
