"""The Panel view of a ScanController: controls, live stats, the results table and charts.

The controller is the model and never imports this view; the view is one line, in a notebook
cell or in ``app.py`` (a :class:`panel.viewable.Viewer`, as in Panel's reference apps)::

    Dashboard(controller)                                # the live dashboard in the cell
    Dashboard(controller).servable(title="technic-panel")  # `panel serve app.py`

The dashboard reads the controller's outputs and ColumnDataSources and calls its
``start`` / ``stop`` / ``pause`` / ``resume`` / ``watch``; it never touches the stream.
Filters (signal, tier, least tech_rating, symbol search) live in a ``CDSView`` whose
filter runs in the browser on every row, so they apply to rows shown and rows still
arriving while the source keeps every row. Served, the settings follow the URL
(``/app?symbols=2000&latency_ms=20&max_signals=10``) through ``pn.state.location.sync``.

No HTML from data: every text built from input or data (toasts, stats, titles) is escaped
here, where it becomes HTML; the table, tooltips and the watch list render text, not HTML
(Bokeh's formatters and Select). The CSV export neutralises formula cells (:func:`csv_safe`).

Served, the dashboard lives on its document's thread. In a notebook,
:class:`~technic_panel.ui.notebook.NotebookLayout` applies the browser's messages under the
controller's ``document_lock`` and drops the browser's echoes of the data sources' updates (a
workaround for Panel's notebook comms, version-guarded there).
"""

from __future__ import annotations

import html
import io
import time
from typing import Any

import pandas as pd
import panel as pn
import param
from bokeh.models import ColumnDataSource

from technic_panel.config import ScanConfig, source_for
from technic_panel.data import DataError
from technic_panel.streaming.manager import TooManyScans, UnknownScan
from technic_panel.ui import charts
from technic_panel.ui.controller import ScanController
from technic_panel.ui.notebook import NotebookLayout
from technic_panel.vocabulary import ACTIVE_STATUSES, PRIORITY_TIERS, SIGNALS

SETTING_GROUPS = {
    "Universe": ("source", "path", "symbols", "seed", "sectors", "min_price",
                 "min_dollar_volume", "filter"),
    "Execution": ("executor", "workers", "scheduler", "latency_ms", "error_rate",
                  "update_period"),
    "Early termination": ("max_signals", "min_rating", "quality_signals", "max_fraction",
                          "timeout"),
}
"""The sidebar's cards of settings, each a list of the controller's Parameter names."""

WIDGETS = {  # inputs rather than sliders where a value is typed or may be None
    "symbols": pn.widgets.IntInput, "seed": pn.widgets.IntInput, "workers": pn.widgets.IntInput,
    "latency_ms": pn.widgets.FloatInput, "max_fraction": pn.widgets.FloatInput,
    "timeout": pn.widgets.FloatInput, "sectors": pn.widgets.MultiChoice,
    "quality_signals": pn.widgets.MultiChoice,
}

WATCH_REFRESH_MS = 2000
"""How often a served dashboard refreshes its list of scans to watch."""

TOAST_INTERVAL = 3.0
"""Least seconds between two STRONG_BUY toasts; symbols in between join the next one."""

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may read as the start of a formula (OWASP CSV injection)."""

_NONE = "(none)"
_STATS_CSS = """
.stats { display: flex; flex-wrap: wrap; gap: 8px; }
.card { flex: 1 1 110px; padding: 6px 12px; border-radius: 6px;
  border: 1px solid var(--neutral-stroke-rest, #ccc); }
.label { font-size: 0.75em; opacity: 0.7; text-transform: uppercase; }
.value { font-size: 1.3em; font-weight: 600; white-space: nowrap; }
"""


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with text cells that start a formula prefixed by ``'`` (OWASP).

    Only strings change: numbers, negative ones included, stay numbers.
    """
    def cell(value: Any) -> Any:
        return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) \
            else value

    text = [name for name in frame.columns if not pd.api.types.is_numeric_dtype(frame[name])]
    return frame.assign(**{name: frame[name].map(cell) for name in text})


def _card(label: str, body: str) -> str:
    return (f'<div class="card"><div class="label">{label}</div>'
            f'<div class="value">{body}</div></div>')


def _num(value: float | None, fmt: str, testid: str) -> str:
    text = "—" if value is None else format(value, fmt)
    return f'<span data-testid="{testid}">{text}</span>'


class Dashboard(pn.viewable.Viewer):
    """Controls, stats, table and charts of one :class:`ScanController`.

    A :class:`panel.viewable.Viewer`: displayed in a notebook it renders :meth:`layout`;
    ``servable()`` or ``pn.serve`` in a server session render :meth:`template` (see
    :meth:`__panel__`).

    Parameters
    ----------
    controller
        The scan shown; its Parameters give the sidebar's widgets.
    """

    signals = param.ListSelector(default=[], objects=list(SIGNALS),
                                 doc="Show only these signals (empty: all).")
    tiers = param.ListSelector(default=[], objects=list(PRIORITY_TIERS),
                               doc="Show only these priority tiers (empty: all).")
    min_tech_rating = param.Number(default=0.0, bounds=(0, 100),
                                   doc="Show only rows with at least this tech_rating.")
    search = param.String(default="", doc="Show only symbols containing this text.")

    def __init__(self, controller: ScanController, **params: Any) -> None:
        super().__init__(**params)
        self.controller = controller
        self._view = charts.results_view()
        self._counts = ColumnDataSource(charts.signal_counts_data({}))
        self._candles = charts.empty_candles()
        self._symbol = None
        self._pending_toast: list[str] = []
        self._last_toast = float("-inf")
        self._url_problems: set[str] = set()
        self._build_widgets()
        self._build_panes()
        controller.param.watch(self._on_update, ["last_seq", "status", "scan_id"])
        controller.cds.selected.on_change("indices", self._on_select)
        self._on_update()

    # --- building -----------------------------------------------------------------------

    def _build_widgets(self) -> None:
        self._start = pn.widgets.Button(label="Start", color="primary", width=90)
        self._stop = pn.widgets.Button(label="Stop", color="danger", width=90)
        self._pause = pn.widgets.Button(label="Pause", color="warning", width=90)
        self._start.on_click(lambda _: self._run(self.controller.start))
        self._stop.on_click(lambda _: self._run(self.controller.stop))
        self._pause.on_click(lambda _: self._run(self._toggle_pause))
        self._watch = pn.widgets.Select(label="Watch scan", options=[_NONE], value=_NONE)
        self._watch.param.watch(self._on_watch, "value")
        self._download = pn.widgets.FileDownload(callback=self._csv, filename="scan.csv",
                                                 label="Download CSV", color="success",
                                                 width=160, align="end")
        search = pn.widgets.TextInput(label="Symbol", placeholder="search", width=120)
        search.param.watch(lambda event: setattr(self, "search", event.new), "value_input")
        self._filters = pn.Row(
            pn.widgets.MultiChoice.from_param(self.param.signals, label="Signal", width=260),
            pn.widgets.MultiChoice.from_param(self.param.tiers, label="Tier", width=200),
            pn.widgets.FloatSlider.from_param(self.param.min_tech_rating, label="Min rating",
                                              step=1, width=160),
            search, self._download, sizing_mode="stretch_width")

    def _build_panes(self) -> None:
        controller = self.controller
        self._stats = pn.pane.HTML("", stylesheets=[_STATS_CSS], sizing_mode="stretch_width")
        self._progress = pn.indicators.Progress(value=0, max=1, sizing_mode="stretch_width",
                                                bar_color="success", height=12)
        self._table = pn.pane.Bokeh(charts.results_table(controller.cds, self._view),
                                    sizing_mode="stretch_width")
        self._charts = pn.Row(
            pn.pane.Bokeh(charts.rating_scatter(controller.cds, self._view),
                          sizing_mode="stretch_width"),
            pn.pane.Bokeh(charts.signal_bars(self._counts), sizing_mode="stretch_width"),
            pn.pane.Bokeh(charts.progress_chart(controller.timeline),
                          sizing_mode="stretch_width"),
            sizing_mode="stretch_width")
        self._symbol_card = pn.Card(pn.pane.Bokeh(charts.candlestick(self._candles),
                                                  sizing_mode="stretch_width"),
                                    title="Click a row for its chart", visible=False,
                                    sizing_mode="stretch_width")

    def sidebar(self, collapsed: bool = True) -> list:
        """Return the sidebar: buttons, the scan to watch and the settings in cards.

        ``collapsed`` folds every card but Universe (the served template's sidebar).
        """
        controller = self.controller
        cards = [pn.Card(pn.Param(controller, parameters=list(names), widgets=WIDGETS,
                                  show_name=False, sort=False),
                         title=title, collapsed=collapsed and title != "Universe",
                         sizing_mode="stretch_width")
                 for title, names in SETTING_GROUPS.items()]
        strategy = pn.Param(controller.strategy, show_name=False, sort=False)
        return [pn.Row(self._start, self._pause, self._stop), self._watch, *cards,
                pn.Card(strategy, title="Strategy", collapsed=collapsed,
                        sizing_mode="stretch_width")]

    def main(self) -> list:
        """Return the main area: stats, progress, filters, table, symbol chart, charts."""
        return [self._stats, self._progress, self._filters, self._table, self._symbol_card,
                self._charts]

    def __panel__(self) -> pn.viewable.Viewable | pn.template.BaseTemplate:
        """Return the view: a FastListTemplate in a server session, else a plain layout."""
        doc = pn.state.curdoc
        served = doc is not None and doc.session_context is not None
        return self.template() if served else self.layout()

    def layout(self) -> NotebookLayout:
        """Return the dashboard as one layout (notebooks: no template).

        Its setting cards are open: BokehJS fails to render a DataTable that shares one root
        with a collapsed Card ("reading 'resizeCanvas'"; found by tests/test_jupyterlab.py).
        """
        main = pn.Column(*self.main(), sizing_mode="stretch_width")
        sidebar = pn.Column(*self.sidebar(collapsed=False), width=330)
        owned = [self.controller.cds, self.controller.timeline, self._counts, self._candles]
        return NotebookLayout(sidebar, main, owned=owned, lock=self.controller.document_lock,
                              sizing_mode="stretch_width")

    def template(self, **options: Any) -> pn.template.BaseTemplate:
        """Return the dashboard in a FastListTemplate (light/dark toggle); served, URL-synced."""
        options = {"title": "technic-panel", "accent": "#00A170", "theme_toggle": True,
                   "main_layout": None, **options}
        page = pn.template.FastListTemplate(sidebar=self.sidebar(), main=self.main(), **options)
        self._serve_extras()
        return page

    def _serve_extras(self) -> None:
        """In a server session: sync the URL with the settings, refresh the watch list."""
        doc = pn.state.curdoc
        if doc is None or doc.session_context is None:
            return
        names = ScanConfig.setting_names()
        pn.state.location.sync(self.controller, dict(zip(names, names, strict=True)),
                               on_error=self._on_url_error)
        pn.state.add_periodic_callback(self._refresh_watch_list, period=WATCH_REFRESH_MS)

    # --- reactions ----------------------------------------------------------------------

    def _run(self, action) -> None:
        try:
            action()
        except (ValueError, TooManyScans, UnknownScan) as exc:
            self._notify("error", str(exc), duration=8000)

    def _toggle_pause(self) -> None:
        if self.controller.status == "paused":
            self.controller.resume()
        else:
            self.controller.pause()

    def _on_watch(self, event: param.parameterized.Event) -> None:
        if event.new not in (None, _NONE) and event.new != self.controller.scan_id:
            self._run(lambda: self.controller.watch(event.new))

    def _refresh_watch_list(self) -> None:
        ids = [scan["scan_id"] for scan in self.controller.active_scans()]
        current = self.controller.scan_id
        self._watch.options = [_NONE, *([current] if current else []), *ids]

    @param.depends("signals", "tiers", "min_tech_rating", "search", watch=True)
    def _apply_filter(self) -> None:
        self._view.filter.args = self._filter_args()

    def _filter_args(self) -> dict[str, object]:
        return charts.filter_args(self.signals, self.tiers, self.min_tech_rating, self.search)

    def _on_update(self, *events: param.parameterized.Event) -> None:
        """Refresh the stats and buttons after the controller applied messages."""
        c = self.controller
        self._refresh_stats()
        self._progress.max = max(c.total, 1)  # first: value's bounds follow max
        self._progress.value = min(c.processed, self._progress.max)
        self._counts.data = charts.signal_counts_data(c.signal_counts)
        active = c.status in ACTIVE_STATUSES
        self._start.disabled = active
        self._stop.disabled = c.status not in ("running", "paused")
        self._pause.disabled = c.status not in ("running", "paused")
        self._pause.label = "Resume" if c.status == "paused" else "Pause"
        names = {event.name for event in events}
        if "scan_id" in names:
            self._download.filename = f"{c.scan_id or 'scan'}.csv"
            self._symbol_card.visible, self._symbol = False, None
            self._pending_toast.clear()
            self._refresh_watch_list()
        if "last_seq" in names:
            self._toast_strong_buys(c.strong_buys)
        pn.io.push_notebook(self._table)

    def _refresh_stats(self) -> None:
        c = self.controller
        ended = f" · {c.outcome}" + (f" ({c.reason})" if c.reason else "") if c.outcome else ""
        ended, best = html.escape(ended), html.escape(c.best_symbol or "—")
        counts = " ".join(
            f'<span style="color:{charts.SIGNAL_COLORS[s]}" title="{s}" '
            f'data-testid="count-{s}">{c.signal_counts.get(s, 0)}</span>' for s in SIGNALS)
        cards = [
            ("Status", f'<span data-testid="status">{html.escape(c.status)}{ended}</span>'),
            ("Processed", f'{_num(c.processed, ",d", "processed")} / '
                          f'{_num(c.total, ",d", "total")}'),
            ("Rows", _num(c.rows, ",d", "rows")),
            ("Rate", _num(c.rate, ",.0f", "rate") + " /s"),
            ("ETA", _num(c.eta, ".1f", "eta") + " s"),
            ("Signals", counts),
            ("Best", f'<span data-testid="best">{best}</span>'),
        ]
        self._stats.object = ('<div class="stats">' + "".join(_card(*card) for card in cards)
                              + '<span hidden data-testid="scan-id">'
                              f'{html.escape(c.scan_id or "")}</span>'
                              "</div>")

    def _toast_strong_buys(self, symbols: list[str]) -> None:
        """Toast new STRONG_BUYs: at most one toast per update and per TOAST_INTERVAL."""
        self._pending_toast.extend(symbols)
        now = time.monotonic()
        ended = self.controller.status not in ACTIVE_STATUSES | {"idle"}
        if self._pending_toast and (ended or now - self._last_toast >= TOAST_INTERVAL):
            symbols, self._pending_toast, self._last_toast = self._pending_toast, [], now
            more = f" and {len(symbols) - 3} more" if len(symbols) > 3 else ""
            self._notify("success", f"STRONG_BUY: {', '.join(symbols[:3])}{more}")

    def _on_select(self, attr: str, old: list[int], new: list[int]) -> None:
        data = self.controller.cds.data["symbol"]
        if not new or new[0] >= len(data) or data[new[0]] == self._symbol:
            return
        self._symbol = data[new[0]]
        config = self.controller.scan_config or self.controller.config
        try:
            self._candles.data = charts.candle_data(
                source_for(config, emulate_provider=False, policy=self.controller.policy),
                self._symbol)
        except (DataError, ValueError) as exc:
            self._notify("error", f"no chart for {self._symbol}: {exc}")
            return
        title = f"{html.escape(self._symbol)} · daily: SMA 50/200, Bollinger, volume, RSI 14"
        self._symbol_card.param.update(title=title, visible=True, collapsed=False)

    def _csv(self) -> io.StringIO:
        frame = self.controller.results
        if len(frame):
            frame = frame[charts.filter_mask(frame, self._filter_args())]
        # CRLF ends rows (RFC 4180), so a cell holding CR or LF is quoted, not split
        return io.StringIO(csv_safe(frame).to_csv(index=False, lineterminator="\r\n"))

    def _on_url_error(self, values: dict[str, Any]) -> None:
        """Apply the URL's settings one by one (``null`` is None) and report the bad ones.

        The report waits for the page to load (``pn.state.onload``): a toast sent while the
        session is still being built never shows.
        """
        problems = []
        for name, value in values.items():
            try:
                setattr(self.controller, name, None if value == "null" else value)
            except ValueError as exc:
                problems.append(str(exc))
        new = [problem for problem in problems if problem not in self._url_problems]
        self._url_problems.update(new)
        if new:
            message = "Ignored in the URL: " + "; ".join(new)
            pn.state.onload(lambda: self._notify("error", message, duration=10000))

    @staticmethod
    def _notify(kind: str, message: str, duration: int = 4000) -> None:
        """Toast ``message``, a plain text, escaped: the toast renders its message as HTML."""
        notifications = pn.state.notifications
        if notifications is not None:
            getattr(notifications, kind)(html.escape(message), duration=duration)
