"""The chart of one symbol: candles, trend lines and the trade plan over price, volume, RSI, MACD.

:func:`candlestick` builds the four panes on one shared date axis, with a crosshair whose
vertical line follows the mouse in every pane, a hover that reads the bar (OHLC, volume,
SMA 50/200, Bollinger, RSI, MACD) and the row's trade plan as three horizontal lines
(:class:`PlanLines`), labelled at the frame's left edge; the price legend is one row above the
frame (:func:`price_legend`), so it never covers a label.
:func:`view_window` opens it on the last six months, scaled to them; panning or zooming
re-fits the price axis to the bars in view (a small CustomJS on the date range).
Labels are drawn on the canvas, so text from data is never HTML.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from bokeh.layouts import gridplot
from bokeh.models import (
    ColumnDataSource,
    CrosshairTool,
    CustomJS,
    GlyphRenderer,
    GridPlot,
    HoverTool,
    Label,
    Legend,
    LegendItem,
    NumeralTickFormatter,
    Range1d,
    Span,
)
from bokeh.plotting import figure

from technic_panel.data import DataSource
from technic_panel.engine.indicators import indicator_frame
from technic_panel.ui.colors import DOWN, PLAN_COLORS, UP

CANDLE_COLUMNS = ("open", "high", "low", "close", "volume", "sma_50", "sma_200", "bb_upper",
                  "bb_lower", "rsi_14", "macd", "macd_signal", "macd_hist")
"""Indicator columns the chart draws, besides ``date`` and ``color``."""

WINDOW = pd.DateOffset(months=6)
"""How much history the chart opens on."""

_BAR_MS = 0.7 * 24 * 3600 * 1000
"""Candle and volume bar width: 70% of a day, in ms."""

TOOLTIPS = [("date", "@date{%F}"), ("open", "@open{0,0.00}"), ("high", "@high{0,0.00}"),
            ("low", "@low{0,0.00}"), ("close", "@close{0,0.00}"), ("volume", "@volume{0.0a}"),
            ("SMA 50 / 200", "@sma_50{0,0.00} / @sma_200{0,0.00}"),
            ("Bollinger", "@bb_lower{0,0.00} to @bb_upper{0,0.00}"), ("RSI 14", "@rsi_14{0.0}"),
            ("MACD / signal", "@macd{0.00} / @macd_signal{0.00}"),
            ("MACD hist", "@macd_hist{0.00}")]
"""What the hover shows of the bar under the mouse, in every pane."""

_REFIT_CODE = """
const d = source.data, n = d.date.length;
let lo = Infinity, hi = -Infinity;
for (let i = 0; i < n; i++) {
  if (d.date[i] < x_range.start || d.date[i] > x_range.end) continue;
  lo = Math.min(lo, d.low[i]); hi = Math.max(hi, d.high[i]);
}
for (const level of levels) {
  if (level.visible && level.location != null) {
    lo = Math.min(lo, level.location); hi = Math.max(hi, level.location);
  }
}
if (isFinite(lo) && isFinite(hi) && hi > lo) {
  const pad = (hi - lo) * 0.05;
  y_range.setv({start: lo - pad, end: hi + pad});
}
"""


def candle_data(source: DataSource, symbol: str) -> dict[str, np.ndarray]:
    """Return the columns :func:`candlestick` draws for ``symbol``: bars and indicators."""
    frame = indicator_frame(source.bars(symbol), symbol)
    up = frame["close"] >= frame["open"]
    return {"date": frame.index.to_numpy(), "color": np.where(up, UP, DOWN),
            **{name: frame[name].to_numpy() for name in CANDLE_COLUMNS}}


def empty_candles() -> ColumnDataSource:
    """Return an empty source with the columns of :func:`candle_data`."""
    return ColumnDataSource(data={name: [] for name in ("date", "color", *CANDLE_COLUMNS)})


def view_window(data: Mapping[str, Any], levels: tuple[float | None, ...] = ()
                ) -> dict[str, float]:
    """Return the last six months of ``data`` as x (ms) and y ranges that fit those bars.

    ``levels`` (the trade plan's prices) are kept in view too.
    """
    dates = pd.DatetimeIndex(data["date"])
    shown = dates >= dates[-1] - WINDOW
    lows = [*np.asarray(data["low"])[shown], *(level for level in levels if level is not None)]
    highs = [*np.asarray(data["high"])[shown], *(level for level in levels if level is not None)]
    low, high = float(np.nanmin(lows)), float(np.nanmax(highs))
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
    day_ms = 24 * 3600 * 1000
    return {"x_start": dates[shown][0].value / 1e6 - day_ms, "x_end": dates[-1].value / 1e6
            + day_ms, "y_start": low - pad, "y_end": high + pad}


class PlanLines:
    """The trade plan on the price pane: entry, stop and target as labelled horizontal lines.

    Each label sits on its line at the frame's left edge, centred on it, so the padding of
    :func:`view_window` keeps the top and bottom ones whole.
    """

    def __init__(self) -> None:
        self.spans = {name: Span(dimension="width", location=None, line_color=color,
                                 line_width=1.5, line_dash="dashed" if name != "entry" else
                                 "solid", visible=False)
                      for name, color in PLAN_COLORS.items()}
        self.labels = {name: Label(x=6, x_units="screen", y=0, text="", text_font_size="11px",
                                   text_baseline="middle", text_color=color,
                                   background_fill_color="white", background_fill_alpha=0.75,
                                   visible=False)
                       for name, color in PLAN_COLORS.items()}

    def __repr__(self) -> str:
        return f"PlanLines({ {name: span.location for name, span in self.spans.items()} })"

    def levels(self) -> tuple[float | None, ...]:
        """Return the prices of the lines shown (None for a hidden one)."""
        return tuple(span.location if span.visible else None for span in self.spans.values())

    def show(self, row: Mapping[str, Any]) -> None:
        """Draw ``row``'s entry, stop and target (hide each the row lacks); doc thread only."""
        side = row.get("side") or ""
        for name, span in self.spans.items():
            value = row.get(name)
            shown = isinstance(value, (int, float)) and np.isfinite(value)
            span.update(location=float(value) if shown else None, visible=shown)
            label = (f"{name} {value:,.2f}" + (f" ({side})" if name == "entry" and side else "")
                     if shown else "")
            self.labels[name].update(y=float(value) if shown else 0.0, text=label, visible=shown)


def price_legend(items: list[tuple[str, GlyphRenderer]]) -> Legend:
    """Return the price pane's legend: one row, for above the frame, clear of the plan labels.

    The plan's labels sit at the frame's left edge at any height the plan puts them, so no
    corner inside the frame is free of them (a legend at top left hid those near the top).
    """
    return Legend(items=[LegendItem(label=label, renderers=[renderer])
                         for label, renderer in items],
                  orientation="horizontal", location="top_left", border_line_alpha=0,
                  background_fill_alpha=0, padding=2, margin=0, label_text_font_size="11px",
                  glyph_height=12, glyph_width=16)


def _pane(height: int, x_range: Range1d, label: str, **options: Any) -> figure:
    return figure(x_axis_type="datetime", height=height, sizing_mode="stretch_width",
                  x_range=x_range, y_axis_label=label, tools="", **options)


class SymbolChart:
    """One symbol's chart and what it shows: candles, plan lines and the date window.

    Not thread-safe: call :meth:`show` on the document's thread.
    """

    def __init__(self) -> None:
        self.candles = empty_candles()
        self.plan = PlanLines()
        self.x_range, self.y_range = Range1d(0, 1), Range1d(0, 1)
        self.model = candlestick(self.candles, self.plan, self.x_range, self.y_range)

    def __repr__(self) -> str:
        return f"SymbolChart(bars={len(self.candles.data['date'])}, {self.plan!r})"

    def show(self, data: Mapping[str, Any], row: Mapping[str, Any]) -> None:
        """Draw ``data`` (from :func:`candle_data`) and ``row``'s plan; open on six months."""
        self.candles.data = dict(data)
        self.plan.show(row)
        window = view_window(data, self.plan.levels())
        self.x_range.update(start=window["x_start"], end=window["x_end"])
        self.y_range.update(start=window["y_start"], end=window["y_end"])


def candlestick(candles: ColumnDataSource, plan: PlanLines, x_range: Range1d,
                y_range: Range1d) -> GridPlot:
    """Return price (candles, SMA 50/200, Bollinger, plan), volume, RSI and MACD panes."""
    price = _pane(300, x_range, "price", y_range=y_range)
    bands = price.varea("date", "bb_lower", "bb_upper", source=candles, alpha=0.12,
                        color="#5c6bc0")
    price.segment("date", "high", "date", "low", source=candles, color="color")
    bars = price.vbar("date", _BAR_MS, "open", "close", source=candles, color="color")
    sma_50 = price.line("date", "sma_50", source=candles, color="#ff9800")
    sma_200 = price.line("date", "sma_200", source=candles, color="#7e57c2")
    price.add_layout(price_legend([("Bollinger 20, 2", bands), ("SMA 50", sma_50),
                                   ("SMA 200", sma_200)]), "above")
    for name in plan.spans:
        price.add_layout(plan.spans[name])
        price.add_layout(plan.labels[name])
    volume = _pane(100, x_range, "volume")
    volume_bars = volume.vbar("date", _BAR_MS, "volume", source=candles, color="color", alpha=0.6)
    volume.yaxis.formatter = NumeralTickFormatter(format="0.0a")
    rsi = _pane(110, x_range, "RSI", y_range=Range1d(0, 100))
    rsi_line = rsi.line("date", "rsi_14", source=candles, color="#26c6da")
    rsi.hspan(y=[30, 70], line_color="#888", line_dash="dashed")
    macd = _pane(120, x_range, "MACD")
    macd.vbar("date", _BAR_MS, "macd_hist", source=candles, color="#90a4ae", alpha=0.6)
    macd_line = macd.line("date", "macd", source=candles, color="#1e88e5", legend_label="MACD")
    macd.line("date", "macd_signal", source=candles, color="#fb8c00", legend_label="signal")
    macd.legend.location = "top_left"
    crosshair = Span(dimension="height", line_dash="dotted", line_color="#666")
    panes = [(price, bars), (volume, volume_bars), (rsi, rsi_line), (macd, macd_line)]
    for pane, renderer in panes:
        pane.add_tools("pan", "wheel_zoom", "box_zoom", "reset",
                       HoverTool(renderers=[renderer], tooltips=TOOLTIPS, mode="vline",
                                 formatters={"@date": "datetime"}),
                       CrosshairTool(overlay=[crosshair, Span(dimension="width",
                                                              line_dash="dotted",
                                                              line_color="#666")]))
    refit = CustomJS(args={"source": candles, "x_range": x_range, "y_range": y_range,
                           "levels": list(plan.spans.values())}, code=_REFIT_CODE)
    x_range.js_on_change("start", refit)
    x_range.js_on_change("end", refit)
    return gridplot([[price], [volume], [rsi], [macd]], sizing_mode="stretch_width",
                    toolbar_location="right", merge_tools=True)

