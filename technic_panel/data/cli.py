"""``technic-data``: fill, inspect and export a bar store; index universes; fetch from Yahoo.

Examples::

    technic-data universe sp500 --store bars.duckdb
    technic-data fetch yahoo --universe sp500 --store bars.duckdb
    technic-scan --source store --path bars.duckdb --format table
    technic-data ingest prices/ --store bars.duckdb --universe universe.csv
    technic-data info bars.duckdb
    technic-data export bars.duckdb --to out/ --format parquet

Summaries go to stdout, progress and errors to stderr: a progress bar on a terminal,
one plain line per step otherwise. Exit status: 0 done (something was written, or
nothing was missing); 1 nothing could be written, or the provider is unreachable; 2
bad arguments, with one line on stderr; 130 interrupted by Ctrl-C (what was written
stays written).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn, TextIO

import pandas as pd

from technic_panel.data.providers import ProviderError
from technic_panel.data.universes import (
    index_members,
    index_names,
    index_universe,
    read_symbol_list,
    write_universe_file,
)

log = logging.getLogger(__name__)

PROG = "technic-data"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LISTED = 50
"""The most refused or failed symbols a summary names one by one."""
PLAIN_SECONDS = 1.0
"""Least time between two progress lines when stderr is not a terminal."""


class UsageError(Exception):
    """An invalid command line; the text names the argument, the rule and the value."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are exceptions, so :func:`main` prints one line."""

    def error(self, message: str) -> NoReturn:
        """Raise :class:`UsageError` instead of printing the usage and exiting."""
        raise UsageError(message.removeprefix("argument "))


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise argparse.ArgumentTypeError(f"must be a {kind.__name__} > 0, not {text!r}")
        return value

    return parse


def _date(text: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(text).normalize()
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a date (YYYY-MM-DD), not {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """Return the ``technic-data`` parser and its subcommands."""
    parser = _Parser(prog=PROG, allow_abbrev=False,
                     description="Fill, inspect and export a bar store (one DuckDB file of "
                                 "daily bars, universe and snapshot).",
                     epilog="Exit status: 0 done; 1 nothing could be written or the provider "
                            "is unreachable; 2 bad arguments; 130 interrupted.")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="Log what happens (and the traceback of an unexpected error).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    ingest = commands.add_parser("ingest", help="Write CSV/Parquet prices into a store.",
                                 description="Write a folder of per-symbol CSV/Parquet files, or "
                                             "one long table with a symbol column, into a store "
                                             "(created if absent). Only bars after a symbol's "
                                             "last stored bar are added.")
    ingest.add_argument("path", type=Path, metavar="PATH", help="A folder or a long table.")
    ingest.add_argument("--store", type=Path, required=True, metavar="FILE")
    ingest.add_argument("--universe", type=Path, metavar="FILE",
                        help="CSV/Parquet with symbol, name, sector, industry, market_cap.")
    info = commands.add_parser("info", help="Show a store's symbols, dates and last update.")
    info.add_argument("store", type=Path, metavar="FILE")
    export = commands.add_parser("export", help="Write one file per symbol from a store.")
    export.add_argument("store", type=Path, metavar="FILE")
    export.add_argument("--to", type=Path, required=True, metavar="DIR")
    export.add_argument("--format", choices=("csv", "parquet"), default="csv")
    _add_universe(commands)
    _add_fetch(commands)
    return parser


def _add_universe(commands: Any) -> None:
    universe = commands.add_parser(
        "universe", help="Write an index's members (offline) or your list as a universe.",
        description="Write an index's members with name, sector (GICS) and industry, from "
                    "the lists pytickersymbols ships (no network), or your own list, to the "
                    "store's universe table (--store), a universe file (--to) or stdout as "
                    "CSV. Indices: sp500, sp100, sp600, nasdaq100, dow30, ftse100, dax, "
                    "nikkei225 and more: see --list.")
    source = universe.add_mutually_exclusive_group(required=True)
    source.add_argument("name", nargs="?", metavar="NAME", help="An index, e.g. sp500.")
    source.add_argument("--from", dest="from_file", type=Path, metavar="FILE",
                        help="Your list: one symbol a line, or a CSV/Parquet with a symbol "
                             "column (and name, sector, industry, market_cap, any others).")
    source.add_argument("--list", action="store_true", help="List the indices and exit.")
    target = universe.add_mutually_exclusive_group()
    target.add_argument("--store", type=Path, metavar="FILE",
                        help="Write the store's universe table (created if absent).")
    target.add_argument("--to", type=Path, metavar="FILE",
                        help="Write a universe file (.csv, .parquet) for --universe-path.")


def _add_fetch(commands: Any) -> None:
    fetch = commands.add_parser("fetch", help="Fetch daily bars from a provider into a store.")
    providers = fetch.add_subparsers(dest="provider", required=True, metavar="PROVIDER",
                                     parser_class=_Parser)
    yahoo = providers.add_parser(
        "yahoo", help="Yahoo Finance via yfinance (the [yahoo] extra).",
        description="Fetch daily bars from Yahoo Finance (yfinance, the optional extra "
                    "[yahoo]) into a store, batched and throttled. Prices are adjusted for "
                    "splits and dividends (auto_adjust). Incremental: a stored symbol "
                    "continues after its last bar; resumable: every batch is written as it "
                    "completes, so running the same command again fetches only what is "
                    "missing. Bars end before today (UTC): a forming bar is never stored.")
    yahoo.add_argument("--universe", required=True, metavar="NAME|FILE",
                       help="An index (sp500, nasdaq100, dow30, ...) or your list's file.")
    yahoo.add_argument("--store", type=Path, required=True, metavar="FILE")
    yahoo.add_argument("--start", type=_date, metavar="DATE",
                       help="First day for symbols new to the store (default: two years ago).")
    yahoo.add_argument("--end", type=_date, metavar="DATE",
                       help="Fetch sessions before this day (default: today, UTC).")
    yahoo.add_argument("--rate", type=_positive(float), default=2.0, metavar="R",
                       help="Yahoo requests a second; yfinance sends one per symbol "
                            "(default: 2, so the S&P 500 takes about 4 minutes).")
    yahoo.add_argument("--batch", type=_positive(int), default=50, metavar="N",
                       help="Symbols per yf.download call (default: 50).")
    yahoo.add_argument("--attempts", type=_positive(int), default=4, metavar="N",
                       help="Attempts per symbol on HTTP 429, 5xx and timeouts (default: 4).")
    yahoo.add_argument("--timeout", type=_positive(float), default=20.0, metavar="SECONDS",
                       help="Deadline of every request (default: 20).")


def _version() -> str:
    try:
        return version("technic-panel")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run ``technic-data`` with ``argv`` (default: the command line); return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=f"{PROG}: %(levelname)s: %(message)s")
    command = COMMANDS[args.command]
    try:
        return command(args, sys.stdout)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ProviderError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted; what was written stays written", EXIT_INTERRUPTED)
    except BrokenPipeError:  # stdout closed early (| head): stop quietly
        _silence_stdout()
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the boundary: one line, the traceback with -v
        log.info("%s failed", args.command, exc_info=True)
        return _fail(f"{args.command}: {_reason(exc)}", EXIT_FAILED)


def _silence_stdout() -> None:
    """Point stdout at devnull, so the interpreter's last flush meets no broken pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _fail(text: str, status: int) -> int:
    sys.stderr.write(f"{PROG}: {' '.join(text.split())}\n")
    return status


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise UsageError(f"{what}: {path} does not exist")
    return path


def _open_store(path: Path, *, create: bool = False) -> Any:
    from technic_panel.data.store import BarStore

    return BarStore(path if create else _existing(path, "FILE"), create=create)


@contextmanager
def _progress(total: int | None, unit: str, label: str) -> Iterator[Callable[[int], None]]:
    """Yield a callback counting ``unit``s done: a tqdm bar on a terminal, else plain lines.

    Plain lines (a log, a pipe) come at most one a second, plus the first and the last.
    """
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, unit=unit, desc=label, file=sys.stderr) as bar:
            def advance(count: int) -> None:
                bar.update(count)

            yield advance
        return
    done, shown, said = 0, -1, float("-inf")

    def say() -> None:
        nonlocal shown, said
        of = "" if total is None else f"/{total}"
        sys.stderr.write(f"{PROG}: {label}: {done}{of} {unit}s\n")
        sys.stderr.flush()
        shown, said = done, time.monotonic()

    def line(count: int) -> None:
        nonlocal done
        done += count
        if done == total or time.monotonic() - said >= PLAIN_SECONDS:
            say()

    yield line
    if done != shown and done:
        say()


def _listed(out: TextIO, items: list[tuple[str, str]], verb: str) -> None:
    for label, reason in items[:LISTED]:
        out.write(f"  {verb} {label}: {reason}\n")
    if len(items) > LISTED:
        out.write(f"  ... and {len(items) - LISTED} more\n")


def _ingest(args: argparse.Namespace, out: TextIO) -> int:
    from technic_panel.data.ingest import ingest

    path = _existing(args.path, "PATH")
    universe = _existing(args.universe, "--universe") if args.universe else None
    with _open_store(args.store, create=True) as store, _progress(None, "symbol", "ingest") as step:
        report = ingest(path, store, universe_path=universe, progress=step)
    bars = sum(report.written.values())
    out.write(f"ingested {len(report.written)} symbols ({bars:,} bars) from {path} into "
              f"{args.store}; {len(report.unchanged)} unchanged, {len(report.refused)} "
              "refused\n")
    _listed(out, list(report.refused), "refused")
    return EXIT_OK if report or report.unchanged or not report.refused else EXIT_FAILED


def _info(args: argparse.Namespace, out: TextIO) -> int:
    with _open_store(args.store) as store:
        info = store.info()
    dates = (f"{_day(info.first_date)} .. {_day(info.last_date)}" if info.bars else "none")
    updated = ("never" if info.updated_at is None else
               pd.Timestamp(info.updated_at).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S UTC"))
    out.write(f"store     {info.path}\nsymbols   {info.symbols:,}\nbars      {info.bars:,}\n"
              f"dates     {dates}\nupdated   {updated}\n")
    return EXIT_OK


def _day(value: object) -> str:
    return "-" if value is None else str(pd.Timestamp(value).date())  # type: ignore[arg-type]


def _export(args: argparse.Namespace, out: TextIO) -> int:
    with _open_store(args.store) as store:
        files = store.export(args.to, format=args.format)
    out.write(f"exported {len(files)} symbols as {args.format} files to {args.to}\n")
    return EXIT_OK if files else EXIT_FAILED


def _universe(args: argparse.Namespace, out: TextIO) -> int:
    if args.list:
        out.write("".join(f"{name}\t{index_members(name).index}\n" for name in index_names()))
        return EXIT_OK
    skipped: tuple[str, ...] = ()
    if args.from_file is not None:
        frame, title = read_symbol_list(_existing(args.from_file, "--from")), str(args.from_file)
    else:
        frame = _index(args.name, "NAME")
        members = index_members(args.name)
        title, skipped = f"{args.name} ({members.index})", members.skipped
    if args.store is None and args.to is None:
        frame.to_csv(out, index=False)
        return EXIT_OK
    if args.store is not None:
        with _open_store(args.store, create=True) as store:
            store.set_universe(frame)
        where = f"the universe table of {args.store}"
    else:
        where = str(write_universe_file(frame, args.to))
    unknown = int((frame["sector"] == "Unknown").sum()) if "sector" in frame else len(frame)
    out.write(f"universe {title}: {len(frame)} symbols, {unknown} without a sector"
              f"{f', {len(skipped)} members left out (no home listing)' if skipped else ''}"
              f" -> {where}\n")
    return EXIT_OK


def _index(name: str, flag: str) -> pd.DataFrame:
    """Return index ``name``'s universe; a name that is no index is a usage error."""
    try:
        return index_universe(name)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from exc


def _fetch(args: argparse.Namespace, out: TextIO) -> int:
    from technic_panel.data.providers.yahoo import YahooProvider, check_reachable

    spec = Path(args.universe)
    universe = read_symbol_list(spec) if spec.is_file() else _index(args.universe, "--universe")
    symbols = universe["symbol"].tolist()
    check_reachable()  # before importing yfinance (a second), so offline fails at once
    provider = YahooProvider(rate=args.rate, batch=args.batch, attempts=args.attempts,
                             timeout=args.timeout, probe=None)
    with _open_store(args.store, create=True) as store:
        store.set_universe(universe)
        batches, _ = provider.plan(symbols, store.last_dates(), start=args.start, end=args.end)
        total = sum(len(tickers) for _, tickers in batches)
        with _progress(total, "symbol", "fetch yahoo") as step:
            report = provider.fetch(store, symbols, start=args.start, end=args.end,
                                    progress=step)
    bars = sum(report.written.values())
    out.write(f"fetched {len(report.written)} of {report.requested} symbols from Yahoo Finance "
              f"(adjusted prices) into {args.store}: {bars:,} bars added in {report.batches} "
              f"batches, {report.requests} requests; {len(set(report.up_to_date))} already up "
              f"to date; {len(report.failed)} failed\n")
    _listed(out, sorted(report.failed.items()), "failed")
    return EXIT_OK if report or not report.failed else EXIT_FAILED


COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "ingest": _ingest, "info": _info, "export": _export, "universe": _universe, "fetch": _fetch,
}


if __name__ == "__main__":
    sys.exit(main())
