"""Toasts of the dashboard: a strip of its own layout, floating top right when served.

A notice is a line of the dashboard's notice strip, kept for its duration. Served, the strip
floats over the header, top right, away from the table (:data:`FLOATING_CSS`); in a notebook it
sits above the table. Not Panel's notifications: served, each one changes Panel's
notification area, and Bokeh then walks every model of the page (about 540, 35 ms) on the
loop that also drains the live table, 2.7 s a minute at 5,000 live symbols (py-spy,
benchmarks/bench_live.py's browser case); the strip is one ``Div`` whose text changes. In a
notebook, Panel's notifications cannot be relied on anyway: with ``pn.extension(inline=True)``,
the one way to render offline, Panel inlines Notyf's script inside a function, so ``Notyf``
is undefined and every toast throws (holoviz/panel#5662; Panel 1.9.4).

Every message is plain text, escaped here, where it becomes HTML.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import panel as pn

from technic_panel.ui.alerts_panel import RULES
from technic_panel.ui.markup import HTMLBox

KINDS = ("success", "info", "warning", "error")
"""The kinds of notice, as Panel's notifications name them."""

TOAST_INTERVAL = 3.0
"""Least seconds between two STRONG_BUY toasts; symbols in between join the next one."""

ALERT_TOAST_INTERVAL = 3.0
"""Least seconds between two alert toasts; alerts in between join the next one."""

EXPIRE_MS = 500
"""How often the strip (notebook or served) drops the notices whose time is up."""

_STRIP_CSS = """
.notice { padding: 4px 10px; margin: 2px 0; border-radius: 4px; color: #fff;
          box-shadow: 0 1px 4px rgba(0, 0, 0, 0.3); }
.notice.success { background: #1a9850; } .notice.info { background: #1e88e5; }
.notice.warning { background: #b26a00; } .notice.error { background: #c62828; }
"""

FLOATING_CSS = """
.notices { position: fixed; top: 6px; right: 16px; width: min(420px, 60vw); z-index: 1000; }
"""
"""The served strip: over the header, top right, never over the table."""


class Batches:
    """Collect items to tell; hand them over at most once per ``interval`` seconds.

    What arrives in between joins the next batch, so a burst makes one toast, not many.
    """

    def __init__(self, interval: float, clock: Any = time.monotonic) -> None:
        self.interval, self._clock = interval, clock
        self.pending: list[Any] = []
        self._last = float("-inf")

    def __repr__(self) -> str:
        return f"Batches(interval={self.interval}, pending={len(self.pending)})"

    def take(self, items: list[Any], now: bool = False) -> list[Any]:
        """Add ``items``; return the batch due (all pending if ``now``), else ``[]``."""
        self.pending.extend(items)
        moment = self._clock()
        if not self.pending or not (now or moment - self._last >= self.interval):
            return []
        batch, self.pending, self._last = self.pending, [], moment
        return batch


def served() -> bool:
    """Whether this runs in a server session (``panel serve``), not a notebook or a script."""
    doc = pn.state.curdoc
    return doc is not None and doc.session_context is not None


class Notices:
    """Show short notices in :attr:`strip`, newest last, at most three at a time.

    Not thread-safe by itself: pass the ``lock`` every writer of the document holds (the
    controller's ``document_lock``), which the strip's expiry callback takes too.

    Parameters
    ----------
    lock
        Held while the strip changes from the expiry callback.
    floating
        Float the notices over the page, top right (served), rather than in the layout.
    """

    def __init__(self, lock: threading.RLock | None = None, *, floating: bool = False) -> None:
        self.strip = (HTMLBox(_STRIP_CSS + FLOATING_CSS, margin=0, height=0) if floating
                      else HTMLBox(_STRIP_CSS, margin=(0, 5)))
        """The notices shown, newest last (empty while there are none)."""
        self.shown: list[tuple[str, str, float]] = []
        """(kind, escaped message, expiry on the monotonic clock) of the notices shown."""
        self._lock = lock or threading.RLock()
        self._expiry: Any = None

    def __repr__(self) -> str:
        return f"Notices(shown={len(self.shown)}, served={served()})"

    def notify(self, kind: str, message: str, duration: int = 4000) -> None:
        """Show ``message`` (plain text) as a ``kind`` notice for ``duration`` ms."""
        if kind not in KINDS:
            raise ValueError(f"Notices.notify kind must be one of {', '.join(KINDS)}, "
                             f"not {kind!r}")
        text = html.escape(message)
        with self._lock:
            self.shown = [*self.shown[-2:], (kind, text, time.monotonic() + duration / 1000)]
            self._render()
            if self._expiry is None:
                self._expiry = pn.state.add_periodic_callback(self.expire, period=EXPIRE_MS)

    def expire(self) -> None:
        """Drop the strip's notices whose time is up; stop looking once none is left."""
        with self._lock:
            now = time.monotonic()
            kept = [notice for notice in self.shown if notice[2] > now]
            if len(kept) != len(self.shown):
                self.shown = kept
                self._render()
            if not kept and self._expiry is not None:
                self._expiry.stop()
                self._expiry = None

    def _render(self) -> None:
        notices = "".join(f'<div class="notice {kind}" role="status">{text}</div>'
                          for kind, text, _ in self.shown)
        self.strip.text = f'<div class="notices">{notices}</div>' if notices else ""


class ScanToasts:
    """A scan's toasts: new STRONG_BUYs and alerts, batched; its first failures, once.

    Call :meth:`tell` after every update the controller applies (a batch that is not yet
    due waits for the next call) and :meth:`reset` when another scan is shown.
    """

    def __init__(self, notices: Notices) -> None:
        self.notices = notices
        self.strong_buys = Batches(TOAST_INTERVAL)
        self.alerts = Batches(ALERT_TOAST_INTERVAL)
        self.errors_told = False

    def __repr__(self) -> str:
        return f"ScanToasts(strong_buys={self.strong_buys}, alerts={self.alerts})"

    def reset(self) -> None:
        """Forget the batches and the errors told of the scan shown before."""
        self.strong_buys.pending.clear()
        self.alerts.pending.clear()
        self.errors_told = False

    def tell(self, strong_buys: list[str], alerts: list[dict[str, Any]], errors: int,
             ended: bool) -> None:
        """Toast what is due of the new ``strong_buys`` and ``alerts`` (all once ``ended``).

        At most one toast of each kind per update and per interval; the first ``errors``
        of a scan make one toast pointing at the Errors tab, which lists them all.
        """
        symbols = self.strong_buys.take(strong_buys, now=ended)
        if symbols:
            more = f" and {len(symbols) - 3} more" if len(symbols) > 3 else ""
            self.notices.notify("success", f"STRONG_BUY: {', '.join(symbols[:3])}{more}")
        due = self.alerts.take(alerts, now=ended)
        if due:
            said = [f"{alert['symbol']} {RULES.get(alert['rule'], alert['rule'])} "
                    f"({alert['signal']})" for alert in due[-3:]]
            more = f" and {len(due) - 3} more" if len(due) > 3 else ""
            self.notices.notify("info", f"Alert: {'; '.join(reversed(said))}{more}")
        if errors and not self.errors_told:
            self.errors_told = True
            some = "1 symbol" if errors == 1 else f"{errors:,} symbols"
            self.notices.notify("warning", f"{some} failed so far: see the Errors tab",
                                duration=6000)
