"""ScanController: one dashboard's scan, from the manager's thread to a ColumnDataSource.

A :class:`ScanController` *is* a :class:`~technic_panel.config.ScanConfig` (every scan
setting is one of its Parameters, the strategy's weights and thresholds included, named as
the CLI flags, the API body and the URL) plus the ``update_period`` and read-only outputs
(``status``, ...). Changing a strategy setting re-scores the rows already received at once,
from their own indicator values (:mod:`~technic_panel.ui.rescoring`), and the rows still
arriving from the scan, which runs with the settings it started with.

Mechanics: :meth:`~ScanController.start` has a
:class:`~technic_panel.streaming.manager.StreamManager` run the scan in the manager's thread and
subscribes to it. One periodic callback per controller
(``pn.state.add_periodic_callback(self._drain, period=update_period)``) runs on the
document's thread: it reads what has arrived with the non-blocking
``Subscription.get_batch(timeout=0)``, streams new rows into :attr:`~ScanController.cds`,
patches rows that an ``update`` changed, streams failed symbols into
:attr:`~ScanController.error_rows` and sets the outputs. The ``final`` message, a stop or a
destroyed browser session removes the callback and closes the subscription. The outputs are
computed in :mod:`~technic_panel.ui.outputs` (the rate and ETA stand still while paused).
:meth:`~ScanController.run` reads the same stream synchronously (scripts, notebooks).

A document may be changed from more than one thread: in JupyterLab (``commsOverSubshells``)
the browser's messages run on kernel threads of their own while the periodic callback runs on
the main one. So every method that changes the controller's models holds
:attr:`~ScanController.document_lock`, which the notebook layout holds while it applies the
browser's messages.

Live (``live=True``): the rows a bar changed are patched in place, with the live marks of
:mod:`~technic_panel.ui.table` (cells to flash, the ``new`` marker for ``new_bars`` bars);
the alerts, bars per second, feed clock and update latency
(:mod:`~technic_panel.ui.live_outputs`) are outputs like the others.
"""

from __future__ import annotations

import threading
from typing import Any

import pandas as pd
import panel as pn
import param
from bokeh.models import ColumnDataSource

from technic_panel.config import ScanConfig, strategy_for
from technic_panel.engine.scoring import STRATEGY_SETTINGS, Scorer, StrategyError
from technic_panel.policy import ServerPolicy
from technic_panel.streaming.manager import StreamManager, default_manager
from technic_panel.streaming.streamer import StreamEnded, Subscription
from technic_panel.streaming.tally import ScanTally
from technic_panel.ui.live_outputs import LiveFigures
from technic_panel.ui.locking import serialized
from technic_panel.ui.outputs import PauseClock, counters, failures, outcome, row_dates
from technic_panel.ui.rescoring import rescore_message, rescore_rows
from technic_panel.ui.table import TABLE_COLUMNS, ResultsTable, columns, error_columns
from technic_panel.vocabulary import ACTIVE_STATUSES, SIGNALS, VIEW_STATUSES

FIRST_DRAIN_MS = 25
"""A served scan is also drained once this soon after it starts, not a period later."""

STATUSES = VIEW_STATUSES
"""Every ``status`` a controller may have."""

RUN_POLL = 0.25
"""Seconds :meth:`ScanController.run` waits for messages before looking again."""

class ScanController(ScanConfig):
    """Run or watch one scan and stream its results into a ColumnDataSource.

    Every :class:`~technic_panel.config.ScanConfig` setting is a Parameter here, plus
    ``update_period``; outputs are read-only (``constant``) Parameters.

    Served, call its methods on the document's thread (Panel callbacks run there). In a
    notebook they may run on several kernel threads: each holds :attr:`document_lock` while
    it changes the table and the outputs. The scan itself runs in the manager's thread and
    reaches the controller only through its subscription.

    Parameters
    ----------
    manager
        Where scans run; default :func:`~technic_panel.streaming.manager.default_manager`.
    policy
        The server's :class:`~technic_panel.policy.ServerPolicy`, which every scan started
        here must keep to (the served dashboard); None (notebooks): no limits.
    owner
        Whose scans these are (see :class:`~technic_panel.streaming.manager.StreamManager`): the
        scans started here belong to it, and only its scans can be watched.
    **params
        Initial values of the settings.

    Examples
    --------
    >>> ScanController(symbols=50, manager=StreamManager()).run().shape[0]  # doctest: +SKIP
    50
    """

    update_period = param.Integer(default=100, bounds=(20, 5000),
                                  doc="Milliseconds between two updates of the table.")

    status = param.Selector(default="idle", objects=list(STATUSES), constant=True,
                            doc="idle, running, paused, stopping, finished or failed.")
    scan_id = param.String(default=None, allow_None=True, constant=True,
                           doc="The id of the scan shown (started here or watched).")
    processed = param.Integer(default=0, constant=True,
                              doc="Symbols processed so far (results, errors, filtered).")
    total = param.Integer(default=0, constant=True, doc="Symbols the scan will process.")
    rows = param.Integer(default=0, constant=True, doc="Results received: rows of the table.")
    rate = param.Number(default=0.0, constant=True, doc="Symbols processed per second.")
    eta = param.Number(default=None, allow_None=True, constant=True,
                       doc="Seconds until every symbol is processed, at the current rate.")
    elapsed = param.Number(default=0.0, constant=True, doc="Seconds since the scan started.")
    signal_counts = param.Dict(default=dict.fromkeys(SIGNALS, 0), constant=True,
                               doc="Results per signal.")
    mean_rating = param.Number(default=None, allow_None=True, constant=True,
                               doc="Mean tech_rating of the results.")
    best_symbol = param.String(default=None, allow_None=True, constant=True,
                               doc="The symbol with the highest tech_rating so far.")
    errors = param.Integer(default=0, constant=True, doc="Symbols whose data or scoring failed.")
    outcome = param.Selector(default=None, objects=[None, "completed", "stopped", "terminated",
                                                    "failed"], constant=True,
                             doc="How the scan ended (the final's status).")
    reason = param.String(default=None, allow_None=True, constant=True,
                          doc="Why it ended: manual, max_signals, ..., or the error.")
    strong_buys = param.List(default=[], item_type=str, constant=True,
                             doc="Symbols that became STRONG_BUY in the latest update.")
    last_seq = param.Integer(default=0, constant=True, doc="Seq of the last message applied.")
    rescored = param.Integer(default=0, constant=True,
                             doc="How often the rows received were re-scored (a strategy change).")
    new_bars = param.Integer(default=3, bounds=(1, 1000),
                             doc="Bars a live row that entered keeps its new marker.")
    alerts = param.List(default=[], constant=True,
                        doc="A live scan's latest alerts, newest first (bounded).")
    new_alerts = param.List(default=[], constant=True,
                            doc="The alerts of the latest update, oldest first.")
    alerts_total = param.Integer(default=0, constant=True, doc="Alerts received.")
    bars_per_second = param.Number(default=None, allow_None=True, constant=True,
                                   doc="Bars a live scan scores per second.")
    feed_clock = param.String(default=None, allow_None=True, constant=True,
                              doc="The latest bar_time applied (the live feed's clock).")
    update_latency_ms = param.Number(default=None, allow_None=True, constant=True,
                                     doc="Median ms from a bar's feed_time to its row applied.")
    update_latency_ms_p99 = param.Number(default=None, allow_None=True, constant=True,
                                         doc="99th percentile of the same latency.")
    strategy_error = param.String(default=None, allow_None=True, constant=True,
                                  doc="Why the strategy settings cannot score (None: they can).")

    def __init__(self, manager: StreamManager | None = None, *,
                 policy: ServerPolicy | None = None, owner: str | None = None,
                 **params: Any) -> None:
        super().__init__(**params)
        self._manager = manager
        self.policy = policy
        """The server's limits on the scans started here (None: none)."""
        self.owner = owner
        """Who the scans started here belong to (None: anyone may see them)."""
        self._subscription: Subscription | None = None
        self._callback: pn.io.PeriodicCallback | None = None
        self._owned = False
        self._tally = ScanTally()
        self._table = ResultsTable(self.new_bars)
        self._live = LiveFigures()
        self._session_docs: list = []
        self.document_lock = threading.RLock()
        """Held while the controller's models change; hold it to change them from elsewhere."""
        self.scan_config: ScanConfig | None = None
        """The settings of the scan shown (started here or watched); None before any."""
        self.cds = ColumnDataSource(data=columns([]))
        """The results table: one row per symbol, updated on the document's thread."""
        self.timeline = ColumnDataSource(data={"elapsed": [], "processed": []})
        """Symbols processed over time: one point per update."""
        self.error_rows = ColumnDataSource(data=error_columns([]))
        """The symbols that failed: symbol, what failed (``error``) and the ``message``."""
        self._pauses = PauseClock()
        self._dates: dict[str, str] = {}
        self._scorer: Scorer | None = None

    @property
    def manager(self) -> StreamManager:
        """The StreamManager the scans run in."""
        if self._manager is None:
            self._manager = default_manager()
        return self._manager

    @property
    def config(self) -> ScanConfig:
        """Return the scan settings alone, as a :class:`ScanConfig`."""
        return ScanConfig(**{name: getattr(self, name) for name in ScanConfig.setting_names()})

    @property
    def results(self) -> pd.DataFrame:
        """Every result received, one row per symbol in arrival order, updates applied."""
        if not self._tally.rows:
            return pd.DataFrame(columns=list(TABLE_COLUMNS))
        return pd.DataFrame.from_records(list(self._tally.rows.values()))

    @serialized
    def start(self) -> str:
        """Start a scan with the current settings and stream it live; return its id.

        Safe to call twice: while a scan is active this returns its id and starts nothing.

        Raises
        ------
        ConfigError
            If a setting is invalid (names the field; nothing starts).
        TooManyScans
            If the manager runs as many scans as it allows.
        """
        if self.status in ACTIVE_STATUSES:
            return self.scan_id
        self._launch()
        self._begin_drain()
        return self.scan_id

    @serialized
    def watch(self, scan_id: str) -> None:
        """Show a scan already running in the manager (started by the API, a script, ...).

        Every message of it so far is replayed, then it streams live. The settings take the
        scan's values, so the sidebar shows what it runs with. Stop it here and it stops for
        everyone; a scan started here before keeps running (watch it again).

        Raises
        ------
        UnknownScan
            If the manager holds no scan with this id.
        """
        if scan_id == self.scan_id and self.status in ACTIVE_STATUSES:
            return
        record = self.manager.get(scan_id, self.owner)
        subscription = self.manager.subscribe(scan_id, owner=self.owner)
        self._detach()
        self.scan_config = record.config
        self.param.update(record.config.to_dict())
        self._reset(scan_id, "paused" if record.paused else "running", owned=False)
        self._tally = ScanTally(elapsed=record.progress()["elapsed"])
        if record.paused:
            self._pauses.pause()
        self._subscription = subscription
        self._begin_drain()

    @serialized
    def stop(self) -> None:
        """Stop the scan; results already computed still arrive, then its ``final``.

        Safe to call twice, and when no scan is active.
        """
        if self.status not in ("running", "paused"):
            return
        self._set(status="stopping")
        self.manager.stop_stream(self.scan_id)

    @serialized
    def pause(self) -> None:
        """Pause the scan (no new work starts; work in flight still arrives); idempotent."""
        if self.status != "running":
            return
        self.manager.pause_stream(self.scan_id)
        self._pauses.pause()
        self._set(status="paused")

    @serialized
    def resume(self) -> None:
        """Resume a paused scan; a no-op when it is not paused."""
        if self.status != "paused":
            return
        self.manager.resume_stream(self.scan_id)
        self._pauses.resume()
        self._set(status="running")

    def run(self) -> pd.DataFrame:
        """Run a scan to its end on this thread (no document needed) and return :attr:`results`.

        Raises
        ------
        RuntimeError
            If a scan is already active here.
        ConfigError, TooManyScans
            As :meth:`start`.
        """
        if self.status in ACTIVE_STATUSES:
            raise RuntimeError(f"ScanController already shows scan {self.scan_id!r} "
                               f"({self.status}); stop() it or wait for its end")
        subscription = self._launch()
        try:
            while True:
                try:
                    messages = subscription.get_batch(timeout=RUN_POLL)
                except StreamEnded:
                    break
                with self.document_lock:
                    self._apply(messages)
        finally:
            if self.status in ACTIVE_STATUSES:  # interrupted: do not leave the scan running
                self.manager.stop_stream(self.scan_id)
            self._detach()
        return self.results

    def row(self, symbol: str) -> dict[str, Any]:
        """Return ``symbol``'s latest result (empty if none has arrived)."""
        return dict(self._tally.rows.get(symbol, {}))

    def result_dates(self, symbols: Any) -> list[str]:
        """Return the day (UTC, ``YYYY-MM-DD``) each symbol's row is as of.

        A live row's bar date (``bar_time``), else the day its result was computed.
        """
        return [self._dates.get(symbol, "") for symbol in symbols]

    def active_scans(self) -> list[dict[str, Any]]:
        """Return the manager's running scans other than this one's, newest first."""
        return [scan for scan in self.manager.list(self.owner)
                if scan["status"] == "running" and scan["scan_id"] != self.scan_id]

    # --- internals ----------------------------------------------------------------------

    def _launch(self) -> Subscription:
        """Start the scan in the manager and subscribe to it (nothing scheduled yet)."""
        config = self.config
        previous = self.scan_id if self._owned else None
        scan_id = self.manager.start_stream(config, policy=self.policy, owner=self.owner)
        if previous:
            self.manager.release(previous)
        self._detach()
        self.scan_config = config
        self._reset(scan_id, "running", owned=True)
        self._subscription = self.manager.subscribe(scan_id)
        return self._subscription

    def _reset(self, scan_id: str, status: str, *, owned: bool) -> None:
        self._tally, self._table = ScanTally(), ResultsTable(self.new_bars)
        self._live = LiveFigures()
        self._owned = owned
        self._pauses, self._dates, self._scorer = PauseClock(), {}, None
        self.cds.selected.indices = []
        self.cds.data = columns([])
        self.error_rows.data = error_columns([])
        self.timeline.data = {"elapsed": [], "processed": []}
        defaults = {name: self.param[name].default for name in (
            "processed", "total", "rows", "rate", "eta", "elapsed", "signal_counts",
            "mean_rating", "best_symbol", "errors", "outcome", "reason", "strong_buys",
            "last_seq", "alerts", "new_alerts", "alerts_total", "bars_per_second", "feed_clock",
            "update_latency_ms", "update_latency_ms_p99")}
        self._set(**defaults, scan_id=scan_id, status=status)

    def _set(self, **values: Any) -> None:
        with param.edit_constant(self):
            self.param.update(**values)

    def _begin_drain(self) -> None:
        """Schedule the one periodic callback that drains the subscription."""
        self._bind_session()
        self._callback = pn.state.add_periodic_callback(self._drain, period=self.update_period)
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            doc.add_timeout_callback(self._drain, FIRST_DRAIN_MS)

    @param.depends(*STRATEGY_SETTINGS, watch=True)
    @serialized
    def _rescore(self) -> None:
        """Re-score the rows received, and from now on those arriving, with the new settings."""
        try:
            scorer = strategy_for(self).scorer()
        except StrategyError as exc:
            self._set(strategy_error=str(exc))
            return
        self._scorer = scorer
        rescore_rows(self._tally, scorer)
        self._table.replace(self.cds, self._tally.rows)
        self._set(**counters(self._tally, self._pauses.seconds()), strategy_error=None,
                  rescored=self.rescored + 1)

    @param.depends("new_bars", watch=True)
    def _follow_new_bars(self) -> None:
        self._table.new_bars = self.new_bars

    @param.depends("update_period", watch=True)
    def _follow_update_period(self) -> None:
        if self._callback is not None:
            self._callback.period = self.update_period

    def _bind_session(self) -> None:
        doc = pn.state.curdoc
        if doc is None or doc.session_context is None or doc in self._session_docs:
            return
        self._session_docs.append(doc)
        pn.state.on_session_destroyed(self._on_session_destroyed)

    @serialized
    def _on_session_destroyed(self, session_context: Any) -> None:
        """Free the session's scan: stop it if it is ours, then unhook everything."""
        if self._owned and self.status in ACTIVE_STATUSES:
            self.manager.stop_stream(self.scan_id)
        self._detach()
        if self._owned and self.scan_id:
            self.manager.release(self.scan_id)
        self._session_docs.clear()

    @serialized
    def _drain(self) -> None:
        """Apply every message that has arrived; end with the ``final`` (never blocks)."""
        subscription = self._subscription
        if subscription is None:
            return
        try:
            messages = subscription.get_batch(timeout=0)
        except StreamEnded:
            messages = []
        if messages:
            self._apply(messages)
        if subscription.ended:
            self._detach()

    def _detach(self) -> None:
        """Remove the periodic callback and close the subscription; safe to call twice."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    def _apply(self, messages: list[dict[str, Any]]) -> None:
        """Apply messages in seq order: rows into the table, counters into the outputs."""
        if not messages:
            return
        tally, strong = self._tally, []
        if self._scorer is not None:
            messages = [rescore_message(message, self._scorer) for message in messages]
        self._dates.update(row_dates(messages))
        alerts = self._live.add_all(messages)
        self._table.advance(self._live.bars)
        for change in tally.add_all(messages):
            self._table.note(change)
            if change.became("STRONG_BUY"):
                strong.append(change.symbol)
        self._table.flush(self.cds, tally.rows)
        self._live.applied()
        failed = failures(messages)
        if failed:
            self.error_rows.stream(error_columns(failed))
        values = {**counters(tally, self._pauses.seconds()), "errors": tally.errors,
                  "strong_buys": strong, "last_seq": tally.last_seq,
                  **self._live.outputs(), "new_alerts": alerts}
        if tally.final is not None:
            values.update(outcome(tally.final))
        if tally.processed != self.processed or tally.final is not None:
            self.timeline.stream({"elapsed": [values["elapsed"]], "processed": [tally.processed]})
        self._set(**values)
