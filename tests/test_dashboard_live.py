"""Dashboard live mode (no browser): rows patched in place, marks, alerts, toasts, stats, Stop."""

from __future__ import annotations

import html
import re
import time

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.document.events import ColumnsPatchedEvent, ColumnsStreamedEvent
from helpers import wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_panel.streaming.jsonsafe import make_message
from technic_panel.ui.alerts_panel import ALERTS_SHOWN, alerts_html
from technic_panel.ui.controller import ScanController
from technic_panel.ui.dashboard import LIVE_PANES_PERIOD, Dashboard
from technic_panel.ui.live_outputs import ALERTS_KEPT
from technic_panel.ui.notices import ALERT_TOAST_INTERVAL, Batches
from technic_panel.ui.pacing import Paced
from technic_panel.ui.table import LIVE_COLUMNS, TABLE_COLUMNS, TEXT_COLUMNS, columns

pytestmark = pytest.mark.usefixtures("panel_state")

LIVE = {"live": True, "symbols": 12, "bar_interval": 0.2, "alert_cooldown": 0}
"""A small live scan: a bar of every symbol each 0.2 s, alerts without cooldown."""


@pytest.fixture
def manager(dashboard_manager):
    return dashboard_manager


def bar_time(bar: int) -> str:
    return f"2026-01-{bar + 1:02d}T00:00:00.000Z"


def row(symbol: str, seq: int, type_: str = "update", bar: int | None = 0,
        in_filter: bool = True, rating: float = 60.0, changed=("tech_rating",)) -> dict:
    data = {"symbol": symbol, "signal": "BUY", "tech_rating": rating, "alpha_score": 0.5,
            "price": 10.0, "in_filter": in_filter}
    if bar is not None:
        data.update(bar_time=bar_time(bar), feed_time=1_800_000_000_000 + seq)
    if type_ == "update":
        data.update(changed=list(changed), previous_signal="BUY")
    return make_message(type_, data, scan_id="scan_live", seq=seq)


def alert(symbol: str, seq: int, rule: str = "signal_changed") -> dict:
    return make_message("alert", {"symbol": symbol, "rule": rule, "signal": "STRONG_BUY",
                                  "previous_signal": "BUY", "tech_rating": 85.0,
                                  "bar_time": bar_time(1)}, scan_id="scan_live", seq=seq)


def test_a_live_scan_patches_rows_in_place_and_shows_its_figures(manager):
    controller = ScanController(manager=manager, timeout=3, **LIVE)
    dashboard = Dashboard(controller)
    events: list[type] = []
    doc = Document()
    doc.add_root(controller.cds)
    doc.on_change(lambda event: events.append(type(event)))
    controller.run()
    symbols = list(controller.cds.data["symbol"])
    assert len(symbols) == len(set(symbols)) == controller.rows == 12
    streamed = events.count(ColumnsStreamedEvent)
    assert events.count(ColumnsPatchedEvent) >= 5 and streamed <= 12
    assert ColumnsStreamedEvent not in events[events.index(ColumnsPatchedEvent) + 1:]
    flashed = [i for i, n in enumerate(controller.cds.data["flashes"]) if n > 0]
    feed_times = np.asarray(controller.cds.data["feed_time"])[flashed]
    assert (feed_times > 1.7e12).all()  # each changed row's bar's feed_time, UTC ms
    assert flashed and all(set(controller.cds.data["flash"][i].split()) <= set(TABLE_COLUMNS)
                           for i in flashed)
    assert controller.outcome == "terminated" and controller.reason == "timeout"
    assert controller.bars_per_second > 0 and re.fullmatch(r"\d{4}-\d\d-\d\dT.*Z",
                                                           controller.feed_clock)
    assert 0 <= controller.update_latency_ms <= controller.update_latency_ms_p99 < 5000
    assert controller.alerts and controller.alerts_total >= len(controller.alerts)
    assert [a["bar_time"] for a in controller.alerts] == sorted(
        (a["bar_time"] for a in controller.alerts), reverse=True)  # newest first
    shown = dashboard._alerts.box.text
    assert shown.count('data-testid="alert"') == min(len(controller.alerts), ALERTS_SHOWN)
    text = dashboard._stats.text
    assert 'data-testid="bars-per-second"' in text and 'data-testid="feed-clock"' in text
    assert 'data-testid="latency"' in text
    assert [c.field for c in dashboard.table.columns][:2] == ["symbol", "new"]


def test_live_panes_refresh_once_a_period_while_the_table_takes_every_update(manager):
    controller = ScanController(manager=manager, timeout=2.5, **LIVE)
    dashboard = Dashboard(controller)
    refreshed, deferred, updates = [], [], []

    def refresh() -> None:
        refreshed.append((time.monotonic(), controller.status, controller.last_seq))
        dashboard._refresh_panes()

    dashboard._panes = Paced(refresh, LIVE_PANES_PERIOD,
                             schedule=lambda run, delay_ms: deferred.append(delay_ms))
    controller.param.watch(lambda event: updates.append(event.new), "last_seq")
    controller.run()
    live = [moment for moment, status, seq in refreshed if status == "running" and seq]
    assert len(updates) >= 20 and 1 <= len(live) <= 5  # ~2.5 s of updates, one refresh a s
    assert all(b - a >= LIVE_PANES_PERIOD for a, b in zip(live, live[1:], strict=False))
    assert deferred and all(0 < ms <= 1000 * LIVE_PANES_PERIOD for ms in deferred)
    assert refreshed[-1][1:] == (controller.status, controller.last_seq)  # the end, at once
    assert controller.status not in ("running", "paused")
    dots = dashboard._dots.data
    assert list(dots["symbol"]) == list(controller.cds.data["symbol"])
    assert list(dots["tech_rating"]) == list(controller.cds.data["tech_rating"])
    assert dashboard._stats.text.count(f"{controller.rows:,}") >= 1


def test_a_plain_scan_has_no_live_marks_panel_or_cards(manager):
    controller = ScanController(manager=manager, symbols=30)
    dashboard = Dashboard(controller)
    controller.run()
    assert "new" not in [c.field for c in dashboard.table.columns]
    assert dashboard._alerts.box.text == "" and "feed-clock" not in dashboard._stats.text
    assert set(controller.cds.data["new"]) == {""} and not any(controller.cds.data["flashes"])
    assert set(LIVE_COLUMNS) <= set(controller.cds.data)


def test_rows_that_enter_carry_the_new_marker_for_new_bars_bars():
    controller = ScanController(new_bars=2)
    controller._apply([row("AAA", 1, "result", bar=None), row("BBB", 2, "result", bar=None)])
    assert list(controller.cds.data["new"]) == ["", ""]  # the initial scan's rows are not new
    controller._apply([row("AAA", 3, bar=0), row("BBB", 4, bar=0, in_filter=False),
                       row("CCC", 5, "result", bar=0)])
    assert list(controller.cds.data["new"]) == ["", "", "new"]
    controller._apply([row("BBB", 6, bar=1, in_filter=True)])  # entered the filter
    assert list(controller.cds.data["new"]) == ["", "new", "new"]
    controller._apply([row("AAA", 7, bar=2)])
    assert list(controller.cds.data["new"]) == ["", "new", ""]  # CCC: two bars ago
    controller._apply([row("AAA", 8, bar=3)])
    assert list(controller.cds.data["new"]) == ["", "", ""]
    assert len(controller.cds.data["symbol"]) == 3


def patched_controller() -> tuple[ScanController, list[ColumnsPatchedEvent]]:
    """Return a controller whose source is in a document, and the patch events it will get."""
    controller = ScanController()
    doc = Document()
    doc.add_root(controller.cds)
    patches: list[ColumnsPatchedEvent] = []
    doc.on_change(lambda event: patches.append(event) if isinstance(event, ColumnsPatchedEvent)
                  else None)
    return controller, patches


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["AAA", "BBB", "CCC", "DDD", "EEE"]),
                          st.floats(0, 100), st.one_of(st.none(), st.floats(1, 500)),
                          st.sampled_from([None, "AAA"])), min_size=1, max_size=30),
       st.integers(1, 5))
def test_the_patched_source_always_holds_the_rows_received(updates, per_drain):
    controller, patches = patched_controller()
    seen: set[str] = set()
    for start in range(0, len(updates), per_drain):
        messages = []
        for k, (symbol, rating, price, bar) in enumerate(updates[start:start + per_drain]):
            seq = controller.last_seq + k + 1
            message = row(symbol, seq, "update" if symbol in seen else "result",
                          bar=None if bar is None else seq, rating=rating)
            message["data"]["price"] = price  # a missing number is NaN in its column
            seen.add(symbol)
            messages.append(message)
        controller._apply(messages)
        rows = controller._tally.rows
        expected = columns(list(rows.values()), controller._table._cells(rows))
        for name, cells in expected.items():
            shown = controller.cds.data[name]
            assert len(shown) == len(seen), name
            if isinstance(cells, np.ndarray):
                np.testing.assert_array_equal(np.asarray(shown, dtype=float), cells, err_msg=name)
            else:
                assert list(shown) == cells, name
    for event in patches:  # numbers: one slice of binary float64; text: the changed cells
        for name, spans in event.patches.items():
            if name in (*TEXT_COLUMNS, "new", "flash"):
                assert all(isinstance(at, int) for at, _ in spans), name
            else:
                assert len(spans) == 1 and isinstance(spans[0][0], slice), name
                assert spans[0][1].dtype == np.float64, name


def test_a_text_column_is_patched_at_the_changed_cells_only():
    controller, patches = patched_controller()
    controller._apply([row(symbol, seq, "result", bar=None)
                       for seq, symbol in enumerate(["AAA", "BBB", "CCC", "DDD"], 1)])
    update = row("CCC", 5, rating=20.0, changed=("tech_rating", "signal"))
    update["data"]["signal"] = "SELL"
    controller._apply([row("AAA", 6, rating=61.0), update])
    (event,) = patches
    assert event.patches["signal"] == [(2, "SELL")]
    assert event.patches["flash"] == [(0, "tech_rating"), (2, "signal tech_rating")]
    assert "symbol" not in event.patches and "sector" not in event.patches
    (span, ratings), = event.patches["tech_rating"]
    assert span == slice(0, 3) and list(ratings) == [61.0, 60.0, 20.0]
    assert list(controller.cds.data["signal"]) == ["BUY", "BUY", "SELL", "BUY"]


def test_changed_cells_are_named_and_counted_for_the_browser_to_flash():
    controller = ScanController()
    controller._apply([row("AAA", 1, "result", bar=None)])
    controller._apply([row("AAA", 2, changed=("tech_rating", "price", "close", "entry"))])
    controller._apply([row("AAA", 3, changed=("close",))])  # nothing the table shows
    data = controller.cds.data
    assert data["flash"][0].split() == ["tech_rating", "price", "entry", "risk_pct",
                                        "reward_pct"]
    assert data["flashes"][0] == 1.0


def test_alerts_are_kept_newest_first_and_bounded():
    controller = ScanController()
    controller._apply([row("AAA", 1, "result")])
    controller._apply([alert(f"S{i}", i + 2) for i in range(ALERTS_KEPT + 20)])
    assert len(controller.alerts) == ALERTS_KEPT and controller.alerts_total == ALERTS_KEPT + 20
    assert controller.alerts[0]["symbol"] == f"S{ALERTS_KEPT + 19}"
    assert len(controller.new_alerts) == ALERTS_KEPT + 20
    controller._apply([row("AAA", 500)])
    assert controller.new_alerts == [] and len(controller.alerts) == ALERTS_KEPT


def test_the_alerts_panel_is_text_never_html_from_data():
    evil = {"symbol": "<img src=x onerror=alert(1)>", "rule": "<script>", "signal": "BUY",
            "previous_signal": "<b>", "tech_rating": 70.0, "bar_time": "<i>"}
    text = alerts_html([evil] * (ALERTS_SHOWN + 5), ALERTS_SHOWN + 5)
    assert "<img" not in text and "<script>" not in text and "<i>" not in text
    assert html.escape(evil["symbol"]) in text and "&lt;b&gt;" in text
    assert text.count('data-testid="alert"') == ALERTS_SHOWN and "latest 20" in text


def test_alert_toasts_come_at_most_one_per_interval(manager):
    controller = ScanController(manager=manager)
    dashboard = Dashboard(controller)
    controller._apply([row("AAA", 1, "result"), alert("AAA", 2), alert("BBB", 3)])
    controller._apply([alert("CCC", 4)])
    told = [text for kind, text, _ in dashboard.notices.shown if kind == "info"]
    assert told == ["Alert: BBB changed signal (STRONG_BUY); AAA changed signal (STRONG_BUY)"]
    assert dashboard._toasts.alerts.pending[0]["symbol"] == "CCC" and ALERT_TOAST_INTERVAL >= 1
    assert "&lt;" not in told[0]


def test_batches_hand_over_once_per_interval_and_all_when_asked():
    now = [0.0]
    batches = Batches(3.0, clock=lambda: now[0])
    assert batches.take([1, 2]) == [1, 2] and batches.take([3]) == []
    now[0] = 2.9
    assert batches.take([4]) == []
    now[0] = 3.0
    assert batches.take([]) == [3, 4] and batches.take([5], now=True) == [5]
    assert batches.take([]) == []


def test_stop_ends_a_live_scan_with_one_final_and_unhooks(manager):
    controller = ScanController(manager=manager, **LIVE)
    Dashboard(controller)
    controller.start()
    wait_until(lambda: controller._drain() or controller.feed_clock is not None, timeout=20,
               interval=0.02)
    record = manager.get(controller.scan_id)
    controller.stop()
    wait_until(lambda: controller._drain() or controller._subscription is None, timeout=20,
               interval=0.02)
    assert (controller.status, controller.outcome, controller.reason) == (
        "finished", "stopped", "manual")
    assert controller._callback is None and record.streamer.subscriber_count == 0
    assert not record.running


def test_the_notebook_layout_shows_the_alerts_panel_too(manager):
    dashboard = Dashboard(ScanController(manager=manager))
    layout = dashboard.layout()
    main = layout.objects[1]
    assert dashboard._alerts.pane in main.objects and dashboard._stats.pane in main.objects
