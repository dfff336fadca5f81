"""How ``technic-scan`` shows a scan: NDJSON lines, a table (live on a terminal) or CSV.

Each view takes the stream's batches in ``show`` and its last message in ``close``;
:func:`make_view` picks one for ``--format`` (for a live scan's table,
:class:`LiveTableView`: rows re-ranked in place and alerts). The table and CSV views fold the
messages into a :class:`~technic_panel.streaming.tally.ScanTally` (one row per symbol,
updates applied) and rank the rows by tech_rating. Text from data (symbols, sectors)
reaches the terminal with control characters replaced, so a file name cannot move the
cursor or clear the screen; the CSV is written by
:func:`~technic_panel.streaming.export.csv_text`, as the dashboard's download is.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

import pandas as pd

from technic_panel.streaming.export import csv_text
from technic_panel.streaming.jsonsafe import to_json
from technic_panel.streaming.tally import ScanTally

PROG = "technic-scan"
FORMATS = ("ndjson", "table", "csv")
REDRAW_SECONDS = 0.2
"""Least time between two redraws of the live table."""
LIVE_ROWS, FINAL_ROWS = 10, 20
"""Rows of the table while the scan runs and once it has ended."""
CSV_COLUMNS = (
    "date", "rank", "symbol", "signal", "tech_rating", "alpha_score", "price", "sector",
    "name", "industry", "side", "entry", "stop", "target", "reward_risk", "rsi_14", "adx_14",
    "rel_volume", "roc_5", "roc_21", "change_pct", "atr_pct", "market_cap",
    "avg_dollar_volume_20", "priority_tier",
)
"""The columns of ``--format csv``: the table's, then the trade plan and what traders read.

``date`` is the local day the row arrived, ``rank`` its place by tech_rating.
"""
LIVE_REDRAW_SECONDS = 0.25
"""Least time between two redraws (or printouts) of a live scan's table: 4 a second."""
ALERT_LINES = 5
"""Alerts a live scan's table shows below its rows on a terminal, newest last."""
_CLEAR = "\x1b[H\x1b[2J"
_UP, _ERASE_LINE, _ERASE_BELOW = "\x1b[{}A\r", "\x1b[K", "\x1b[J"
"""Cursor up N lines to column 0; erase to the end of the line; erase below the cursor."""


def make_view(fmt: str, out: TextIO, *, live: bool = False) -> View:
    """Return the view of ``--format`` ``fmt`` writing to ``out``.

    A table is redrawn on a terminal; ``live`` (a live scan) picks :class:`LiveTableView`.
    """
    if fmt == "csv":
        return CsvView(out)
    if fmt == "ndjson":
        return NdjsonView(out)
    return (LiveTableView if live else TableView)(out, live=out.isatty())


class NdjsonView:
    """Write each message as one line of JSON, flushing after every batch."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def show(self, batch: list[dict]) -> None:
        """Write ``batch``, one line a message, and flush."""
        if batch:
            self.out.write("".join(f"{to_json(msg)}\n" for msg in batch))
            self.out.flush()

    def close(self, final: dict) -> None:
        """Nothing to add: the final was written with its batch."""


def _ranked(tally: ScanTally) -> list[dict]:
    """Return the rows best first: highest tech_rating, then symbol."""
    return sorted(tally.rows.values(), key=lambda row: (-row["tech_rating"], row["symbol"]))


def _table(tally: ScanTally, count: int) -> list[str]:
    """Return the header and the ``count`` best rows, the symbol column as wide as needed."""
    top = _ranked(tally)[:count]
    width = max([len("symbol"), *(len(_printable(row["symbol"])) for row in top)])
    header = (f"{'#':>3}  {'symbol':<{width}} {'signal':<11} {'tech_rating':>11} "
              f"{'alpha_score':>11} {'price':>10}  sector")
    return [header, *(_row_line(rank, row, width) for rank, row in enumerate(top, 1))]


def _dashboard(tally: ScanTally, count: int, status: str) -> list[str]:
    """Return the live view: title, progress bar (ETA while running), counts, top rows."""
    counts = " | ".join(f"{name} {number}" for name, number in tally.signal_counts.items())
    pace = tally.pace()
    progress = _progress_bar(tally.processed, tally.total, pace.rate)
    if status == "running":
        progress += f"  ETA {_duration(pace.eta)}"
    return [f"{PROG}  {tally.scan_id or ''}  {status}", progress,
            f"{counts} | errors {tally.errors}", "", *_table(tally, count)]


class TableView:
    """Show the scan as a table: redrawn live on a terminal, else printed once at the end."""

    def __init__(self, out: TextIO, *, live: bool) -> None:
        self.out, self.live = out, live
        self.tally = ScanTally(clock=time.monotonic)
        self._drawn_at = float("-inf")

    def show(self, batch: list[dict]) -> None:
        """Fold ``batch`` in; on a terminal, redraw at most every REDRAW_SECONDS."""
        self.tally.add_all(batch)
        now = time.monotonic()
        if self.live and now - self._drawn_at >= REDRAW_SECONDS:
            self._drawn_at = now
            self._write(_dashboard(self.tally, LIVE_ROWS, "running"), clear=True)

    def close(self, final: dict) -> None:
        """Print the last view (a terminal) or the table (otherwise), then a summary line."""
        data = final["data"]
        lines = (_dashboard(self.tally, FINAL_ROWS, data["status"]) if self.live
                 else _table(self.tally, FINAL_ROWS))
        self._write([*lines, _summary(data)], clear=self.live)

    def _write(self, lines: list[str], *, clear: bool) -> None:
        self.out.write((_CLEAR if clear else "") + "\n".join(lines) + "\n")
        self.out.flush()


class CsvView:
    """Keep each symbol's latest row and the day it arrived; write them all as CSV at the end."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tally = ScanTally()
        self.dates: dict[str, str] = {}

    def show(self, batch: list[dict]) -> None:
        """Fold ``batch`` in, noting the day each result or update arrived."""
        for message in batch:
            change = self.tally.add(message)
            if change is not None:
                self.dates[change.symbol] = _local_date(message["metadata"]["timestamp"])

    def close(self, final: dict) -> None:
        """Write the header and every row, best first; say on stderr what went wrong, if any."""
        rows = [{**row, "date": self.dates[row["symbol"]], "rank": rank}
                for rank, row in enumerate(_ranked(self.tally), 1)]
        frame = pd.DataFrame.from_records(rows).reindex(columns=list(CSV_COLUMNS))
        self.out.write(csv_text(frame))
        self.out.flush()
        data = final["data"]
        if data["status"] == "failed" or data["errors"]:
            sys.stderr.write(f"{PROG}: {_summary(data)}\n")


def terminal_size(out: TextIO) -> os.terminal_size:
    """Return the columns and lines of the terminal ``out`` writes to (else 80 x 24)."""
    try:
        size = os.get_terminal_size(out.fileno())
    except (AttributeError, OSError, ValueError):  # not a file, or not a terminal
        return shutil.get_terminal_size()
    return size if size.columns and size.lines else shutil.get_terminal_size()


class LiveTableView:
    """Show a live scan: its rows re-ranked in place and its alerts, or as plain lines.

    On a terminal (``live``), at most every LIVE_REDRAW_SECONDS the cursor goes back up
    over the last frame and the new one overwrites it line by line (no clearing, no
    flicker): status, feed figures, counts, as many of the best rows by tech_rating as the
    terminal's height leaves room for (each with its move in rank since the last frame),
    then the last ALERT_LINES alerts, newest last. Lines are cut to the terminal's width,
    so none wraps and the count of lines to go back up holds. Elsewhere (a pipe, a file)
    the same cadence prints, with no escape sequences, one ``row`` line per symbol changed
    since the last printout (best first) and one ``alert`` line per alert; the end prints
    the table, as :class:`TableView` does. Either way the last line is the summary.
    ``size`` (columns, lines) and ``clock`` (seconds) are injected by tests.
    """

    def __init__(self, out: TextIO, *, live: bool,
                 size: Callable[[], os.terminal_size] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out, self.live, self._clock = out, live, clock
        self.tally = ScanTally(clock=clock)
        self.alerts: deque[dict] = deque(maxlen=ALERT_LINES)
        """The latest alerts, oldest first."""
        self.alert_count = 0
        self.figures: dict = {}
        """The latest live progress figures (bars, rate, feed clock, latency)."""
        self._size = size or (lambda: terminal_size(out))
        self._changed: dict[str, None] = {}
        self._new_alerts: list[dict] = []
        self._ranks: dict[str, int] = {}
        self._drawn_lines, self._drawn_at, self._dirty = 0, float("-inf"), False

    def show(self, batch: list[dict]) -> None:
        """Fold ``batch`` in; redraw (or print its lines) at most every LIVE_REDRAW_SECONDS."""
        for message in batch:
            change = self.tally.add(message)
            if change is not None:
                self._changed[change.symbol] = None
            elif message["type"] == "alert":
                self.alerts.append(message["data"])
                self.alert_count += 1
                self._new_alerts.append(message["data"])
            elif message["data"].get("live"):
                self.figures = message["data"]
        self._dirty = self._dirty or bool(batch)
        now = self._clock()
        if self._dirty and now - self._drawn_at >= LIVE_REDRAW_SECONDS:
            self._drawn_at, self._dirty = now, False
            self._redraw("live" if self.figures else "first pass")

    def close(self, final: dict) -> None:
        """Draw the last frame (a terminal) or the pending lines and the table, then the summary."""
        data = final["data"]
        if data.get("live"):
            self.figures = data
        status = f"{data['status']} ({data['reason']})" if data.get("reason") else data["status"]
        self._redraw(status, reserve=1)
        if not self.live:
            self._write(["", *_table(self.tally, FINAL_ROWS)])
        self._write([_summary(data)])

    def _redraw(self, status: str, reserve: int = 0) -> None:
        if not self.live:
            self._write(self._lines())
            return
        lines = self._frame(status, reserve)
        up = _UP.format(self._drawn_lines) if self._drawn_lines else ""
        self.out.write(up + "".join(f"{line}{_ERASE_LINE}\n" for line in lines) + _ERASE_BELOW)
        self.out.flush()
        self._drawn_lines = len(lines)

    def _frame(self, status: str, reserve: int) -> list[str]:
        """Return the terminal's lines: head, the best rows that fit, the latest alerts."""
        columns, height = self._size()
        counts = " | ".join(f"{name} {number}" for name, number in self.tally.signal_counts.items())
        head = [f"{PROG}  {self.tally.scan_id or ''}  {status}", self._feed_line(),
                f"{counts} | errors {self.tally.errors}", ""]
        alerts = ["", f"alerts: {self.alert_count}, newest last",
                  *map(_alert_text, self.alerts)] if self.alerts else []
        room = max(1, height - 1 - reserve - len(head) - len(alerts) - 1)
        lines = [*head, *self._ranked_table(room), *alerts]
        return [line[:columns] for line in lines[:max(1, height - 1 - reserve)]]

    def _feed_line(self) -> str:
        """Return the progress bar of the first pass, then the feed's figures."""
        if not self.figures:
            pace = self.tally.pace()
            return _progress_bar(self.tally.processed, self.tally.total, pace.rate)
        data = self.figures
        p50, p99 = (_fixed(data[f"latency_ms_p{q}"], 1) for q in (50, 99))
        return (f"live {data['live_symbols']} symbols | bars {data['bars']:,} "
                f"({data['bars_per_second']:,.1f}/s) | bar {_bar_time(data['bar_time'])} | "
                f"feed {_clock(data['feed_time'])} | latency p50 {p50} ms p99 {p99} ms")

    def _ranked_table(self, count: int) -> list[str]:
        """Return the header and ``count`` best rows, each with its move since the last frame."""
        ranked = _ranked(self.tally)
        previous, self._ranks = self._ranks, {row["symbol"]: rank
                                              for rank, row in enumerate(ranked, 1)}
        header, *lines = _table(self.tally, count)
        moves = [_move(previous.get(row["symbol"]), rank, bool(previous))
                 for rank, row in enumerate(ranked[:count], 1)]
        return [f"{'move':>4} {header}",
                *(f"{move:>4} {line}" for move, line in zip(moves, lines, strict=True))]

    def _lines(self) -> list[str]:
        """Return the plain lines since the last printout: changed rows best first, alerts."""
        ranks = {row["symbol"]: rank for rank, row in enumerate(_ranked(self.tally), 1)}
        changed = sorted(self._changed, key=ranks.__getitem__)
        rows = self.tally.rows
        lines = [f"row   {_bar_time(rows[symbol].get('bar_time')):<16} "
                 f"{_row_line(ranks[symbol], rows[symbol], 8)}" for symbol in changed]
        lines += [f"alert {_bar_time(alert['bar_time']):<16} {_alert_text(alert)}"
                  for alert in self._new_alerts]
        self._changed, self._new_alerts = {}, []
        return lines

    def _write(self, lines: list[str]) -> None:
        if lines:
            self.out.write("".join(f"{line}\n" for line in lines))
            self.out.flush()


View = NdjsonView | TableView | LiveTableView | CsvView
"""Any of the views."""


def _move(before: int | None, rank: int, had_frame: bool) -> str:
    """Return a row's move in rank since the last frame: ``+2`` up, ``-1`` down, ``new``."""
    if before is None:
        return "new" if had_frame else ""
    return "" if before == rank else f"{before - rank:+d}"


def _alert_text(alert: dict) -> str:
    return (f"{_clock(alert.get('feed_time'))}  {_printable(alert['symbol'])}  "
            f"{alert['rule']}  {alert['previous_signal']} -> {alert['signal']}  "
            f"{alert['tech_rating']:.2f}")


def _bar_time(timestamp: str | None) -> str:
    """Return a bar's ISO time readably: ``2026-03-02`` (a day) or ``2026-03-02 09:31``."""
    if not timestamp:
        return "-"
    day, _, clock = timestamp.partition("T")
    clock = clock[:5]
    return day if clock in ("", "00:00") else f"{day} {clock}"


def _clock(feed_time: int | None) -> str:
    """Return a feed time (UTC ms) as the local wall clock, ``HH:MM:SS``."""
    if feed_time is None:
        return "-"
    return datetime.fromtimestamp(feed_time / 1000).strftime("%H:%M:%S")


def _local_date(timestamp: str) -> str:
    """Return the local calendar day of an ISO-8601 timestamp, as ``YYYY-MM-DD``."""
    return datetime.fromisoformat(timestamp).astimezone().date().isoformat()


def _printable(text: str) -> str:
    """Return ``text`` with control characters (escape sequences from data) shown as ``?``."""
    return "".join(char if char.isprintable() else "?" for char in text)


def _fixed(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row_line(rank: int, row: dict, width: int) -> str:
    return (f"{rank:>3}  {_printable(row['symbol']):<{width}} {row['signal']:<11} "
            f"{row['tech_rating']:>11.2f} {row['alpha_score']:>11.4f} "
            f"{_fixed(row.get('price'), 2):>10}  {_printable(row.get('sector') or '-')}")


def _progress_bar(processed: int, total: int, rate: float, width: int = 30) -> str:
    share = processed / total if total else 0.0
    done = round(width * share)
    return (f"[{'#' * done}{'.' * (width - done)}] {processed}/{total} {100 * share:5.1f}%  "
            f"{rate:,.1f} symbols/s")


def _duration(seconds: float | None) -> str:
    """Return ``seconds`` as ``M:SS`` (``H:MM:SS`` past an hour); ``-`` while unknown."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _summary(data: dict) -> str:
    """Return one line: status (and reason), the counts, the elapsed time, any scan error."""
    status = data["status"]
    head = f"{status} ({data['reason']})" if data.get("reason") else status
    line = (f"{head}: {data['processed']}/{data['total']} processed, {data['results']} results, "
            f"{data['errors']} errors, {data['filtered']} filtered in {data['elapsed']:.2f} s")
    return f"{line}; {data['error']}" if data.get("error") else line
