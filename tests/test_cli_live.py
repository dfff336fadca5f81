"""technic-scan --live --format table: re-ranked in place on a terminal, plain lines elsewhere.

The terminal is a real pseudo-terminal (``os.openpty``, its size set with TIOCSWINSZ), the
scan a real ``technic-scan`` process; the frames are read back from the escape sequences.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from helpers import FakeClock

from technic_panel import cli_views
from technic_panel.streaming.jsonsafe import from_json

ROOT = Path(__file__).resolve().parents[1]
TECHNIC_SCAN = str(Path(sys.executable).parent / "technic-scan")
SYMBOLS, TIMEOUT = 40, 4
LIVE = ["--live", "--symbols", str(SYMBOLS), "--latency-ms", "0", "--bar-interval", "0.2",
        "--timeout", str(TIMEOUT), "--alert-cooldown", "0"]
"""A short live scan whose alerts are decided by its bars alone (no cooldown)."""
LINES, COLUMNS = 20, 90
ALERT = re.compile(r"\d\d:\d\d:\d\d  (\S+)  (signal_changed|entered_filter|left_filter)  "
                   r"(\S+) -> (\S+)  (\d+\.\d\d)")
SUMMARY = f"terminated (timeout): {SYMBOLS}/{SYMBOLS} processed, {SYMBOLS} results, 0 errors"
MOVE_HEADER = "move   #  symbol"


def run_on_terminal(*args: str, interrupt: bool = False) -> tuple[int, str, float]:
    """Run technic-scan on a LINES x COLUMNS pseudo-terminal; return status, output, seconds.

    With ``interrupt``, Ctrl-C (SIGINT) is sent once a live frame has been drawn.
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    env = {name: value for name, value in os.environ.items() if name not in ("COLUMNS", "LINES")}
    started = time.monotonic()
    process = subprocess.Popen([TECHNIC_SCAN, *args], stdout=slave, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while chunk := _read(master):
            chunks.append(chunk)
            if interrupt and b"  live\x1b[K" in b"".join(chunks):
                process.send_signal(signal.SIGINT)
                interrupt = False
    finally:
        os.close(master)
    code = process.wait(timeout=60)
    return code, b"".join(chunks).decode().replace("\r\n", "\n"), time.monotonic() - started


def _read(fd: int) -> bytes:
    """Read what the terminal has; b"" once the process closed it (EIO on Linux)."""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def frames_of(text: str) -> tuple[list[list[str]], str]:
    """Split a terminal's output into its frames' lines, checking each went back over the last.

    Returns the frames and what follows the last one (the summary).
    """
    pieces = re.split(r"\x1b\[(\d+)A\r", text)
    frames, ups = pieces[::2], [int(up) for up in pieces[1::2]]
    *drawn, last = frames
    last, _, tail = last.partition("\x1b[J")
    lines = [_frame_lines(frame) for frame in [*drawn, last + "\x1b[J"]]
    assert ups == [len(frame) for frame in lines[:-1]], "each redraw goes up over the last"
    return lines, tail


def _frame_lines(frame: str) -> list[str]:
    assert frame.endswith("\x1b[J"), frame[-200:]
    body = frame.removesuffix("\x1b[J")
    assert body.endswith("\x1b[K\n")
    return body.removesuffix("\x1b[K\n").split("\x1b[K\n")


def table_rows(frame: list[str]) -> list[list[str]]:
    """Return the frame's table rows split in words (move column dropped)."""
    start = next(i for i, line in enumerate(frame) if line.startswith(MOVE_HEADER)) + 1
    rows = []
    for line in frame[start:]:
        if not line:
            break
        rows.append(line[4:].split())
    return rows


def row_words(line: str) -> list[str]:
    """Return a plain ``row`` line's words after its bar time: rank, symbol, signal, ..."""
    assert line[:6] == "row   " and line[22] == " "
    return line[23:].split()


def alert_tuples(lines: list[str]) -> dict[str, list[tuple[str, ...]]]:
    """Return each symbol's alerts (rule, previous, signal, rating), in order."""
    alerts: dict[str, list[tuple[str, ...]]] = {}
    for line in lines:
        symbol, *rest = ALERT.search(line).groups()
        alerts.setdefault(symbol, []).append(tuple(rest))
    return alerts


# --- a real terminal --------------------------------------------------------------------------

def test_on_a_terminal_rows_are_reranked_in_place_with_alerts_below():
    code, text, seconds = run_on_terminal(*LIVE, "--format", "table")
    assert code == 0
    assert seconds >= TIMEOUT
    assert "\x1b[2J" not in text and "\x1b[H" not in text  # redrawn in place, never cleared
    frames, tail = frames_of(text)
    assert tail.count("\n") == 1 and tail.startswith(SUMMARY)
    assert 3 <= len(frames) <= 4 * seconds + 2, "at most 4 redraws a second"
    for frame in frames:
        assert len(frame) <= LINES - 1, "bounded to the terminal's height"
        assert max(map(len, frame)) <= COLUMNS, "no line wraps"
        assert all("\x1b" not in line for line in frame)
        rows = table_rows(frame)
        assert [int(row[0]) for row in rows] == list(range(1, len(rows) + 1))
        ratings = [float(row[3]) for row in rows]
        assert ratings == sorted(ratings, reverse=True), "ranked by tech_rating"
    live = [frame for frame in frames if frame[0].endswith("  live")]
    assert len(live) >= 3
    assert all(frame[1].startswith(f"live {SYMBOLS} symbols | bars ") for frame in live)
    orders = {tuple(row[1] for row in table_rows(frame)) for frame in live}
    assert len(orders) >= 2, "the order changes as bars arrive"
    moves = {line[:4].strip() for frame in live[1:] for line in frame if ALERT.search(line) is None}
    assert any(re.fullmatch(r"[+-]\d+", move) for move in moves), moves
    with_alerts = [frame for frame in frames if any(line.startswith("alerts: ") for line in frame)]
    assert with_alerts, "alerts are shown below the table"
    for frame in with_alerts:
        heading = next(i for i, line in enumerate(frame) if line.startswith("alerts: "))
        shown = frame[heading + 1:]
        assert 1 <= len(shown) <= cli_views.ALERT_LINES
        assert all(ALERT.fullmatch(line) for line in shown), shown
    last = frames[-1]
    assert last[0].endswith("  terminated (timeout)")
    assert len(last) <= LINES - 2, "room left for the summary"
    assert len(table_rows(last)) >= 1


def test_ctrl_c_on_a_terminal_stops_the_live_scan_and_draws_its_last_frame():
    code, text, _ = run_on_terminal(*LIVE, "--timeout", "120", "--format", "table",
                                    interrupt=True)
    assert code == 130
    frames, tail = frames_of(text)
    assert frames[-1][0].endswith("  stopped (manual)")
    assert tail.startswith(f"stopped (manual): {SYMBOLS}/{SYMBOLS} processed")


# --- not a terminal ---------------------------------------------------------------------------

def test_to_a_pipe_rows_and_alerts_are_plain_lines_that_end_in_the_table():
    ndjson = subprocess.Popen([TECHNIC_SCAN, *LIVE], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    done = subprocess.run([TECHNIC_SCAN, *LIVE, "--format", "table"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    messages = [from_json(line) for line in ndjson.communicate(timeout=60)[0].splitlines()]
    assert done.returncode == 0 and ndjson.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    lines = done.stdout.splitlines()
    assert lines[-1].startswith(SUMMARY)
    blank = lines.index("")
    printed, table = lines[:blank], lines[blank + 1:-1]
    assert {line.split()[0] for line in printed} == {"row", "alert"}
    rows = [row_words(line) for line in printed if line.startswith("row ")]
    assert {words[1] for words in rows} == {msg["data"]["symbol"] for msg in messages
                                            if msg["type"] == "result"}
    latest = {words[1]: words for words in rows}
    assert table[0].split()[:2] == ["#", "symbol"]
    for rank, line in enumerate(table[1:], 1):
        words = line.split()
        assert words[0] == str(rank)
        assert latest[words[1]][1:5] == words[1:5], "the table holds each row's last line"
    alerts = [line for line in printed if line.startswith("alert ")]
    assert alerts
    piped = alert_tuples(alerts)
    streamed = {}
    for msg in messages:
        if msg["type"] == "alert":
            data = msg["data"]
            streamed.setdefault(data["symbol"], []).append(
                (data["rule"], data["previous_signal"], data["signal"],
                 f"{data['tech_rating']:.2f}"))
    for symbol in piped.keys() | streamed.keys():  # the same bars: one run went further
        mine, theirs = piped.get(symbol, []), streamed.get(symbol, [])
        shorter = min(len(mine), len(theirs))
        assert mine[:shorter] == theirs[:shorter], symbol


# --- in process: the frame's rules ------------------------------------------------------------

def message(kind: str, seq: int, **data) -> dict:
    return {"type": kind, "data": data,
            "metadata": {"scan_id": "scan_1", "seq": seq, "is_final": kind == "final"}}


def row(kind: str, seq: int, symbol: str, rating: float, signal: str = "HOLD") -> dict:
    return message(kind, seq, symbol=symbol, signal=signal, tech_rating=rating,
                   alpha_score=0.5, price=10.0, sector="Energy",
                   bar_time="2026-03-02T09:31:00.000Z" if kind == "update" else None)


def test_a_frame_marks_moves_and_fits_a_small_terminal():
    out, clock = io.StringIO(), FakeClock()
    view = cli_views.LiveTableView(out, live=True, size=lambda: os.terminal_size((60, 12)),
                                   clock=clock)
    view.show([row("result", seq, f"S{seq}", 50 - seq) for seq in range(1, 21)])
    view.show([row("update", 21, "S3", 99, "BUY")])  # inside the throttle: not drawn yet
    assert out.getvalue().count("\x1b[K\n") == 11
    clock.advance(cli_views.LIVE_REDRAW_SECONDS)
    view.show([message("alert", 22, symbol="S3", rule="signal_changed", signal="BUY",
                       previous_signal="HOLD", tech_rating=99.0,
                       bar_time="2026-03-02T09:31:00.000Z", feed_time=0)])
    second = out.getvalue().partition("\x1b[11A\r")[2]
    lines = _frame_lines(second)
    assert len(lines) == 11 and max(map(len, lines)) <= 60
    rows = [line for line in lines if re.match(r" *(\+\d+|-\d+|new)? +\d+  S", line)]
    assert [line[5:].split()[:2] for line in rows] == [["1", "S3"], ["2", "S1"], ["3", "S2"]]
    assert [line[:4].strip() for line in rows[:3]] == ["+2", "-1", "-1"]
    assert lines[-2:] == ["alerts: 1, newest last",
                          ALERT.search(lines[-1]).group(0)]
    assert ALERT.search(lines[-1]).groups()[1:] == ("signal_changed", "HOLD", "BUY", "99.00")


def test_plain_lines_coalesce_a_symbols_changes_and_print_best_first():
    out, clock = io.StringIO(), FakeClock()
    view = cli_views.LiveTableView(out, live=False, clock=clock)
    view.show([row("result", 1, "A", 40), row("result", 2, "B", 30)])
    clock.advance(cli_views.LIVE_REDRAW_SECONDS)
    view.show([row("update", 3, "B", 35), row("update", 4, "B", 45), row("update", 5, "A", 41)])
    assert out.getvalue().splitlines() == [
        "row   -                  1  A        HOLD              40.00      0.5000      10.00  "
        "Energy",
        "row   -                  2  B        HOLD              30.00      0.5000      10.00  "
        "Energy",
        "row   2026-03-02 09:31   1  B        HOLD              45.00      0.5000      10.00  "
        "Energy",
        "row   2026-03-02 09:31   2  A        HOLD              41.00      0.5000      10.00  "
        "Energy",
    ]


FIGURES = {"live": True, "live_symbols": 2, "bars": 1234, "bars_per_second": 617.0,
           "bar_time": "2026-03-02T09:31:00.000Z", "feed_time": None,
           "latency_ms_p50": 0.4, "latency_ms_p99": None, "processed": 2, "total": 2,
           "alerts": 0}
FINAL = {**FIGURES, "status": "terminated", "reason": "timeout", "results": 2, "errors": 0,
         "filtered": 0, "elapsed": 2.0, "error": None}


def test_the_last_frame_shows_the_feed_and_the_outcome_then_the_summary():
    out = io.StringIO()
    view = cli_views.LiveTableView(out, live=True, size=lambda: os.terminal_size((120, 30)),
                                   clock=FakeClock())
    view.show([row("result", 1, "A", 40), row("result", 2, "B", 30),
               message("progress", 3, **FIGURES)])
    view.show([])  # nothing new: nothing drawn
    view.close(message("final", 4, **FINAL))
    frames, tail = frames_of(out.getvalue())
    assert len(frames) == 2 and frames[0][0].endswith("  live")
    assert frames[0][1] == ("live 2 symbols | bars 1,234 (617.0/s) | bar 2026-03-02 09:31 | "
                            "feed - | latency p50 0.4 ms p99 - ms")
    assert frames[-1][0] == "technic-scan  scan_1  terminated (timeout)"
    assert [line[5:].split()[:2] for line in frames[-1][5:]] == [["1", "A"], ["2", "B"]]
    assert tail == ("terminated (timeout): 2/2 processed, 2 results, 0 errors, 0 filtered in "
                    "2.00 s\n")


def test_to_a_file_the_end_prints_the_pending_lines_the_table_and_the_summary():
    out, clock = io.StringIO(), FakeClock()
    view = cli_views.LiveTableView(out, live=False, clock=clock)
    view.show([row("result", 1, "A", 40)])
    view.show([row("update", 2, "A", 42)])  # inside the throttle: printed at the end
    view.close(message("final", 3, **{**FINAL, "processed": 1, "total": 1, "results": 1}))
    lines = out.getvalue().splitlines()
    assert [line.split()[:2] for line in lines[:2]] == [["row", "-"], ["row", "2026-03-02"]]
    assert lines[2:4] == ["", "  #  symbol signal      tech_rating alpha_score      price  "
                              "sector"]
    assert lines[4].split()[:4] == ["1", "A", "HOLD", "42.00"]
    assert lines[5].startswith("terminated (timeout): 1/1 processed") and len(lines) == 6
