"""The Panel view of a ScanController: controls, live stats, the results table and charts.

The controller is the model and never imports this view; the view is one line, in a notebook
cell or in ``app.py`` (a :class:`panel.viewable.Viewer`, as in Panel's reference apps)::

    Dashboard(controller)                                # the live dashboard in the cell
    Dashboard(controller).servable(title="technic-panel")  # `panel serve app.py`

The dashboard reads the controller's outputs and ColumnDataSources and calls its
``start`` / ``stop`` / ``pause`` / ``resume`` / ``watch``; it never touches the stream.
The table shows one of three column views (:mod:`~technic_panel.ui.columns`), chosen above
it; the symbols that failed are listed in an Errors tab beside it. Filters (signal, least
tech_rating, symbol search) live in a ``CDSView`` whose filter runs in the browser on every
row, so they apply to rows shown and rows still arriving while the source keeps every row.
Served, the settings follow the URL (``/app?symbols=2000&latency_ms=20``) through
``pn.state.location.sync``; a bad value is reported and replaced in the URL by the value in
force.

Offline: the served page loads nothing from outside the machine (:class:`OfflineFast`, the
Fast design without its web font; Panel serves its JavaScript itself); in a notebook,
``pn.extension(inline=True)`` inlines it, and notices need no JavaScript of their own
(:mod:`~technic_panel.ui.notices`).

Live scans (``live=True``): changed rows are patched in place and their changed cells
flash (:mod:`~technic_panel.ui.live_cells`), a "New" column marks the rows that entered
within the controller's ``new_bars`` bars, the alerts panel lists the latest alerts
(:mod:`~technic_panel.ui.alerts_panel`) and each burst of them is one toast; the stats add
bars per second, the feed clock and the update latency. The browser's sort and filter
apply to patched rows as to new ones, so they hold while rows change.

No HTML from data: every text built from input or data (notices, stats, titles) is escaped
where it becomes HTML; tables, labels and the watch list render text, not HTML.
"""

from __future__ import annotations

import io
import json
import urllib.parse
from typing import Any

import panel as pn
import param
from bokeh.models import ColumnDataSource, InlineStyleSheet

from technic_panel.config import ScanConfig, source_for
from technic_panel.data import DataError
from technic_panel.streaming.export import csv_text
from technic_panel.streaming.manager import TooManyScans, UnknownScan
from technic_panel.ui import charts, columns, live_cells, stats
from technic_panel.ui.alerts_panel import AlertsPanel
from technic_panel.ui.candles import SymbolChart, candle_data
from technic_panel.ui.colors import ACCENT
from technic_panel.ui.controller import ScanController
from technic_panel.ui.design import FONT, OfflineFast
from technic_panel.ui.markup import HTMLBox
from technic_panel.ui.notebook import NotebookLayout
from technic_panel.ui.notices import Notices, ScanToasts, served
from technic_panel.ui.pacing import Paced
from technic_panel.ui.sidebar import Settings, scan_label
from technic_panel.vocabulary import ACTIVE_STATUSES, SIGNALS

LIVE_PANES_PERIOD = 1.0
"""Seconds between refreshes of the panes around the table while a live scan runs."""
WATCH_REFRESH_MS = 2000
"""How often a served dashboard refreshes its list of scans to watch."""

SIDEBAR_WIDTH = 280
"""Pixels of the sidebar, served and in a notebook."""

NOTEBOOK_SIDEBAR_HEIGHT = 720
"""Pixels of the sidebar's height in a notebook: its cards scroll inside, so wrapped above the
main area it does not push the table a screen or two down."""

_NONE = "(none)"


class Dashboard(pn.viewable.Viewer):
    """Controls, stats, table and charts of one :class:`ScanController`.

    A :class:`panel.viewable.Viewer`: displayed in a notebook it renders :meth:`layout`;
    ``servable()`` or ``pn.serve`` in a server session render :meth:`template`.

    Parameters
    ----------
    controller
        The scan shown; its Parameters give the sidebar's widgets.
    """

    signals = param.ListSelector(default=[], objects=list(SIGNALS),
                                 doc="Show only these signals (empty: all).")
    min_tech_rating = param.Number(default=0.0, bounds=(0, 100),
                                   doc="Show only rows with at least this tech_rating.")
    search = param.String(default="", doc="Show only symbols containing this text.")

    def __init__(self, controller: ScanController, **params: Any) -> None:
        super().__init__(**params)
        self.controller = controller
        self._view = columns.results_view()
        self._counts = ColumnDataSource(charts.signal_counts_data({}))
        self._dots = ColumnDataSource(charts.scatter_data(controller.cds.data))
        self._chart = SymbolChart()
        self._symbol: str | None = None
        self.notices = Notices(controller.document_lock, floating=served())
        self._toasts = ScanToasts(self.notices)
        self._alerts = AlertsPanel()
        self._panes = Paced(self._refresh_panes, LIVE_PANES_PERIOD)
        self._live = False
        self._url_problems: set[str] = set()
        self.settings = Settings(controller)
        self._build_widgets()
        self._build_panes()
        controller.param.watch(self._on_update, ["last_seq", "status", "scan_id", "rescored"])
        controller.param.watch(self._on_strategy_error, "strategy_error")
        controller.cds.selected.on_change("indices", self._on_select)
        self._on_update()

    # --- building -----------------------------------------------------------------------

    def _build_widgets(self) -> None:
        stretch = {"sizing_mode": "stretch_width"}  # three share the sidebar's width
        self._start = pn.widgets.Button(label="Start", color="primary", **stretch)
        self._pause = pn.widgets.Button(label="Pause", color="warning", **stretch)
        self._stop = pn.widgets.Button(label="Stop", color="danger", **stretch)
        self._start.on_click(lambda _: self._run(self.controller.start))
        self._stop.on_click(lambda _: self._run(self.controller.stop))
        self._pause.on_click(lambda _: self._run(self._toggle_pause))
        self._watch = pn.widgets.Select(label="Watch scan", options={_NONE: _NONE}, value=_NONE,
                                        sizing_mode="stretch_width")
        self._watch.param.watch(self._on_watch, "value")
        self._download = pn.widgets.FileDownload(callback=self._csv, filename="scan.csv",
                                                 label="Download CSV", color="success",
                                                 width=140, align="end")
        search = pn.widgets.TextInput(label="Symbol", placeholder="search", width=110)
        search.param.watch(lambda event: setattr(self, "search", event.new), "value_input")
        self._filters = pn.FlexBox(
            pn.widgets.MultiChoice.from_param(self.param.signals, label="Signal", width=250),
            pn.widgets.FloatSlider.from_param(self.param.min_tech_rating, label="Rating at least",
                                              step=1, width=150),
            search, self._download, flex_wrap="wrap", align_items="flex-end",
            sizing_mode="stretch_width", css_classes=["table-filters"])

    def _build_panes(self) -> None:
        controller = self.controller
        self._stats = HTMLBox(stats.CSS)
        self._hint = HTMLBox(stats.CSS)
        self._progress = pn.indicators.Progress(value=0, max=1, sizing_mode="stretch_width",
                                                bar_color="success", height=10)
        self._columns = columns.view_columns()
        self._marker = live_cells.new_column()
        self.table = columns.results_table(controller.cds, self._view, self._columns["Overview"])
        self.table.stylesheets = [*self.table.stylesheets, InlineStyleSheet(css=live_cells.CSS)]
        arrange = columns.arrange_callback([self.table])
        controller.cds.js_on_change("streaming", arrange)
        controller.cds.js_on_change("patching",
                                    live_cells.flash_callback(controller.cds, [self.table]))
        self._view_choice = pn.widgets.RadioButtonGroup(options=list(columns.VIEWS),
                                                        value="Overview", variant="outline")
        self._view_choice.param.watch(self._on_view, "value")
        results = pn.Column(self._view_choice,
                            pn.pane.Bokeh(self.table, sizing_mode="stretch_width",
                                          stylesheets=[columns.TABLE_CSS, live_cells.CSS]),
                            sizing_mode="stretch_width")
        errors = pn.pane.Bokeh(columns.errors_table(controller.error_rows),
                               sizing_mode="stretch_width", stylesheets=[columns.TABLE_CSS])
        self._tabs = pn.Tabs(("Results", results), ("Errors", errors), dynamic=False,
                             sizing_mode="stretch_width")
        self._tabs.jscallback(args=dict(arrange.args), active=arrange.code)
        self._charts = pn.FlexBox(*(
            pn.pane.Bokeh(chart, sizing_mode="stretch_width", min_width=300, styles={"flex": "1"})
            for chart in (charts.rating_scatter(self._dots, columns.results_view(
                              self._view.filter)),
                          charts.signal_bars(self._counts),
                          charts.progress_chart(controller.timeline))),
            flex_wrap="wrap", sizing_mode="stretch_width")
        self._chart_title = HTMLBox(stats.CSS)
        self._symbol_card = pn.Column(self._chart_title.pane,
                                      pn.pane.Bokeh(self._chart.model, sizing_mode="stretch_width"),
                                      visible=False, sizing_mode="stretch_width")

    def sidebar(self, collapsed: bool = True) -> list:
        """Return the sidebar: buttons, the scan to watch and the settings in cards.

        ``collapsed`` folds every card but Universe (the served template's sidebar).
        """
        buttons = pn.Row(self._start, self._pause, self._stop, sizing_mode="stretch_width")
        return [buttons, self._watch, *self.settings.cards(collapsed)]

    def main(self) -> list:
        """Return the main area: stats, progress, notices, filters, table, chart, charts."""
        return [self._stats.pane, self._progress, self.notices.strip.pane, self._alerts.pane,
                self._filters, self._hint.pane, self._tabs, self._symbol_card, self._charts]

    def __panel__(self) -> pn.viewable.Viewable | pn.template.BaseTemplate:
        """Return the view: a FastListTemplate in a server session, else a plain layout."""
        return self.template() if served() else self.layout()

    def layout(self) -> NotebookLayout:
        """Return the dashboard as one layout that fits a notebook cell (no template).

        The sidebar wraps above the main area when the cell is too narrow for both side by
        side (below about 960 pixels, a 1,040-pixel cell); the main area is never narrower
        than the widest table view. The sidebar's setting cards are open, and scroll inside
        it: BokehJS fails to render a DataTable that shares one root with a collapsed Card
        ("reading 'resizeCanvas'"; found by tests/test_jupyterlab.py).
        """
        least = max(columns.least_width(fields) for fields in columns.VIEWS.values()) + 20
        main = pn.Column(*self.main(), sizing_mode="stretch_width", min_width=least,
                         styles={"flex": f"1 1 {least}px"})
        sidebar = pn.Column(*self.sidebar(collapsed=False), width=SIDEBAR_WIDTH,
                            height=NOTEBOOK_SIDEBAR_HEIGHT, scroll=True)
        owned = [self.controller.cds, self.controller.timeline, self.controller.error_rows,
                 self._counts, self._chart.candles]
        return NotebookLayout(sidebar, main, owned=owned, lock=self.controller.document_lock,
                              sizing_mode="stretch_width")

    def template(self, **options: Any) -> pn.template.BaseTemplate:
        """Return the dashboard in a FastListTemplate (light/dark toggle); served, URL-synced."""
        options = {"title": "technic-panel", "accent": ACCENT, "theme_toggle": True,
                   "main_layout": None, "design": OfflineFast, "font": FONT, "font_url": "",
                   "sidebar_width": SIDEBAR_WIDTH, **options}
        page = pn.template.FastListTemplate(sidebar=self.sidebar(), main=self.main(), **options)
        self._serve_extras()
        return page

    def _serve_extras(self) -> None:
        """In a server session: sync the URL, sort the tables once ready, refresh the watch list."""
        if not served():
            return
        names = ScanConfig.setting_names()
        pn.state.location.sync(self.controller, dict(zip(names, names, strict=True)),
                               on_error=self._on_url_error)
        pn.state.curdoc.js_on_event("document_ready", columns.arrange_callback([self.table]))
        self._refresh_watch_list()
        pn.state.add_periodic_callback(self._refresh_watch_list, period=WATCH_REFRESH_MS)

    # --- reactions ----------------------------------------------------------------------

    def _on_view(self, event: param.parameterized.Event) -> None:
        """Show the columns of the view chosen (the browser re-sorts the new grid)."""
        with self.controller.document_lock:
            self.table.columns = self._shown_columns(event.new)
        pn.io.push_notebook(self._tabs)

    def _shown_columns(self, view: str) -> list:
        """Return the columns of ``view``, with the "New" marker in a live scan."""
        shown = self._columns[view]
        return live_cells.with_marker(shown, self._marker) if self._live else shown

    def _run(self, action) -> None:
        """Run a button's ``action`` on the next tick when served, else now.

        Panel 1.9.4 runs a click that arrives while a widget change is pending (the symbol
        search's, say) in a coroutine without the document lock; the action changes Bokeh
        models, so it waits for a next-tick callback, which holds the lock.
        """
        if served():
            pn.state.execute(lambda: self._act(action), schedule=True)
        else:
            self._act(action)

    def _act(self, action) -> None:
        try:
            action()
        except (ValueError, TooManyScans, UnknownScan) as exc:
            self.notices.notify("error", str(exc), duration=8000)

    def _toggle_pause(self) -> None:
        if self.controller.status == "paused":
            self.controller.resume()
        else:
            self.controller.pause()

    def _on_watch(self, event: param.parameterized.Event) -> None:
        if event.new not in (None, _NONE) and event.new != self.controller.scan_id:
            self._run(lambda: self.controller.watch(event.new))

    def _refresh_watch_list(self) -> None:
        c = self.controller
        options = {_NONE: _NONE}
        if c.scan_id and c.scan_config is not None:
            options[scan_label({"scan_id": c.scan_id, "config": c.scan_config.to_dict(),
                                "progress": {"processed": c.processed, "total": c.total}})] \
                = c.scan_id
        options.update((scan_label(scan), scan["scan_id"]) for scan in c.active_scans())
        if options != self._watch.options:
            self._watch.options = options
        self._watch.value = c.scan_id if c.scan_id in options.values() else _NONE

    @param.depends("signals", "min_tech_rating", "search", watch=True)
    def _apply_filter(self) -> None:
        self._view.filter.args = self._filter_args()
        self._refresh_stats()

    def _filter_args(self) -> dict[str, object]:
        return columns.filter_args(self.signals, self.min_tech_rating, self.search)

    def shown(self) -> int:
        """Return how many received rows pass the table filter (what the table shows)."""
        args, data = self._filter_args(), self.controller.cds.data
        if args == columns.filter_args() or not len(data["symbol"]):
            return len(data["symbol"])
        return int(columns.filter_mask(data, args).sum())

    def _on_update(self, *events: param.parameterized.Event) -> None:
        """Refresh the stats and buttons after the controller applied messages.

        While a live scan runs, the panes around the table refresh at most once per
        :data:`LIVE_PANES_PERIOD` (see :mod:`~technic_panel.ui.pacing`); toasts batch
        themselves, so they see every update.
        """
        c = self.controller
        names = {event.name for event in events}
        if "scan_id" in names:
            self._download.filename = f"{c.scan_id or 'scan'}.csv"
            self._symbol_card.visible, self._symbol = False, None
            self._toasts.reset()
            self._follow_live()
            self._refresh_watch_list()
        if "last_seq" in names:
            self._toasts.tell(c.strong_buys, c.new_alerts, c.errors,
                              ended=c.status not in ACTIVE_STATUSES | {"idle"})
        if names == {"last_seq"} and self._live and c.status == "running":
            self._panes.soon()
        else:
            self._panes.now()
        pn.io.push_notebook(self._tabs)

    def _refresh_panes(self) -> None:
        """Show the controller's figures in the stats, progress, counts, buttons and alerts."""
        c = self.controller
        with c.document_lock:
            self._refresh_stats()
            self._progress.max = max(c.total, 1)  # first: value's bounds follow max
            self._progress.value = min(c.processed, self._progress.max)
            self._counts.data = charts.signal_counts_data(c.signal_counts)
            self._dots.data = charts.scatter_data(c.cds.data)
            self._start.disabled = c.status in ACTIVE_STATUSES
            self._stop.disabled = self._pause.disabled = c.status not in ("running", "paused")
            self._pause.label = "Resume" if c.status == "paused" else "Pause"
            self._alerts.show(self._live, c.alerts, c.alerts_total)
        pn.io.push_notebook(self._tabs)

    def _on_strategy_error(self, event: param.parameterized.Event) -> None:
        if event.new:
            self.notices.notify("error", f"Strategy not applied: {event.new}", duration=8000)

    def _refresh_stats(self) -> None:
        shown = self.shown()
        self._stats.text = stats.stats_html(self.controller, shown)
        self._hint.text = stats.hint_html(self.controller, shown)

    def _follow_live(self) -> None:
        """Show the live marks and panel when the scan shown is live, hide them otherwise."""
        config = self.controller.scan_config
        live = bool(config is not None and config.live)
        if live != self._live:
            self._live = live
            with self.controller.document_lock:
                self.table.columns = self._shown_columns(self._view_choice.value)

    def _on_select(self, attr: str, old: list[int], new: list[int]) -> None:
        data = self.controller.cds.data["symbol"]
        if not new or new[0] >= len(data) or data[new[0]] == self._symbol:
            return
        self._symbol = data[new[0]]
        config = self.controller.scan_config or self.controller.config
        try:
            bars = candle_data(source_for(config, emulate_provider=False,
                                          policy=self.controller.policy), self._symbol)
        except (DataError, ValueError) as exc:
            self.notices.notify("error", f"no chart for {self._symbol}: {exc}")
            return
        row = self.controller.row(self._symbol)
        self._chart.show(bars, row)
        self._chart_title.text = stats.chart_title_html(self._symbol, row)
        self._symbol_card.visible = True

    def _csv(self) -> io.StringIO:
        """Return the rows the table shows as CSV: a date first, figures rounded, no formulas."""
        frame = self.controller.results
        if len(frame):
            frame = frame[columns.filter_mask(frame, self._filter_args())]
        frame = frame.drop(columns=[name for name in ("position", "total_processed",
                                                       "total_remaining") if name in frame])
        frame.insert(0, "date", self.controller.result_dates(frame["symbol"]))
        return io.StringIO(csv_text(frame))

    def _on_url_error(self, values: dict[str, Any]) -> None:
        """Apply the URL's settings one by one (``null`` is None); report and fix the bad ones.

        The report and the corrected URL wait for the page to load (``pn.state.onload``): a
        toast sent while the session is still being built never shows.
        """
        problems, bad = [], []
        for name, value in values.items():
            try:
                setattr(self.controller, name, None if value == "null" else value)
            except ValueError as exc:
                problems.append(str(exc))
                bad.append(name)
        new = [problem for problem in problems if problem not in self._url_problems]
        self._url_problems.update(new)
        if bad:
            pn.state.onload(lambda: self._correct_url(bad))
        if new:
            message = "Ignored in the URL: " + "; ".join(new)
            pn.state.onload(lambda: self.notices.notify("error", message, duration=10000))

    def _correct_url(self, names: list[str]) -> None:
        """Put the values in force in the URL for ``names`` (drop those that are None)."""
        location = pn.state.location
        if location is None:
            return
        query = dict(urllib.parse.parse_qsl(location.search.lstrip("?")))
        for name in names:
            value = getattr(self.controller, name)
            if value is None:
                query.pop(name, None)
            else:
                value = self.controller.param[name].serialize(value)
                query[name] = value if isinstance(value, str) else json.dumps(value)
        location.search = "?" + urllib.parse.urlencode(query)
