"""The alerts panel of a live scan: its latest alerts, newest first, as escaped text.

Each alert is one line (time of its bar, symbol, what happened, the rating), built from
:func:`html.escape`-d text: the symbol and the signals come from data and never become
HTML. The panel shows at most :data:`ALERTS_SHOWN` lines and names how many there were;
it takes no room outside a live scan.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from technic_panel.ui.colors import SIGNAL_COLORS
from technic_panel.ui.markup import HTMLBox

ALERTS_SHOWN = 20
"""Most alerts the panel lists."""

RULES = {"entered_filter": "entered the filter", "left_filter": "left the filter",
         "signal_changed": "changed signal"}
"""How the panel words each alert rule."""

CSS = """
.alerts { padding: 4px 10px; border-radius: 6px;
  border: 1px solid var(--neutral-stroke-rest, #ccc); max-height: 190px; overflow-y: auto; }
.alerts .label { font-size: 0.75em; opacity: 0.75; text-transform: uppercase; }
.alerts ol { list-style: none; margin: 2px 0; padding: 0; font-size: 0.85em; }
.alerts li { padding: 1px 0; white-space: nowrap; }
.alerts .when { opacity: 0.7; font-variant-numeric: tabular-nums; }
"""


def _signal(signal: Any) -> str:
    color = SIGNAL_COLORS.get(signal, "inherit")
    return f'<b style="color:{color}">{html.escape(str(signal or ""))}</b>'


def alert_line(alert: Mapping[str, Any]) -> str:
    """Return one alert as an ``<li>``: its bar time, symbol, rule, signals and rating."""
    when = html.escape(str(alert.get("bar_time") or "").replace("T", " ").removesuffix("Z"))
    rule = html.escape(RULES.get(alert.get("rule"), str(alert.get("rule"))))
    rating = alert.get("tech_rating")
    score = f" · {rating:.1f}" if isinstance(rating, (int, float)) else ""
    return (f'<li data-testid="alert"><span class="when">{when}</span> '
            f'<b>{html.escape(str(alert.get("symbol", "")))}</b> {rule}: '
            f'{_signal(alert.get("previous_signal"))} → {_signal(alert.get("signal"))}'
            f"{score}</li>")


def alerts_html(alerts: Sequence[Mapping[str, Any]], total: int) -> str:
    """Return the panel of ``alerts`` (newest first) out of ``total`` so far."""
    shown = alerts[:ALERTS_SHOWN]
    more = f" · latest {len(shown)}" if total > len(shown) else ""
    items = "".join(alert_line(alert) for alert in shown) or "<li>none yet</li>"
    return (f'<div class="alerts" data-testid="alerts"><div class="label">Alerts '
            f'<span data-testid="alerts-total">{total:,}</span>{more}</div>'
            f"<ol>{items}</ol></div>")


class AlertsPanel:
    """The alerts of the controller's live scan; set on the document's thread."""

    def __init__(self) -> None:
        self.box = HTMLBox(CSS)
        self.pane = self.box.pane
        """What the dashboard's layout shows."""

    def __repr__(self) -> str:
        return f"AlertsPanel(shown={bool(self.box.text)})"

    def show(self, live: bool, alerts: Sequence[Mapping[str, Any]], total: int) -> None:
        """Show ``alerts`` while the scan is ``live``; nothing (no room taken) otherwise."""
        self.box.text = alerts_html(alerts, total) if live else ""
