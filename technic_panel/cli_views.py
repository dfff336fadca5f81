"""How ``technic-scan`` shows a scan: NDJSON lines, a table (live on a terminal) or CSV.

Each view takes the stream's batches in ``show`` and its last message in ``close``;
:func:`make_view` picks one for ``--format``. The table and CSV views fold the
messages into a :class:`~technic_panel.streaming.tally.ScanTally` (one row per symbol,
updates applied) and rank the rows by tech_rating. Text from data (symbols, sectors)
reaches the terminal with control characters replaced, so a file name cannot move the
cursor or clear the screen; the CSV is written by
:func:`~technic_panel.streaming.export.csv_text`, as the dashboard's download is.
"""

from __future__ import annotations

import sys
import time
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
_CLEAR = "\x1b[H\x1b[2J"


def make_view(fmt: str, out: TextIO) -> View:
    """Return the view of ``--format`` ``fmt`` writing to ``out`` (live if a terminal)."""
    if fmt == "csv":
        return CsvView(out)
    return NdjsonView(out) if fmt == "ndjson" else TableView(out, live=out.isatty())


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


View = NdjsonView | TableView | CsvView
"""Any of the views."""


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
