"""The symbol chart's Bokeh models: what the hover reads, the MACD pane, the plan, the window.

tests/test_dashboard.py checks the chart as the dashboard shows it (a clicked row's long plan,
six months in view, a hover and a crosshair on every pane); these check the chart module
itself: every hover field exists in the data, a short plan, levels kept in view, a short
history, one crosshair button for the four panes, and a price legend clear of the plan's labels
(tests/test_browser.py measures both as painted).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from bokeh.models import CrosshairTool, CustomJS, GlyphRenderer, HoverTool, Legend, ToolProxy

from technic_panel.data.synthetic import SyntheticSource
from technic_panel.ui.candles import TOOLTIPS, WINDOW, SymbolChart, candle_data, view_window

DAY_MS = 24 * 3600 * 1000


@pytest.fixture(scope="module")
def data():
    """The chart data of one synthetic symbol: 504 daily bars and their indicators."""
    source = SyntheticSource(5, seed=3)
    return candle_data(source, source.symbols()[0])


def panes(chart: SymbolChart) -> dict[str, object]:
    """Return the chart's figures by their y-axis label."""
    figures = [child[0] for child in chart.model.children]
    return {figure.yaxis[0].axis_label: figure for figure in figures}


def fields(renderer: GlyphRenderer) -> set[str]:
    """Return the data columns a glyph renderer draws."""
    glyph = renderer.glyph
    return {value for value in (getattr(glyph, name, None) for name in glyph.properties())
            if isinstance(value, str) and not value.startswith("#")}


def test_every_hover_field_is_a_column_of_the_chart_data(data):
    shown = {name for _, spec in TOOLTIPS for name in re.findall(r"@(\w+)", spec)}
    assert {"open", "high", "low", "close", "volume", "sma_50", "sma_200", "bb_lower",
            "bb_upper", "rsi_14", "macd", "macd_signal", "macd_hist"} <= shown
    assert shown <= set(data), f"the hover would show ??? for {shown - set(data)}"
    assert all(len(data[name]) == len(data["date"]) for name in shown)


def test_every_pane_hovers_over_the_candles_one_bar_at_a_time():
    chart = SymbolChart()
    for label, pane in panes(chart).items():
        (hover,) = [tool for tool in pane.tools if isinstance(tool, HoverTool)]
        assert hover.mode == "vline" and hover.formatters == {"@date": "datetime"}, label
        assert hover.tooltips == TOOLTIPS
        assert [r.data_source for r in hover.renderers] == [chart.candles], label


def test_the_macd_pane_draws_macd_signal_and_histogram_from_the_candles():
    chart = SymbolChart()
    macd = panes(chart)["MACD"]
    renderers = [r for r in macd.renderers if isinstance(r, GlyphRenderer)]
    assert all(r.data_source is chart.candles for r in renderers)
    drawn = set().union(*(fields(r) for r in renderers))
    assert {"macd", "macd_signal", "macd_hist"} <= drawn
    assert macd.x_range is chart.x_range and list(panes(chart)) == ["price", "volume", "RSI",
                                                                     "MACD"]


def test_a_short_plan_draws_its_stop_above_and_target_below_the_entry(data):
    chart = SymbolChart()
    close = float(data["close"][-1])
    row = {"entry": close, "stop": close * 1.05, "target": close * 0.8, "side": "short"}
    chart.show(data, row)
    spans = chart.plan.spans
    assert spans["stop"].location > spans["entry"].location > spans["target"].location
    assert [spans[name].location for name in ("entry", "stop", "target")] == pytest.approx(
        [row["entry"], row["stop"], row["target"]])
    assert chart.plan.labels["entry"].text == f"entry {close:,.2f} (short)"
    price = panes(chart)["price"]
    assert all(span in price.center for span in spans.values())
    assert chart.y_range.start < row["target"] and chart.y_range.end > row["stop"]


def test_the_window_is_the_last_six_months_and_keeps_the_plan_in_view(data):
    last = pd.Timestamp(data["date"][-1])
    target = float(np.nanmax(data["high"])) * 2
    window = view_window(data, (None, None, target))
    start = pd.Timestamp(window["x_start"], unit="ms")
    assert last - WINDOW - pd.Timedelta(days=5) <= start <= last - WINDOW
    assert window["x_end"] == pytest.approx(last.value / 1e6 + DAY_MS)
    assert window["y_end"] > target
    in_view = pd.DatetimeIndex(data["date"]) >= last - WINDOW
    assert window["y_start"] < float(np.nanmin(np.asarray(data["low"])[in_view]))


def test_a_history_shorter_than_the_window_opens_on_all_of_it(data):
    recent = {name: values[-60:] for name, values in data.items()}
    window = view_window(recent)
    first = pd.Timestamp(recent["date"][0]).value / 1e6
    assert window["x_start"] == pytest.approx(first - DAY_MS)
    assert window["y_start"] < float(np.nanmin(recent["low"]))


def test_panning_refits_the_price_axis_to_the_bars_and_the_plan():
    chart = SymbolChart()
    for edge in ("start", "end"):
        (refit,) = chart.x_range.js_property_callbacks[f"change:{edge}"]
        assert isinstance(refit, CustomJS)
        assert refit.args["source"] is chart.candles and refit.args["y_range"] is chart.y_range
        assert refit.args["levels"] == list(chart.plan.spans.values())


def test_one_crosshair_button_drives_one_vertical_line_through_the_four_panes():
    chart = SymbolChart()
    crosshairs = [tool for tool in chart.model.toolbar.tools if isinstance(tool, ToolProxy)
                  and all(isinstance(t, CrosshairTool) for t in tool.tools)]
    assert len(crosshairs) == 1, "the toolbar should show one crosshair for every pane"
    (proxy,) = crosshairs
    owned = {id(tool) for pane in panes(chart).values() for tool in pane.tools
             if isinstance(tool, CrosshairTool)}
    assert {id(tool) for tool in proxy.tools} == owned and len(owned) == 4


def test_the_price_legend_is_one_row_above_the_frame_clear_of_the_plan_labels(data):
    chart = SymbolChart()
    close = float(data["close"][-1])
    chart.show(data, {"entry": close, "stop": close * 0.95, "target": close * 1.2,
                      "side": "long"})
    price = panes(chart)["price"]
    (legend,) = price.select(type=Legend)
    assert legend in price.above and legend not in price.center, "the legend covers the frame"
    assert legend.orientation == "horizontal"
    assert [item.label.value for item in legend.items] == ["Bollinger 20, 2", "SMA 50",
                                                           "SMA 200"]
    assert all(item.renderers and item.renderers[0] in price.renderers for item in legend.items)
    labels = list(chart.plan.labels.values())
    assert all(label in price.center and label.visible for label in labels)
    assert {(label.x_units, label.x, label.text_baseline) for label in labels} == {
        ("screen", 6, "middle")}, "each label sits on its line at the frame's left edge"
