"""The results table: its column views, number formats, browser-side filter and default order.

Three views of the same rows, as a screener's (Finviz: Overview, Technical, ...):
:data:`VIEWS` names each view's columns, drawn from :data:`COLUMNS` (field, title, format,
width). The table is one Bokeh ``DataTable`` on the controller's ColumnDataSource through a
``CDSView``, so a filter or a sort never copies data; a view swaps its columns. Numeric columns sort
descending on their first click (``default_sort``); every table opens sorted by tech_rating,
best first: Bokeh has no property for an initial sort, so :func:`arrange_callback` clicks
the Rating header once per grid, as a user would.

The table fills its width: :func:`arrange_callback` widens the columns in proportion once
it is laid out. Each view's widths add up to less than the table's width in a 1,000-pixel
window (:func:`least_width`, checked by the tests), so down to that nothing scrolls and no
symbol is cut. Cells
render text, never HTML from data: strings go through ``StringFormatter`` (a text node),
the signal in a cell coloured by its value; the one template (percentages) escapes what it
shows (``<%- %>``) and receives numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import pandas as pd
from bokeh.models import (
    CDSView,
    CellFormatter,
    ColumnDataSource,
    CustomJS,
    CustomJSFilter,
    DataTable,
    HTMLTemplateFormatter,
    InlineStyleSheet,
    NumberFormatter,
    StringFormatter,
    TableColumn,
)
from bokeh.transform import factor_cmap

from technic_panel.ui.colors import (
    SELECTED_BACKGROUND,
    SELECTED_TEXT,
    SIGNAL_CELLS_BACKGROUND,
    SIGNAL_CELLS_TEXT,
)


class Column(NamedTuple):
    """One column a view may show: the source field, its title, format and least width."""

    field: str
    title: str
    kind: str
    """``symbol``, ``text``, ``signal``, ``pct`` (a signed change, ``+1.23%``), ``pct+`` (a
    size, ``1.23%``) or a NumberFormatter (numbro) pattern."""
    width: int
    """Width in pixels that the widest value fits (a symbol of ten letters, ...)."""


COLUMNS = {column.field: column for column in (
    Column("symbol", "Symbol", "symbol", 86), Column("sector", "Sector", "text", 90),
    Column("signal", "Signal", "signal", 100), Column("tech_rating", "Rating", "0.0", 52),
    Column("alpha_score", "Alpha", "0.000", 50), Column("price", "Price", "0,0.00", 64),
    Column("change_pct", "Chg", "pct", 60), Column("market_cap", "Mkt cap", "$0,0.0a", 66),
    Column("avg_dollar_volume_20", "Avg $ vol", "$0,0.0a", 70),
    Column("rsi_14", "RSI", "0.0", 44), Column("adx_14", "ADX", "0.0", 44),
    Column("rel_volume", "Rel vol", "0.00", 52), Column("roc_5", "ROC 5", "pct", 60),
    Column("roc_21", "ROC 21", "pct", 70), Column("atr_pct", "ATR", "pct+", 56),
    Column("dist_high_52w", "52w high", "pct", 66), Column("side", "Side", "text", 46),
    Column("entry", "Entry", "0,0.00", 64), Column("stop", "Stop", "0,0.00", 64),
    Column("target", "Target", "0,0.00", 64), Column("reward_risk", "R:R", "0.00", 44),
    Column("risk_pct", "Risk", "pct+", 56), Column("reward_pct", "Reward", "pct+", 60),
)}
"""Every column a view may show, by field."""

VIEWS = {
    "Overview": ("symbol", "sector", "signal", "tech_rating", "alpha_score", "price",
                 "change_pct", "market_cap", "avg_dollar_volume_20"),
    "Technical": ("symbol", "signal", "tech_rating", "rsi_14", "adx_14", "rel_volume",
                  "roc_5", "roc_21", "atr_pct", "dist_high_52w"),
    "Trade plan": ("symbol", "signal", "tech_rating", "side", "entry", "stop", "target",
                   "reward_risk", "risk_pct", "reward_pct"),
}
"""The table's views: title -> the fields shown, left to right."""

TABLE_NAME = "results-table"
"""Bokeh ``name`` of the results table (browser tests find its view by it)."""

DEFAULT_SORT = "tech_rating"
"""The column every view opens sorted by, descending."""

_PCT_TEMPLATE = ("<%- (typeof value === 'number' && isFinite(value)) ? "
                 "(value > 0 ? '+' : '') + value.toFixed(2) + '%' : '' %>")
_SIZE_TEMPLATE = ("<%- (typeof value === 'number' && isFinite(value)) ? "
                  "value.toFixed(2) + '%' : '' %>")

_FILTER_CODE = """
const n = source.get_length() ?? 0;
const needle = search.trim().toUpperCase();
if (signals.length == 0 && !(min_rating > 0) && needle == "")
  return null;
const d = source.data;
const keep = new Array(n);
for (let i = 0; i < n; i++) {
  keep[i] = (signals.length == 0 || signals.includes(d.signal[i]))
    && (!(min_rating > 0) || d.tech_rating[i] >= min_rating)
    && (needle == "" || String(d.symbol[i]).toUpperCase().includes(needle));
}
return keep;
"""

_ARRANGE_CODE = """
const arrange = (view) => {
  const headers = view.shadow_el.querySelector(".slick-header-columns");
  const room = view.el.clientWidth - 18;  // the vertical scrollbar aside
  const fields = view.model.columns.map((column) => column.field).join(",");
  if (headers == null || headers.dataset.arranged === fields || room <= 0)
    return;  // done for these columns, or not laid out yet (done when it is)
  const total = view.model.columns.reduce((sum, column) => sum + column.width, 0);
  if (room > total + 4) {  // grow to fill; narrower, the grid scrolls rather than cut
    for (const column of view.model.columns)
      column.width = Math.floor(column.width * room / total);  // each re-renders the grid
    view.parent?.invalidate_layout();
  }
  const shown = (sort) => view.model.columns.some((column) => column.field == sort?.field);
  const last = view.model.sort_columns[0];
  const sort = shown(last) ? last : {field: field, sortAsc: false};
  const fresh = view.shadow_el.querySelector(".slick-header-columns");
  fresh.dataset.arranged = fields;
  const title = view.model.columns.find((column) => column.field == sort.field)?.title;
  const header = () => [...fresh.querySelectorAll(".slick-header-column")]
    .find((el) => el.textContent.trim() === title);
  const wanted = sort.sortAsc ? ".slick-sort-indicator-asc" : ".slick-sort-indicator-desc";
  // The grid's own header says how it is sorted: new columns lose the sort, not the model.
  for (let clicks = 0; header() != null && clicks < 2; clicks++) {
    if (header().querySelector(wanted) != null)
      break;
    header().click();
  }
};
setTimeout(() => {
  for (const table of tables) {
    const view = Bokeh.index.find_one(table);
    if (view != null)
      arrange(view);
  }
});
"""




TABLE_CSS = f"""
.slick-row .slick-cell.selected, .slick-row:hover .slick-cell.selected {{
  background-color: {SELECTED_BACKGROUND}; color: {SELECTED_TEXT};
}}
.slick-cell, .slick-header-column {{ font-size: 13px; text-overflow: ellipsis; }}
"""
"""A selected row's cells: white on dark green in both themes (contrast above 4.5:1).

Set on the tables and on the Panel panes that hold them: a Panel design replaces a Bokeh
model's stylesheets with its own plus the pane's."""


def _formatter(kind: str) -> CellFormatter:
    """Return a new formatter (Bokeh models belong to one document, so none is shared)."""
    if kind == "signal":
        factors = list(SIGNAL_CELLS_BACKGROUND)
        return StringFormatter(
            font_style="bold", text_align="center",
            background_color=factor_cmap("signal", list(SIGNAL_CELLS_BACKGROUND.values()), factors),
            text_color=factor_cmap("signal", list(SIGNAL_CELLS_TEXT.values()), factors))
    if kind in ("pct", "pct+"):
        return HTMLTemplateFormatter(template=_PCT_TEMPLATE if kind == "pct" else _SIZE_TEMPLATE)
    if kind in ("text", "symbol"):
        return StringFormatter(font_style="bold" if kind == "symbol" else "normal")
    return NumberFormatter(format=kind, nan_format="", text_align="right")


def table_column(field: str) -> TableColumn:
    """Return the TableColumn of ``field``; numeric columns sort descending first."""
    column = COLUMNS[field]
    numeric = column.kind not in ("symbol", "text", "signal")
    return TableColumn(field=field, title=column.title, formatter=_formatter(column.kind),
                       width=column.width,
                       default_sort="descending" if numeric else "ascending")


def least_width(fields: Sequence[str]) -> int:
    """Return the width below which a table of ``fields`` scrolls sideways."""
    return sum(COLUMNS[field].width for field in fields) + 16  # the vertical scrollbar


def view_columns() -> dict[str, list[TableColumn]]:
    """Return the TableColumns of each view of :data:`VIEWS`, built once, to swap in."""
    return {title: [table_column(field) for field in fields] for title, fields in VIEWS.items()}


def results_table(cds: ColumnDataSource, view: CDSView, columns: list[TableColumn],
                  height: int = 420) -> DataTable:
    """Return the results table on ``cds`` through ``view``, showing ``columns`` first.

    One table whose columns change with the view, rather than a table per view: each table
    re-sorts and repaints on every streamed row, hidden or not.
    """
    table = DataTable(source=cds, view=view, columns=columns, name=TABLE_NAME, sortable=True,
                      reorderable=False, index_position=None, autosize_mode="none",
                      sizing_mode="stretch_width", height=height,
                      stylesheets=[InlineStyleSheet(css=TABLE_CSS)])
    table.js_on_change("columns", arrange_callback([table]))
    return table


def arrange_callback(tables: Sequence[DataTable]) -> CustomJS:
    """Return JS that widens and sorts each laid-out table of ``tables``, once per column set.

    The columns keep their widths (``autosize_mode="none"``: SlickGrid's ``force_fit``
    would refit them on every streamed row, which costs the page as much again, and loses
    the widths after a layout at zero width), so once a table is laid out this widens them
    in proportion to fill it; narrower than their sum, the grid scrolls sideways and cuts
    nothing. Then it sorts the grid as it was sorted (``sort_columns``, if that column is
    still shown) or by :data:`DEFAULT_SORT`, descending: it clicks the header, as a user
    would, so the grid, its arrow and the model agree. It reads the sort from the grid's
    header, not the model: new columns (another view) lose the grid's sort while
    ``sort_columns`` keeps it. It runs when rows stream in (in notebooks too), when the
    view's columns change,
    when the Errors tab is left and, served, once the page is ready.
    """
    return CustomJS(args={"tables": list(tables), "field": DEFAULT_SORT}, code=_ARRANGE_CODE)


def errors_table(errors: ColumnDataSource, height: int = 420) -> DataTable:
    """Return the table of the symbols that failed: symbol, what failed and the message."""
    columns = [TableColumn(field="symbol", title="Symbol", width=90,
                           formatter=StringFormatter(font_style="bold")),
               TableColumn(field="error", title="Failed in", width=80,
                           formatter=StringFormatter()),
               TableColumn(field="message", title="Message", width=600,
                           formatter=StringFormatter())]
    return DataTable(source=errors, columns=columns, name="errors-table", sortable=True,
                     reorderable=False, index_position=None, autosize_mode="force_fit",
                     sizing_mode="stretch_width", height=height,
                     stylesheets=[InlineStyleSheet(css=TABLE_CSS)])


def filter_args(signals: Sequence[str] = (), min_rating: float = 0,
                search: str = "") -> dict[str, object]:
    """Return the arguments of the table filter (empty or zero: no condition)."""
    return {"signals": list(signals), "min_rating": float(min_rating), "search": search}


def filter_mask(frame: pd.DataFrame | Mapping[str, Sequence], args: Mapping[str, object]
                ) -> pd.Series:
    """Return which rows of ``frame`` the table filter with ``args`` keeps (as the browser).

    ``frame`` is a DataFrame or the columns of a ColumnDataSource.
    """
    frame = pd.DataFrame({name: frame[name] for name in ("symbol", "signal", "tech_rating")})
    keep = pd.Series(True, index=frame.index)
    if args["signals"]:
        keep &= frame["signal"].isin(args["signals"])
    if args["min_rating"] > 0:
        keep &= frame["tech_rating"] >= args["min_rating"]
    needle = str(args["search"]).strip().upper()
    if needle:
        keep &= frame["symbol"].astype(str).str.upper().str.contains(needle, regex=False)
    return keep


def results_view(shared: CustomJSFilter | None = None) -> CDSView:
    """Return a view whose filter runs in the browser on every row, old and arriving.

    ``shared``: the filter of another view, so both follow one set of filter arguments.
    Each Bokeh renderer needs its own view: a view's change redraws every user of it.
    """
    return CDSView(filter=shared or CustomJSFilter(args=filter_args(), code=_FILTER_CODE))
