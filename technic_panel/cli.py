"""``technic-scan``: run one scan and stream its messages to stdout, one JSON object a line.

Examples::

    technic-scan --symbols 500 --max-signals 5
    technic-scan --source sample --format table
    technic-scan --symbols 2000 --format csv > scan.csv
    technic-scan --live --bar-interval 1 --timeout 60 --format table
    python -m technic_panel.cli --timeout 2 --latency-ms 50 | jq -c 'select(.type == "result")'

Every setting of :class:`~technic_panel.config.ScanConfig` is a flag: its name
with dashes (``max_signals`` is ``--max-signals``), its doc as the help. Values
are converted by the parameter's type (Integer, Number, a comma list for a
ListSelector, choices for a Selector), and only the flags given are passed to
the scan, so the defaults and the validation live in ScanConfig alone.

Output (``--format ndjson``, the default) is the message contract itself,
flushed after every batch. ``--format table`` redraws a live view on a
terminal (with the ETA) and prints one table at the end otherwise; for a live scan
(``--live``) it re-ranks the rows in place and prints the alerts below them, at most 4
times a second, or, when stdout is not a terminal, prints each changed row and each alert
as a plain line, then the table. ``--format csv``
writes, once the scan has ended, a header and one row per result, best first,
through :func:`~technic_panel.streaming.export.csv_text` (rounded, formula cells
neutralised, as the dashboard's download); a failed scan or symbol errors add the
summary line on stderr. Library logs (Dask, Bokeh, Tornado, asyncio) are shown from
WARNING up; ``-v`` shows INFO, ``-vv`` DEBUG.

Exit status: 0 when the scan completed, was terminated by a rule or stopped, and
when stdout was closed early (``technic-scan | head``: the reader has what it wanted,
so the scan stops and the rest is dropped, as Python's docs advise for SIGPIPE);
1 when it failed; 2 for invalid flags, with one line on stderr naming the flag, the
rule and the value; 130 after Ctrl-C. Ctrl-C stops the scan, and the output still
runs to its ``final`` message: the signal only sets a flag, which the drain loop
checks every 0.1 s, so no line is ever cut short.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import Any, NoReturn

import param

from technic_panel import __version__
from technic_panel.cli_views import FORMATS, PROG, View, make_view
from technic_panel.config import ScanConfig
from technic_panel.streaming.manager import StreamManager

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
POLL_SECONDS = 0.1
"""Longest wait for messages before the drain loop looks at Ctrl-C (and redraws) again."""
LIBRARY_LOGGERS = ("distributed", "bokeh", "tornado", "asyncio")
"""Loggers of the libraries a scan runs on: WARNING and up unless ``-v``."""
VERBOSITY = (logging.WARNING, logging.INFO, logging.DEBUG)
"""The log level of no ``-v``, of ``-v`` and of ``-vv``."""
_LOG_FORMAT = f"{PROG}: %(levelname)s: %(message)s"
_METAVARS = {
    "path": "DIR", "seed": "S", "scheduler": "ADDRESS", "latency_ms": "MS", "error_rate": "P",
    "min_rating": "R", "max_fraction": "F", "timeout": "SECONDS", "filter": "EXPR",
    "min_price": "PRICE", "min_dollar_volume": "DOLLARS", "quality_signals": "STRONG_BUY,BUY",
    "sectors": "SECTOR,...", "universe_path": "FILE",
}
"""How the help shows a setting's value; the others show N (integers) or their name."""


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


def _choice(name: str, objects: Sequence[Any], *, many: bool = False) -> Callable[[str], Any]:
    """Return the parser of one of ``objects`` (a comma list of them if ``many``).

    A value that is none of them is refused with all of them, readably:
    ``'Tech' is not a sector; choose from: Information Technology, Health Care, ...``.
    """
    by_text = {str(item): item for item in objects}
    noun = name.replace("_", " ").removesuffix("s" if many else "")
    article = "an" if noun[:1] in ("a", "e", "i", "o") else "a"

    def one(text: str) -> Any:
        if text not in by_text:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {article} {noun}; choose from: {', '.join(by_text)}")
        return by_text[text]

    def parse(text: str) -> Any:
        return [one(item.strip()) for item in text.split(",") if item.strip()] if many \
            else one(text)

    return parse


def _flag_options(name: str, parameter: param.Parameter) -> dict[str, Any]:
    """Return the ``add_argument`` options that parse ``parameter``'s values from text.

    A Boolean is a switch with its negation (``--live`` / ``--no-live``).
    """
    options: dict[str, Any] = {"default": argparse.SUPPRESS, "help": _help(parameter)}
    if isinstance(parameter, param.Boolean):
        return {**options, "action": argparse.BooleanOptionalAction}
    options["metavar"] = _METAVARS.get(name, name.upper())
    if isinstance(parameter, param.ListSelector):
        options["type"] = _choice(name, parameter.objects, many=True)
    elif isinstance(parameter, param.Selector):
        objects = list(parameter.objects)
        options.update(type=_choice(name, objects), choices=objects, metavar=None)
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


def _version() -> str:
    """Return the installed technic-panel's version (the source's, when run uninstalled)."""
    try:
        return metadata.version("technic-panel")
    except metadata.PackageNotFoundError:
        return f"{__version__} (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """Return the ``technic-scan`` parser: a flag per ScanConfig setting, plus the output's."""
    parser = _Parser(prog=PROG, allow_abbrev=False,
                     description="Run one stock scan and stream its messages to stdout as "
                                 "NDJSON (one JSON message a line), or show them as a table "
                                 "or CSV.",
                     epilog="Exit status: 0 completed, terminated or stopped (also when "
                            "stdout closes early, as with | head); 1 failed; 2 invalid flags; "
                            "130 interrupted by Ctrl-C.")
    settings = parser.add_argument_group("scan settings")
    for name in ScanConfig.setting_names():
        settings.add_argument("--" + name.replace("_", "-"),
                              **_flag_options(name, ScanConfig.param[name]))
    parser.add_argument("--format", choices=FORMATS, default="ndjson",
                        type=_choice("format", FORMATS),
                        help="ndjson: one message a line (default); table: a live view on a "
                             "terminal, one table at the end otherwise; csv: a header and "
                             "one row per result, best first, once the scan has ended.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="Show the libraries' INFO logs on stderr (-vv: DEBUG).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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


class _OneLine(logging.Formatter):
    """Format a record on one line: tracebacks are for ``-v`` (the final names the error)."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        """Leave the traceback out."""
        return ""

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 (logging's name)
        """Leave the stack out."""
        return ""


def configure_logging(verbosity: int, executor: str | None = None) -> None:
    """Log to stderr; the libraries' loggers from WARNING (``verbosity`` 0), INFO (1), DEBUG (2).

    Without ``-v`` a record is one line (no traceback), and a library is never made
    louder than it set itself (distributed keeps Tornado at CRITICAL). A Dask scan
    imports distributed first: its import sets its own loggers to INFO, which would
    undo these levels if the scan imported it later.
    """
    level = VERBOSITY[min(verbosity, len(VERBOSITY) - 1)]
    handler = logging.StreamHandler()
    handler.setFormatter((logging.Formatter if verbosity else _OneLine)(_LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    if executor == "dask":
        with contextlib.suppress(ImportError):  # the scan then fails, naming the extra
            importlib.import_module("distributed")
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, level) if verbosity == 0 else level)


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
    configure_logging(args.verbose, getattr(args, "executor", None))
    stop_request = threading.Event()
    manager = StreamManager(max_concurrent=1)
    try:
        with _sigint_sets(stop_request):
            try:
                scan_id = manager.start_stream(_settings(args))
            except ValueError as exc:  # ConfigError, or a rule the criteria check
                return _usage_error(_config_error_text(exc))
            view = make_view(args.format, sys.stdout, live=getattr(args, "live", False))
            return _stream(manager, scan_id, view, stop_request)
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


def _stream(manager: StreamManager, scan_id: str, view: View,
            stop_request: threading.Event) -> int:
    """Show the scan's messages up to its final; return the exit status.

    A reader that closes stdout early (``| head``) is done, not failed: the scan is
    stopped (by ``main``'s shutdown) and the status is 0, so ``set -o pipefail`` holds.
    """
    try:
        final = _drain(manager, scan_id, view, stop_request)
    except BrokenPipeError:
        log.info("stdout was closed; stopping scan %s", scan_id)
        _silence_stdout()
        return EXIT_OK
    if stop_request.is_set():
        return EXIT_INTERRUPTED
    return EXIT_FAILED if final["data"]["status"] == "failed" else EXIT_OK


def _drain(manager: StreamManager, scan_id: str, view: View,
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


if __name__ == "__main__":
    sys.exit(main())
