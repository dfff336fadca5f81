"""Prices from files on disk: a folder of per-symbol CSV/Parquet files, or one long table.

Two layouts are understood. A folder of ``ACME.csv`` / ``ACME.parquet`` files
holds one symbol per file, named by the upper-cased file stem. A single file,
or a folder holding exactly one file, whose header has a ``symbol`` column is a
long table of every symbol (:mod:`~technic_panel.data.longtable`). Column names
match case-insensitively; the date may be called ``date``, ``datetime`` or
``timestamp``; other columns (``adj close``...) are ignored.

Listing the symbols of a per-symbol folder reads only file names, and planning a
scan (:meth:`FileSource.plan_parts`) reads only each file's tail
(:mod:`~technic_panel.data.tails`), in parts, so a scan starts before every file
is read; a long table lists its symbols from its symbol column alone and is planned
piece by piece as its price columns are read. One malformed file fails its own
symbol alone, with a :class:`DataError` naming the file, the first bad row and the
rule it breaks (:mod:`~technic_panel.data.pricefile` holds the rules). Parsed bars
are cached, and their arrays are read-only because every caller shares them.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Iterator
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from technic_panel.data.base import (
    PLAN_COLUMNS,
    SNAPSHOT_COLUMNS,
    UNIVERSE_COLUMNS,
    Bars,
    DataError,
    snapshot_from_bars,
)
from technic_panel.data.columnar import file_bars
from technic_panel.data.longtable import LongTable
from technic_panel.data.pricefile import (
    FORMATS,
    check_size,
    column_positions,
    label_of,
    lacking,
    parse_numbers,
    read_table,
)
from technic_panel.data.tails import HEADER_BYTES, tail_bars

logger = logging.getLogger(__name__)

_META_TEXT = ("name", "sector", "industry")
AVG_WINDOW = 20
"""Bars averaged for ``avg_dollar_volume`` in :meth:`FileSource.universe`."""
FIRST_PART, LAST_PART = 64, 1024
"""Symbols in the first part :meth:`FileSource.plan_parts` yields; parts double up to LAST_PART."""
_ROW_COLUMNS = ["symbol", "avg_dollar_volume", *SNAPSHOT_COLUMNS[1:]]


class FileSource:
    """Daily bars read from CSV or Parquet files, one file per symbol or one long table.

    ``universe_path`` optionally names a CSV/Parquet file with a ``symbol``
    column and any of ``name``, ``sector``, ``industry``, ``market_cap``;
    symbols it lacks get ``name=symbol``, sector and industry ``"Unknown"``
    and a NaN market cap. The folder is listed once, at construction.
    Thread-safe; picklable (caches are dropped and rebuilt in each process).

    ``max_file_bytes`` bounds the size of every file read (checked with ``os.stat``
    before reading it). A per-symbol file above it fails its own symbol with a
    :class:`DataError`; a long table above it fails the whole source, since its
    symbols cannot be listed without reading it: :meth:`symbols`, :meth:`universe`
    and :meth:`snapshot` raise the DataError, so a scan of it fails at once, saying
    why. A universe file above it is refused at construction.
    """

    def __init__(self, path: str | PathLike[str], *,
                 universe_path: str | PathLike[str] | None = None,
                 name: str = "files", max_file_bytes: int | None = None) -> None:
        if max_file_bytes is not None and (
                isinstance(max_file_bytes, bool) or not isinstance(max_file_bytes, int)
                or max_file_bytes < 1):
            raise ValueError("FileSource.max_file_bytes must be a positive integer or None, "
                             f"not {max_file_bytes!r}")
        self.max_file_bytes = max_file_bytes
        self.path = _existing(Path(path), "path", "an existing .csv/.parquet file or folder")
        self.universe_path = None
        if universe_path is not None:
            rule = "an existing .csv/.parquet file"
            self.universe_path = _data_file(_existing(Path(universe_path), "universe_path", rule),
                                            "universe_path", rule)
        self.name = name
        files = _data_files(self.path)
        self._table_path = files[0] if len(files) == 1 and _has_symbol_column(files[0]) else None
        self._files = {} if self._table_path else _files_by_symbol(files)
        self.read_threads = min(os.cpu_count() or 1, 2) if self._table_path is None else None
        """The thread executor's default workers: two read a folder's files, one parsing
        (pyarrow, without the GIL) while the other checks and scores (5,000 CSV files: 5.6 s
        with 2 threads, 6.5 s with 1, 13.4 s with 32); a long table's bars are in memory."""
        self._metadata = _read_metadata(self.universe_path, max_file_bytes)
        self._init_caches()

    def __repr__(self) -> str:
        return (f"FileSource({str(self.path)!r}, universe_path="
                f"{None if self.universe_path is None else str(self.universe_path)!r}, "
                f"name={self.name!r}, max_file_bytes={self.max_file_bytes!r})")

    def _init_caches(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, Bars] = {}
        self._plan: pd.DataFrame | None = None
        self._table_lock = threading.Lock()
        self._table: LongTable | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_lock", "_cache", "_plan", "_table_lock", "_table"):
            del state[key]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_caches()

    def symbols(self) -> list[str]:
        """Return every symbol that has price data, sorted, without parsing per-symbol files.

        A long table is read (once) for its symbol column.
        """
        if self._table_path is None:
            return sorted(self._files)
        return list(self._long_table().symbols)

    def plan_parts(self) -> Iterator[pd.DataFrame]:
        """Yield :data:`PLAN_COLUMNS` for every symbol once, in parts that double in size.

        The first part holds :data:`FIRST_PART` symbols. Snapshot values and the average
        dollar volume come from each file's tail, or from a long table's pieces as each is
        read (in the table's order); a symbol whose bars cannot be read has NaN values (its
        :meth:`bars` says why). Once complete, the plan is kept, sorted by symbol, so
        :meth:`universe` and :meth:`snapshot` after it read nothing.
        """
        kept = self._plan
        if kept is not None:
            for start, stop in _part_bounds(len(kept)):
                yield kept.iloc[start:stop].reset_index(drop=True)
            return
        parts = []
        for part in self._table_parts() if self._table_path else self._folder_parts():
            parts.append(part)
            yield part
        plan = pd.concat(parts, ignore_index=True) if parts else self._plan_part([])
        with self._lock:
            self._plan = plan.sort_values("symbol", ignore_index=True)  # as symbols() lists

    def universe(self) -> pd.DataFrame:
        """Return one row per symbol with metadata; a symbol whose file is bad gets NaN volume."""
        unused = sorted(set(self._metadata["symbol"]) - set(self.symbols()))
        if unused:
            logger.debug("%s: %d symbols of %s have no prices: %s", self.name, len(unused),
                         self.universe_path, ", ".join(unused[:10]))
        return self._whole_plan().loc[:, list(UNIVERSE_COLUMNS)]

    def snapshot(self) -> pd.DataFrame:
        """Return the last bar of every symbol that loads; symbols whose file is bad are skipped."""
        plan = self._whole_plan()
        return plan.loc[plan["date"].notna(), list(SNAPSHOT_COLUMNS)].reset_index(drop=True)

    def bars(self, symbol: str) -> Bars:
        """Return ``symbol``'s bars; raise :class:`DataError` naming the file and the column."""
        with self._lock:
            cached = self._cache.get(symbol)
        if cached is not None:
            return cached
        bars = self._load(symbol)
        with self._lock:
            return self._cache.setdefault(symbol, bars)

    def history(self, symbol: str) -> pd.DataFrame:
        """Return ``symbol``'s daily OHLCV bars as a DataFrame indexed by date."""
        return self.bars(symbol).to_frame()

    def _load(self, symbol: str) -> Bars:
        if self._table_path is None:
            path = self._files.get(symbol)
            if path is None:
                raise DataError(f"FileSource has no symbol {symbol!r} "
                                f"(no such file in {self.path})")
            return file_bars(path, label_of(path), self.max_file_bytes)
        table = self._long_table()
        if symbol not in table.index:
            raise DataError(f"FileSource has no symbol {symbol!r} (not in {self._table_path})")
        return table.bars(symbol)

    def _long_table(self) -> LongTable:
        assert self._table_path is not None
        with self._table_lock:
            if self._table is None:
                self._table = LongTable.read(self._table_path, self.max_file_bytes)
            return self._table

    def _whole_plan(self) -> pd.DataFrame:
        for _ in self.plan_parts():
            pass
        assert self._plan is not None
        return self._plan

    def _folder_parts(self) -> Iterator[pd.DataFrame]:
        symbols = self.symbols()
        for start, stop in _part_bounds(len(symbols)):
            yield self._plan_part(symbols[start:stop])

    def _table_parts(self) -> Iterator[pd.DataFrame]:
        """Yield the long table's plan parts as its pieces are read, cut to doubling sizes."""
        table, size = self._long_table(), FIRST_PART
        for symbols in table.ready():
            while symbols:
                yield self._table_part(table, symbols[:size])
                symbols, size = symbols[size:], min(2 * size, LAST_PART)

    def _table_part(self, table: LongTable, symbols: list[str]) -> pd.DataFrame:
        """Return the plan rows of a long table's ``symbols``, vectorised where the bars allow."""
        values, done = table.plan_values(symbols, AVG_WINDOW)
        frame = pd.DataFrame({"symbol": pd.Series(symbols, dtype=object), **values})
        others = [i for i in range(len(symbols)) if not done[i]]
        if others:
            rows = pd.DataFrame.from_records(
                [_plan_row(symbols[i], self._bars_or_none(symbols[i])) for i in others],
                columns=_ROW_COLUMNS, index=others)
            frame = rows if len(others) == len(symbols) else frame.fillna(rows)
        return self._with_metadata(frame)

    def _plan_part(self, symbols: list[str]) -> pd.DataFrame:
        """Return the plan rows of ``symbols``: metadata, snapshot, average dollar volume."""
        rows = [_plan_row(s, bars) for s, bars in zip(symbols, self._tails(symbols), strict=True)]
        return self._with_metadata(pd.DataFrame.from_records(rows, columns=_ROW_COLUMNS))

    def _with_metadata(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return plan rows (symbol, snapshot, average dollar volume) with their metadata."""
        frame = frame.astype({"symbol": object, "date": "datetime64[ns]"})
        frame = frame.merge(self._metadata, on="symbol", how="left")
        frame["name"] = frame["name"].fillna(frame["symbol"])
        frame[["sector", "industry"]] = frame[["sector", "industry"]].fillna("Unknown")
        return frame.loc[:, list(PLAN_COLUMNS)]

    def _tails(self, symbols: list[str]) -> list[Bars | None]:
        """Return each symbol's last bars: its file's tail, or all its bars (None: neither)."""
        sized = []
        for symbol in symbols:
            try:
                check_size(self._files[symbol], label_of(self._files[symbol]),
                           self.max_file_bytes)
                sized.append(symbol)
            except DataError as exc:
                self._skipping(symbol, exc)
        tails = dict(zip(sized, tail_bars([self._files[s] for s in sized]), strict=True))
        found = []
        for symbol in symbols:
            tail = tails.get(symbol)
            found.append(tail if tail is not None or symbol not in tails
                         else self._bars_or_none(symbol))
        return found

    def _bars_or_none(self, symbol: str) -> Bars | None:
        try:
            return self.bars(symbol)
        except DataError as exc:
            self._skipping(symbol, exc)
            return None

    def _skipping(self, symbol: str, exc: DataError) -> None:
        logger.debug("%s: skipping %s: %s", self.name, symbol, exc)


def _plan_row(symbol: str, bars: Bars | None) -> dict[str, object]:
    if bars is None:
        return {"symbol": symbol, "date": pd.NaT}
    window = slice(-AVG_WINDOW, None)
    return {**snapshot_from_bars(symbol, bars),
            "avg_dollar_volume": float(np.mean(bars.close[window] * bars.volume[window]))}


def _part_bounds(count: int) -> Iterator[tuple[int, int]]:
    """Yield ``(start, stop)`` of parts of FIRST_PART items, doubling up to LAST_PART."""
    start, size = 0, FIRST_PART
    while start < count:
        yield start, min(start + size, count)
        start, size = start + size, min(2 * size, LAST_PART)


def _existing(path: Path, field: str, rule: str) -> Path:
    if not path.exists():
        raise ValueError(f"FileSource.{field} must be {rule}, not {str(path)!r}: "
                         "it does not exist")
    return path


def _data_files(path: Path) -> list[Path]:
    """List the CSV/Parquet files ``path`` names: itself, or the visible ones in its folder."""
    rule = "a .csv/.parquet file or a folder of them"
    if path.is_file():
        return [_data_file(path, "path", rule)]
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and p.suffix.lower() in FORMATS and not p.name.startswith("."))
    if not files:
        raise ValueError(f"FileSource.path must be {rule}, not {str(path)!r}: "
                         "the folder has no .csv or .parquet file")
    return files


def _data_file(path: Path, field: str, rule: str) -> Path:
    if not path.is_file() or path.suffix.lower() not in FORMATS:
        raise ValueError(f"FileSource.{field} must be {rule}, not {str(path)!r}")
    return path


def _files_by_symbol(files: list[Path]) -> dict[str, Path]:
    by_symbol: dict[str, Path] = {}
    for path in files:
        symbol = path.stem.strip().upper()
        if symbol in by_symbol:
            raise ValueError(f"FileSource.path must hold one file per symbol, not two for "
                             f"{symbol!r}: {by_symbol[symbol]} and {path}")
        by_symbol[symbol] = path
    return by_symbol


def _has_symbol_column(path: Path) -> bool:
    """Whether the header of ``path`` has a ``symbol`` column (False if it cannot be read).

    Only the header is read: a Parquet schema, or at most :data:`HEADER_BYTES` of a CSV.
    """
    try:
        if FORMATS[path.suffix.lower()] == "Parquet":
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
        else:
            with path.open("rb") as handle:
                header = handle.readline(HEADER_BYTES)
            names = pd.read_csv(io.BytesIO(header), nrows=0).columns
    except (OSError, ValueError):
        return False
    return "symbol" in column_positions(names)


def _read_metadata(path: Path | None, max_bytes: int | None) -> pd.DataFrame:
    """Read the universe file into symbol, name, sector, industry, market_cap (NaN if absent)."""
    columns = ["symbol", *_META_TEXT, "market_cap"]
    if path is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}).astype(
            {"market_cap": "float64"})
    try:
        frame = read_table(path, path.name, max_bytes)
        names = {name: frame.columns[i] for name, i in column_positions(frame.columns).items()}
        if "symbol" not in names:
            raise DataError(lacking(path.name, ["symbol"],
                                    f"symbol; it may have {', '.join(columns[1:])}"))
        rows = frame.index.to_numpy() + 1
        meta = pd.DataFrame({
            "symbol": frame[names["symbol"]].astype("string").str.strip().str.upper(),
            **{c: frame[names[c]] if c in names else None for c in _META_TEXT},
            "market_cap": (parse_numbers(frame[names["market_cap"]], "market_cap", path.name,
                                         rows) if "market_cap" in names else np.nan),
        })
    except DataError as exc:
        raise ValueError(f"FileSource.universe_path is unusable: {exc}") from exc
    meta = meta.dropna(subset=["symbol"]).drop_duplicates("symbol", keep="last")
    return meta.astype({"symbol": object, **{c: object for c in _META_TEXT},
                        "market_cap": "float64"})
