"""Bokeh models of the dashboard: the results table, its filter and the charts.

Everything here builds plain Bokeh models on a controller's ColumnDataSources; nothing
holds state or reads the stream, so the same functions serve the server and notebooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from bokeh.layouts import gridplot
from bokeh.models import (
    CDSView,
    CellFormatter,
    ColumnDataSource,
    CustomJSFilter,
    DataTable,
    GridPlot,
    HoverTool,
    HTMLTemplateFormatter,
    NumberFormatter,
    NumeralTickFormatter,
    Range1d,
    StringFormatter,
    TableColumn,
)
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

from technic_panel.data import DataSource
from technic_panel.engine.indicators import indicator_frame
from technic_panel.vocabulary import SIGNALS

SIGNAL_COLORS = {"STRONG_BUY": "#1a9850", "BUY": "#91cf60", "HOLD": "#9e9e9e",
                 "SELL": "#fc8d59", "STRONG_SELL": "#d73027"}
"""One colour per signal, shared by the table, the scatter and the bars."""

TABLE_NAME = "results-table"
"""Bokeh ``name`` of the results DataTable (browser tests find its view by it)."""

_SIGNAL_TEMPLATE = (
    '<span style="display:inline-block;padding:0 6px;border-radius:4px;font-weight:600;'
    'font-size:0.85em;line-height:1.6;'
    'color:#fff;background:<%= ({' + ",".join(f"{s}:'{c}'" for s, c in SIGNAL_COLORS.items())
    + "})[value] || '#777' %>\"><%- value %></span>"
)

_FILTER_CODE = """
const n = source.get_length() ?? 0;
const needle = search.trim().toUpperCase();
if (signals.length == 0 && tiers.length == 0 && !(min_rating > 0) && needle == "")
  return null;
const d = source.data;
const keep = new Array(n);
for (let i = 0; i < n; i++) {
  keep[i] = (signals.length == 0 || signals.includes(d.signal[i]))
    && (tiers.length == 0 || tiers.includes(d.priority_tier[i]))
    && (!(min_rating > 0) || d.tech_rating[i] >= min_rating)
    && (needle == "" || String(d.symbol[i]).toUpperCase().includes(needle));
}
return keep;
"""

_COLUMNS = (
    ("symbol", "Symbol", "bold", 80), ("sector", "Sector", "text", 190),
    ("signal", "Signal", "signal", 130), ("tech_rating", "Rating", "0.0", 70),
    ("alpha_score", "Alpha", "0.000", 70), ("price", "Price", "0.00", 80),
    ("change_pct", "Chg %", "+0.00", 70), ("priority_tier", "Tier", "text", 70),
    ("entry", "Entry", "0.00", 80), ("stop", "Stop", "0.00", 80),
    ("target", "Target", "0.00", 80),
)
"""Table columns: field, title, format (a NumberFormatter pattern or a kind), width."""


def _formatter(kind: str) -> CellFormatter:
    """Return a new formatter (Bokeh models belong to one document, so none is shared)."""
    if kind == "signal":
        return HTMLTemplateFormatter(template=_SIGNAL_TEMPLATE)
    if kind in ("text", "bold"):
        return StringFormatter(font_style="bold" if kind == "bold" else "normal")
    return NumberFormatter(format=kind)


def filter_args(signals: Sequence[str] = (), tiers: Sequence[str] = (), min_rating: float = 0,
                search: str = "") -> dict[str, object]:
    """Return the arguments of the table filter (empty or zero: no condition)."""
    return {"signals": list(signals), "tiers": list(tiers), "min_rating": float(min_rating),
            "search": search}


def filter_mask(frame: pd.DataFrame, args: Mapping[str, object]) -> pd.Series:
    """Return which rows of ``frame`` the table filter with ``args`` keeps (as the browser)."""
    keep = pd.Series(True, index=frame.index)
    if args["signals"]:
        keep &= frame["signal"].isin(args["signals"])
    if args["tiers"]:
        keep &= frame["priority_tier"].isin(args["tiers"])
    if args["min_rating"] > 0:
        keep &= frame["tech_rating"] >= args["min_rating"]
    needle = str(args["search"]).strip().upper()
    if needle:
        keep &= frame["symbol"].astype(str).str.upper().str.contains(needle, regex=False)
    return keep


def results_view() -> CDSView:
    """Return a view whose filter runs in the browser on every row, old and arriving."""
    return CDSView(filter=CustomJSFilter(args=filter_args(), code=_FILTER_CODE))


def results_table(cds: ColumnDataSource, view: CDSView) -> DataTable:
    """Return the sortable results table; a colour per signal."""
    columns = [TableColumn(field=field, title=title, formatter=_formatter(kind), width=width)
               for field, title, kind, width in _COLUMNS]
    return DataTable(source=cds, view=view, columns=columns, name=TABLE_NAME, sortable=True,
                     reorderable=False, index_position=None, sizing_mode="stretch_width",
                     height=420, autosize_mode="none")


def rating_scatter(cds: ColumnDataSource, view: CDSView) -> figure:
    """Return tech_rating against alpha_score, one dot per shown row, coloured by signal."""
    plot = figure(title="tech_rating vs alpha_score", x_range=Range1d(0, 100),
                  y_range=Range1d(0, 1), height=320, sizing_mode="stretch_width",
                  x_axis_label="tech_rating", y_axis_label="alpha_score",
                  tools="pan,wheel_zoom,box_zoom,reset")
    plot.scatter("tech_rating", "alpha_score", source=cds, view=view, size=5, alpha=0.7,
                 color=factor_cmap("signal", list(SIGNAL_COLORS.values()), list(SIGNALS)))
    plot.add_tools(HoverTool(tooltips=[("symbol", "@symbol"), ("signal", "@signal"),
                                       ("rating", "@tech_rating{0.0}")]))
    return plot


def signal_bars(counts: ColumnDataSource) -> figure:
    """Return bars of results per signal; ``counts`` has columns signal, count, color."""
    plot = figure(title="Signals", x_range=list(SIGNALS), height=260,
                  sizing_mode="stretch_width", tools="")
    plot.vbar(x="signal", top="count", color="color", width=0.8, source=counts)
    plot.y_range.start = 0
    plot.add_tools(HoverTool(tooltips=[("signal", "@signal"), ("results", "@count")]))
    return plot


def signal_counts_data(counts: Mapping[str, int]) -> dict[str, list]:
    """Return the data of :func:`signal_bars` for these counts."""
    return {"signal": list(SIGNALS), "count": [counts.get(s, 0) for s in SIGNALS],
            "color": list(SIGNAL_COLORS.values())}


def progress_chart(timeline: ColumnDataSource) -> figure:
    """Return symbols processed against seconds elapsed."""
    plot = figure(title="Processed over time", height=260, sizing_mode="stretch_width",
                  x_axis_label="seconds", y_axis_label="symbols", tools="")
    plot.line("elapsed", "processed", source=timeline, line_width=2)
    return plot


def candle_data(source: DataSource, symbol: str) -> dict[str, np.ndarray]:
    """Return the columns :func:`candlestick` draws for ``symbol``: bars and indicators."""
    frame = indicator_frame(source.bars(symbol), symbol)
    up = frame["close"] >= frame["open"]
    return {"date": frame.index.to_numpy(), "color": np.where(up, "#26a69a", "#ef5350"),
            **{name: frame[name].to_numpy() for name in (
                "open", "high", "low", "close", "volume", "sma_50", "sma_200", "bb_upper",
                "bb_lower", "rsi_14")}}


def empty_candles() -> ColumnDataSource:
    """Return an empty source with the columns of :func:`candle_data`."""
    names = ("date", "color", "open", "high", "low", "close", "volume", "sma_50", "sma_200",
             "bb_upper", "bb_lower", "rsi_14")
    return ColumnDataSource(data={name: [] for name in names})


def candlestick(candles: ColumnDataSource) -> GridPlot:
    """Return price (candles, SMA 50/200, Bollinger bands), volume and RSI on one date axis."""
    width = 0.7 * 24 * 3600 * 1000
    price = figure(x_axis_type="datetime", height=300, sizing_mode="stretch_width",
                   tools="pan,wheel_zoom,box_zoom,reset", y_axis_label="price")
    price.varea("date", "bb_lower", "bb_upper", source=candles, alpha=0.12, color="#5c6bc0",
                legend_label="Bollinger 20, 2")
    price.segment("date", "high", "date", "low", source=candles, color="color")
    price.vbar("date", width, "open", "close", source=candles, color="color")
    price.line("date", "sma_50", source=candles, color="#ff9800", legend_label="SMA 50")
    price.line("date", "sma_200", source=candles, color="#7e57c2", legend_label="SMA 200")
    price.legend.location = "top_left"
    volume = figure(x_axis_type="datetime", height=110, sizing_mode="stretch_width",
                    x_range=price.x_range, tools="", y_axis_label="volume")
    volume.vbar("date", width, "volume", source=candles, color="color", alpha=0.6)
    volume.yaxis.formatter = NumeralTickFormatter(format="0.0a")
    rsi = figure(x_axis_type="datetime", height=130, sizing_mode="stretch_width",
                 x_range=price.x_range, y_range=Range1d(0, 100), tools="", y_axis_label="RSI")
    rsi.line("date", "rsi_14", source=candles, color="#26c6da")
    rsi.hspan(y=[30, 70], line_color="#888", line_dash="dashed")
    return gridplot([[price], [volume], [rsi]], sizing_mode="stretch_width", toolbar_location=None,
                    merge_tools=True)
