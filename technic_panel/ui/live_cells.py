"""The live marks of the results table in the browser: the "new" column and flashing cells.

A live row carries ``new``, ``flash`` and ``flashes``
(:data:`~technic_panel.ui.table.LIVE_COLUMNS`); :func:`new_column` shows the marker. The flash
is drawn by the browser, cheaply: on every patch of the source (:func:`flash_callback`, on
``patching``) it compares each row's ``flashes`` with the count it saw last (one pass over a
float array) and, for the rows now painted whose count rose within :data:`FLASH_MS`, gives
the cells of the fields that changed the ``flash`` class and a highlight whose strength
falls with the change's age, in :data:`FLASH_STEPS` steps: on the next patch, or on a timer
while the feed is quiet. No CSS animation: an animated background repaints every flashing
cell at every frame, and at thousands of rows a second those repaints, not the patches,
held rows back in Chromium (feed to row p50 over 1 s against 0.16 s with a static
highlight, 1,000 symbols at 4 ticks a bar; benchmarks/bench_live.py). No clock crosses from
the server: the age of a change is the browser's own time since it saw it.

The same callback re-sorts and repaints the grid: BokehJS 3.9 refreshes a DataTable when its
CDSView's indices change, and a patch that keeps every row leaves them equal, so without it
the grid would keep showing the old values in the old order. Its ``updateGrid`` re-sorts by
building a record of every column for every row, a quarter of the page's time at 5,000
live rows; for the BokehJS version it was written against (:data:`SORTED_FOR`), the callback
does what ``updateGrid`` does but compares the sorted columns alone, in the same order.
Another version gets ``updateGrid`` itself (tests/test_browser_live.py checks the order).
Where ``updateGrid`` then rebuilds every rendered row, the callback rebuilds the rows whose
record or place changed since it rendered them (and any row BokehJS rendered since): at
5,000 live rows a tenth of the rows change per patch, and rebuilding all of them was most
of Chromium's style, layout and paint work (cell paints 4,600 -> 1,300 a second, the page's
main thread 68% -> 54% busy).
"""

from __future__ import annotations

from collections.abc import Sequence

from bokeh.models import ColumnDataSource, CustomJS, DataTable, StringFormatter, TableColumn

from technic_panel.ui.colors import ACCENT

FLASH_MS = 1200
"""How long a changed cell's highlight takes to fade."""

SORTED_FOR = "3.9."
"""The BokehJS version whose DataTable internals the fast re-sort of the callback uses."""

FLASH_STEPS = 4
"""Steps in which the highlight fades (each a repaint of the flashing cells only)."""

NEW_WIDTH = 44
"""Pixels of the "New" column."""

CSS = """
.slick-cell.flash { background-color: var(--technic-flash); }
"""
"""The highlight of a changed cell (on the table and on the pane that holds it)."""

_FLASH_CODE = """
const regrid = (view) => {  // updateGrid, re-sorting by the sorted columns alone
  const sorts = view.model.sortable ? view.grid.getSortColumns() : [];
  if (!String(Bokeh.version).startsWith(bokeh_version) || sorts.length == 0)
    return view.updateGrid();
  view.data.init(view.model.source, view.model.view);
  const columns = view.grid.getColumns(), data = view.model.source.data;
  const keys = sorts.map((sort) => [data[columns[view.grid.getColumnIndex(sort.columnId)].field],
                                    sort.sortAsc ? 1 : -1]);
  view.data.index.sort((i0, i1) => {  // the order of BokehJS's own comparator
    for (const [values, sign] of keys) {
      const v0 = values[i0], v1 = values[i1];
      if (v0 === v1)
        continue;
      if (typeof v0 == "number" && typeof v1 == "number")
        return sign * (v0 - v1 || +isNaN(v0) - +isNaN(v1));
      const order = `${v0}`.localeCompare(`${v1}`);
      if (order != 0)
        return sign * order;
    }
    return 0;
  });
  view._sync_selected_with_view();
  view.updateSelection();
  rerender(view);
  view.updateLayout(true, true);
};
const same = (a, b) => a === b || (a !== a && b !== b);  // NaN shows as NaN
const rerender = (view) => {  // grid.invalidate(), for the rendered rows that changed only
  const grid = view.grid, data = view.model.source.data, names = Object.keys(data);
  grid.updateRowCount();  // as invalidate() does: a filtered view may have changed length
  const row = (r) => grid.getCellNode(r, 0)?.parentElement;
  const record = (r) => {
    const i = view.data.index[r];
    return i == null ? null : names.map((name) => data[name][i]);
  };
  const shown = view.__shown?.grid === grid ? view.__shown.rows : new Map();
  const {top, bottom} = grid.getRenderedRange(), stale = [], records = new Map();
  for (let r = top; r <= bottom; r++) {  // a row node not ours was rendered by BokehJS: redo
    const [node, values] = shown.get(r) ?? [], now = record(r);
    records.set(r, now);
    if (node == null || node !== row(r) || now == null || !now.every((v, k) => same(v, values[k])))
      stale.push(r);
  }
  grid.invalidateRows(stale);
  grid.render();
  const rows = new Map();
  for (const [r, now] of records)  // the records drawn: the data did not change in between
    rows.set(r, [row(r), now]);
  view.__shown = {grid, rows};
};
for (const table of tables) {  // at once, so no reader sees new values in the old order
  const view = Bokeh.index.find_one(table);
  if (view != null)
    regrid(view);
}
const paint = () => {
  const data = source.data, counts = data.flashes, n = counts.length, now = performance.now();
  let fading = false;
  for (const table of tables) {
    const view = Bokeh.index.find_one(table);
    if (view == null || view.grid == null)
      continue;
    const first = view.__flash == null;
    const seen = view.__flash ??= {count: [], at: [], timer: null};
    for (let i = 0; i < n; i++) {
      if (counts[i] !== (seen.count[i] ?? (first ? counts[i] : 0)))
        seen.at[i] = now;
      seen.count[i] = counts[i];
    }
    const grid = view.grid, fields = grid.getColumns().map((column) => column.field);
    const {top, bottom} = grid.getRenderedRange();
    for (let r = top; r <= bottom; r++) {
      const i = view.data.index[r], age = now - (seen.at[i] ?? -Infinity);
      const step = Math.floor(steps * age / ms);
      const changed = i != null && step < steps ? String(data.flash[i]).split(" ") : [];
      fading ||= changed.length > 0;
      fields.forEach((field, c) => {
        const node = grid.getCellNode(r, c);
        if (node == null)
          return;
        const on = changed.includes(field);
        node.classList.toggle("flash", on);
        node.style.setProperty("--technic-flash", on ?
          `rgba(${rgb}, ${(0.7 * (steps - step) / steps).toFixed(2)})` : "");
      });
    }
    clearTimeout(seen.timer);  // a quiet feed: fade on a timer, until nothing flashes
    seen.timer = fading ? setTimeout(paint, ms / steps) : null;
  }
};
setTimeout(paint);
"""


def new_column() -> TableColumn:
    """Return the column of the ``new`` marker (a new model: models belong to one document)."""
    return TableColumn(field="new", title="New", width=NEW_WIDTH, sortable=False,
                       formatter=StringFormatter(font_style="bold", text_color=ACCENT))


def with_marker(columns: Sequence[TableColumn], marker: TableColumn) -> list[TableColumn]:
    """Return ``columns`` with the ``marker`` column after the first (the symbol)."""
    return [*columns[:1], marker, *columns[1:]]


def flash_callback(source: ColumnDataSource, tables: Sequence[DataTable]) -> CustomJS:
    """Return the JS, for ``source.js_on_change("patching", ...)``, that flashes changed cells."""
    return CustomJS(args={"source": source, "tables": list(tables), "ms": FLASH_MS,
                          "steps": FLASH_STEPS, "rgb": "255, 193, 7",
                          "bokeh_version": SORTED_FOR}, code=_FLASH_CODE)
