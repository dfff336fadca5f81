"""Toasts of the dashboard: Panel's notifications when served, a strip in the cell in notebooks.

Served, a notice is a Panel notification (Notyf, shipped with Panel and served locally),
shown top right over the header, away from the table. In a notebook Panel's notifications
cannot be relied on: with ``pn.extension(inline=True)``, the one way to render offline, Panel
inlines Notyf's script inside a function, so ``Notyf`` is undefined and every toast throws
(holoviz/panel#5662; seen with Panel 1.9.4 in tests/test_jupyterlab.py). So in a notebook the
notices are a strip of the dashboard's own layout, above the table, each kept for its
duration; nothing then depends on how Panel's JavaScript was loaded.

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

POSITION = "top-right"
"""Where served toasts appear: over the header, not over the table (set before rendering)."""

KINDS = ("success", "info", "warning", "error")
"""The kinds of notice, as Panel's notifications name them."""

TOAST_INTERVAL = 3.0
"""Least seconds between two STRONG_BUY toasts; symbols in between join the next one."""

ALERT_TOAST_INTERVAL = 3.0
"""Least seconds between two alert toasts; alerts in between join the next one."""

EXPIRE_MS = 500
"""How often a notebook strip drops the notices whose time is up."""

_STRIP_CSS = """
.notice { padding: 4px 10px; margin: 2px 0; border-radius: 4px; color: #fff; }
.notice.success { background: #1a9850; } .notice.info { background: #1e88e5; }
.notice.warning { background: #b26a00; } .notice.error { background: #c62828; }
"""


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
    """Show short notices; served as Panel toasts, elsewhere in :attr:`strip`.

    Not thread-safe by itself: pass the ``lock`` every writer of the document holds (the
    controller's ``document_lock``), which the strip's expiry callback takes too.

    Parameters
    ----------
    lock
        Held while the strip changes from the expiry callback.
    """

    def __init__(self, lock: threading.RLock | None = None) -> None:
        self.strip = HTMLBox(_STRIP_CSS, margin=(0, 5))
        """The notebook's notices, newest last (empty while there are none)."""
        self.shown: list[tuple[str, str, float]] = []
        """(kind, escaped message, expiry on the monotonic clock) of the strip's notices."""
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
        notifications = pn.state.notifications
        if served():
            if notifications is not None:
                getattr(notifications, kind)(text, duration=duration)
            return
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
        self.strip.text = "".join(f'<div class="notice {kind}" role="status">{text}</div>'
                                  for kind, text, _ in self.shown)


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
