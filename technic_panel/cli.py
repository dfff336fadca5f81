"""``technic-scan``: run one scan and stream its messages to stdout, one JSON object a line.

Examples::

    technic-scan --symbols 500 --max-signals 5
    technic-scan --source sample --format table
    python -m technic_panel.cli --timeout 2 --latency-ms 50 | jq -c 'select(.type == "result")'

Every setting of :class:`~technic_panel.config.ScanConfig` is a flag: its name
with dashes (``max_signals`` is ``--max-signals``), its doc as the help. Values
are converted by the parameter's type (Integer, Number, a comma list for a
ListSelector, choices for a Selector), and only the flags given are passed to
the scan, so the defaults and the validation live in ScanConfig alone.

Output (``--format ndjson``, the default) is the message contract itself,
flushed after every batch. ``--format table`` redraws a live view on a
terminal and prints one table at the end otherwise.

Exit status: 0 when the scan completed, was terminated by a rule or stopped;
1 when it failed (or stdout was closed early); 2 for invalid flags, with one
line on stderr naming the flag, the rule and the value; 130 after Ctrl-C.
Ctrl-C stops the scan, and the output still runs to its ``final`` message: the
signal only sets a flag, which the drain loop checks every 0.1 s, so no line
is ever cut short.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, NoReturn, TextIO

import param

from technic_panel.config import ScanConfig
from technic_panel.streaming.jsonsafe import to_json
from technic_panel.streaming.manager import StreamManager
from technic_panel.streaming.tally import ScanTally

log = logging.getLogger(__name__)

PROG = "technic-scan"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
FORMATS = ("ndjson", "table")
POLL_SECONDS = 0.1
"""Longest wait for messages before the drain loop looks at Ctrl-C (and redraws) again."""
REDRAW_SECONDS = 0.2
"""Least time between two redraws of the live table."""
LIVE_ROWS, FINAL_ROWS = 10, 20
"""Rows of the table while the scan runs and once it has ended."""

_METAVARS = {
    "path": "DIR", "seed": "S", "scheduler": "ADDRESS", "latency_ms": "MS", "error_rate": "P",
    "min_rating": "R", "max_fraction": "F", "timeout": "SECONDS", "filter": "EXPR",
    "min_price": "PRICE", "min_dollar_volume": "DOLLARS", "quality_signals": "STRONG_BUY,BUY",
    "sectors": "SECTOR,...",
}
"""How the help shows a setting's value; the others show N (integers) or their name."""
_CLEAR = "\x1b[H\x1b[2J"
_HEADER = (f"{'#':>3}  {'symbol':<8} {'signal':<11} {'tech_rating':>11} {'alpha_score':>11} "
           f"{'price':>10}  sector")


class UsageError(Exception):
    """An invalid command line; the text names the flag, the rule and the value."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are exceptions, so :func:`main` prints one line."""

    def error(self, message: str) -> NoReturn:
        """Raise :class:`UsageError` instead of printing the usage and exiting."""
        raise UsageError(message.removeprefix("argument "))


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _flag_options(name: str, parameter: param.Parameter) -> dict[str, Any]:
    """Return the ``add_argument`` options that parse ``parameter``'s values from text."""
    options: dict[str, Any] = {"default": argparse.SUPPRESS, "help": _help(parameter),
                               "metavar": _METAVARS.get(name, name.upper())}
    if isinstance(parameter, param.ListSelector):
        options["type"] = _comma_list
    elif isinstance(parameter, param.Selector):
        options.update(choices=list(parameter.objects), metavar=None)
    elif isinstance(parameter, param.Integer):
        options.update(type=_integer, metavar=_METAVARS.get(name, "N"))
    elif isinstance(parameter, param.Number):
        options["type"] = _number
    return options


def _help(parameter: param.Parameter) -> str:
    text = parameter.doc or ""
    if isinstance(parameter, param.ListSelector):
        text += f" Comma-separated, from: {', '.join(map(str, parameter.objects))}."
    default = parameter.default
    if default not in (None, []):
        text += f" (default: {','.join(default) if isinstance(default, list) else default})"
    return text.replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    """Return the ``technic-scan`` parser: a flag per ScanConfig setting, plus ``--format``."""
    parser = _Parser(prog=PROG, allow_abbrev=False,
                     description="Run one stock scan and stream its messages to stdout as "
                                 "NDJSON (one JSON message a line), or show them as a table.",
                     epilog="Exit status: 0 completed, terminated or stopped; 1 failed; "
                            "2 invalid flags; 130 interrupted by Ctrl-C.")
    settings = parser.add_argument_group("scan settings")
    for name in ScanConfig.setting_names():
        settings.add_argument("--" + name.replace("_", "-"),
                              **_flag_options(name, ScanConfig.param[name]))
    parser.add_argument("--format", choices=FORMATS, default="ndjson",
                        help="ndjson: one message a line (default); table: a live view on a "
                             "terminal, one table at the end otherwise.")
    return parser


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Return the scan settings the user gave (absent flags are not in ``args``)."""
    given = vars(args)
    return {name: given[name] for name in ScanConfig.setting_names() if name in given}


def _usage_error(text: str) -> int:
    sys.stderr.write(f"{PROG}: {' '.join(text.split())}\n")
    return EXIT_USAGE


def _config_error_text(exc: ValueError) -> str:
    """Name the flag of a ConfigError's field, then the rule and the value."""
    field = getattr(exc, "field", None)
    return f"--{field.replace('_', '-')}: {exc}" if field else str(exc)


def main(argv: list[str] | None = None) -> int:
    """Run ``technic-scan`` with ``argv`` (default: the command line); return the exit status.

    Examples
    --------
    >>> main(["--max-fraction", "1.5"])  # doctest: +SKIP
    technic-scan: --max-fraction: Number parameter 'ScanConfig.max_fraction' must be at most 1, \
not 1.5.
    2
    """
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return _usage_error(str(exc))
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(levelname)s: %(message)s")
    stop_request = threading.Event()
    manager = StreamManager(max_concurrent=1)
    try:
        with _sigint_sets(stop_request):
            try:
                scan_id = manager.start_stream(_settings(args))
            except ValueError as exc:  # ConfigError, or a rule the criteria check
                return _usage_error(_config_error_text(exc))
            return _stream(manager, scan_id, _make_view(args.format, sys.stdout), stop_request)
    finally:
        manager.shutdown()


@contextlib.contextmanager
def _sigint_sets(event: threading.Event) -> Iterator[None]:
    """While inside, Ctrl-C sets ``event`` instead of raising (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stream(manager: StreamManager, scan_id: str, view: _NdjsonView | _TableView,
            stop_request: threading.Event) -> int:
    """Show the scan's messages up to its final; return the exit status."""
    try:
        final = _drain(manager, scan_id, view, stop_request)
    except BrokenPipeError:
        log.info("stdout was closed; stopping scan %s", scan_id)
        _silence_stdout()
        return EXIT_FAILED
    if stop_request.is_set():
        return EXIT_INTERRUPTED
    return EXIT_FAILED if final["data"]["status"] == "failed" else EXIT_OK


def _drain(manager: StreamManager, scan_id: str, view: _NdjsonView | _TableView,
           stop_request: threading.Event) -> dict:
    """Hand every message to ``view`` until the final; stop the scan once Ctrl-C is pressed."""
    subscription = manager.subscribe(scan_id)
    stopping = False
    while True:
        if stop_request.is_set() and not stopping:
            stopping = True
            log.info("Ctrl-C: stopping scan %s, draining to its final", scan_id)
            manager.stop_stream(scan_id)
        batch = subscription.get_batch(timeout=POLL_SECONDS)
        view.show(batch)
        if batch and batch[-1]["metadata"]["is_final"]:
            view.close(batch[-1])
            return batch[-1]


def _silence_stdout() -> None:
    """Point stdout at devnull, so the interpreter's last flush meets no broken pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _make_view(fmt: str, out: TextIO) -> _NdjsonView | _TableView:
    return _NdjsonView(out) if fmt == "ndjson" else _TableView(out, live=out.isatty())


class _NdjsonView:
    """Write each message as one line of JSON, flushing after every batch."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def show(self, batch: list[dict]) -> None:
        if batch:
            self.out.write("".join(f"{to_json(msg)}\n" for msg in batch))
            self.out.flush()

    def close(self, final: dict) -> None:
        """Nothing to add: the final was written with its batch."""


def _table(tally: ScanTally, count: int) -> list[str]:
    """Return the header and the ``count`` rows with the highest tech_rating."""
    top = sorted(tally.rows.values(), key=lambda row: (-row["tech_rating"], row["symbol"]))
    return [_HEADER, *(_row_line(rank, row) for rank, row in enumerate(top[:count], 1))]


def _dashboard(tally: ScanTally, count: int, status: str) -> list[str]:
    """Return the live view: title, progress bar, counts by signal, top ``count`` rows."""
    counts = " | ".join(f"{name} {number}" for name, number in tally.signal_counts.items())
    return [f"{PROG}  {tally.scan_id or ''}  {status}",
            _progress_bar(tally.processed, tally.total, tally.pace().rate),
            f"{counts} | errors {tally.errors}", "", *_table(tally, count)]


class _TableView:
    """Show the scan as a table: redrawn live on a terminal, else printed once at the end."""

    def __init__(self, out: TextIO, *, live: bool) -> None:
        self.out, self.live = out, live
        self.tally = ScanTally(clock=time.monotonic)
        self._drawn_at = float("-inf")

    def show(self, batch: list[dict]) -> None:
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


def _fixed(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row_line(rank: int, row: dict) -> str:
    return (f"{rank:>3}  {row['symbol']:<8} {row['signal']:<11} {row['tech_rating']:>11.2f} "
            f"{row['alpha_score']:>11.4f} {_fixed(row.get('price'), 2):>10}  "
            f"{row.get('sector') or '-'}")


def _progress_bar(processed: int, total: int, rate: float, width: int = 30) -> str:
    share = processed / total if total else 0.0
    done = round(width * share)
    return (f"[{'#' * done}{'.' * (width - done)}] {processed}/{total} {100 * share:5.1f}%  "
            f"{rate:,.1f} symbols/s")


def _summary(data: dict) -> str:
    """Return one line: status (and reason), the counts, the elapsed time, any scan error."""
    status = data["status"]
    head = f"{status} ({data['reason']})" if data.get("reason") else status
    line = (f"{head}: {data['processed']}/{data['total']} processed, {data['results']} results, "
            f"{data['errors']} errors, {data['filtered']} filtered in {data['elapsed']:.2f} s")
    return f"{line}; {data['error']}" if data.get("error") else line


if __name__ == "__main__":
    sys.exit(main())
