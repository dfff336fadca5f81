"""The dashboard's statistics cards and its empty-state hint, as HTML built from escaped text.

Each figure carries a ``data-testid`` (``processed``, ``shown``, ``errors``, ``count-BUY``,
...) so tests read what a user reads. Every text from data or input goes through
:func:`html.escape` here, where it becomes HTML; numbers are formatted, never passed raw.
"""

from __future__ import annotations

import html
from typing import Any

from technic_panel.ui.colors import SIGNAL_COLORS
from technic_panel.vocabulary import SIGNALS

SIGNAL_LABELS = {"STRONG_BUY": "strong buy", "BUY": "buy", "HOLD": "hold", "SELL": "sell",
                 "STRONG_SELL": "strong sell"}
"""How the Signals card names each signal."""

CSS = """
.stats { display: flex; flex-wrap: wrap; gap: 8px; }
.card { flex: 1 1 96px; padding: 6px 10px; border-radius: 6px;
  border: 1px solid var(--neutral-stroke-rest, #ccc); }
.card.wide { flex: 3 1 250px; }
.label { font-size: 0.75em; opacity: 0.75; text-transform: uppercase; }
.value { font-size: 1.25em; font-weight: 600; white-space: nowrap; }
.signals { display: flex; flex-wrap: wrap; gap: 2px 10px; font-size: 0.85em; }
.signals b { font-size: 1.3em; }
.errors { color: #c62828; }
.hint { padding: 10px 14px; border-radius: 6px; border: 1px dashed #999; opacity: 0.85; }
"""


def _card(label: str, body: str, wide: bool = False) -> str:
    return (f'<div class="card{" wide" if wide else ""}"><div class="label">{label}</div>'
            f'<div class="value">{body}</div></div>')


def _num(value: float | None, fmt: str, testid: str) -> str:
    text = "" if value is None else format(value, fmt)
    return f'<span data-testid="{testid}">{text}</span>'


def _signals(counts: dict[str, int]) -> str:
    return '<div class="signals">' + "".join(
        f'<span style="color:{SIGNAL_COLORS[s]}"><b data-testid="count-{s}">'
        f'{counts.get(s, 0):,}</b> {SIGNAL_LABELS[s]}</span>' for s in SIGNALS) + "</div>"


def stats_html(c: Any, shown: int) -> str:
    """Return the cards of controller ``c``'s outputs; ``shown`` rows pass the table filter.

    The ETA is blank while nothing runs (idle, finished) and stands still while paused.
    """
    ended = f" · {c.outcome}" + (f" ({c.reason})" if c.reason else "") if c.outcome else ""
    running = c.status in ("running", "paused")
    eta = _num(c.eta if running else None, ",.0f", "eta") + (" s" if running and c.eta else "")
    errors = f'<span data-testid="errors" class="{"errors" if c.errors else ""}">{c.errors:,}' \
             "</span>"
    cards = [
        _card("Status", f'<span data-testid="status">{html.escape(c.status + ended)}</span>'),
        _card("Processed", f'{_num(c.processed, ",d", "processed")} / '
                           f'{_num(c.total, ",d", "total")}'),
        _card("Rows shown / received", f'{_num(shown, ",d", "shown")} / '
                                       f'{_num(c.rows, ",d", "rows")}'),
        _card("Errors", errors),
        _card("Rate", _num(c.rate, ",.0f", "rate") + " /s"),
        _card("ETA", eta),
        _card("Signals", _signals(c.signal_counts), wide=True),
        _card("Best", f'<span data-testid="best">{html.escape(c.best_symbol or "")}</span>'),
        *live_cards(c),
    ]
    return ('<div class="stats">' + "".join(cards) + '<span hidden data-testid="scan-id">'
            f'{html.escape(c.scan_id or "")}</span></div>')


def live_cards(c: Any) -> list[str]:
    """Return the live scan's cards (bars per second, feed clock, update latency); else none.

    The latency runs from a bar's ``feed_time`` to its row applied to the table: p50 / p99.
    """
    if c.scan_config is None or not c.scan_config.live:
        return []
    clock = html.escape((c.feed_clock or "").replace("T", " ").removesuffix("Z"))
    return [
        _card("Bars", _num(c.bars_per_second, ",.0f", "bars-per-second") + " /s"),
        _card("Feed clock", f'<span data-testid="feed-clock">{clock}</span>'),
        _card("Update latency", _num(c.update_latency_ms, ",.0f", "latency") + " / "
              + _num(c.update_latency_ms_p99, ",.0f", "latency-p99") + " ms"),
    ]


def hint_html(c: Any, shown: int) -> str:
    """Return what to do when the table is empty (nothing yet, or all filtered); else ``""``."""
    if c.rows and not shown:
        return ('<div class="hint" data-testid="hint">No row matches the table filter: '
                "widen Signal, Rating at least or Symbol above.</div>")
    if c.rows:
        return ""
    if c.status == "idle":
        return ('<div class="hint" data-testid="hint">No results yet. Choose the universe in '
                "the sidebar and press <b>Start</b>: rows appear as each symbol is scored, "
                "best first; click a row for its chart.</div>")
    if c.status in ("finished", "failed"):
        why = " (see the Errors tab)" if c.errors else \
            " (the scan's filter may exclude every symbol)" if (c.scan_config or c.config).filter \
            else ""
        return f'<div class="hint" data-testid="hint">The scan returned no rows{why}.</div>'
    return ""


def chart_title_html(symbol: str, row: dict[str, Any]) -> str:
    """Return the heading of ``symbol``'s chart: signal, rating and what the panes show."""
    rating = row.get("tech_rating")
    score = f" · rating {rating:.1f}" if isinstance(rating, (int, float)) else ""
    return (f'<div class="value" data-testid="chart-title">{html.escape(symbol)} · '
            f'{html.escape(str(row.get("signal", "")))}{score}</div><div class="label">daily: '
            "SMA 50/200, Bollinger, volume, RSI 14, MACD; the trade plan's entry, stop and "
            "target</div>")
