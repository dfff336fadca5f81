"""Prices from files on disk: a folder of per-symbol CSV/Parquet files, or one long table.

Two layouts are understood. A folder of ``ACME.csv`` / ``ACME.parquet`` files
holds one symbol per file, named by the upper-cased file stem. A single file,
or a folder holding exactly one file, whose header has a ``symbol`` column is a
long table of every symbol. Column names match case-insensitively; the date
may be called ``date``, ``datetime`` or ``timestamp``; other columns (``adj
close``...) are ignored.

Listing the symbols of a per-symbol folder reads only file names, so one
malformed file fails its own symbol alone, with a :class:`DataError` naming
the file, the first bad row (counted from 1 after the header) and the rule it
breaks: every cell of date, open, high, low, close and volume is filled with a
number or a date, and every bar keeps the rules of
:func:`~technic_panel.data.base.check_bars` (positive prices, low <= open,
close <= high, dates in 1900-01-01..2100-12-31, none twice). A row with no
price and no volume at all, a holiday placeholder some exports write, is
skipped. Errors name the expected columns and the rule, never a value or a
header name found in the file, since they travel to remote clients. Parsed bars
are cached, and their arrays are read-only because every caller shares them.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from os import PathLike
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from technic_panel.data.base import (
    OHLCV_COLUMNS,
    SNAPSHOT_COLUMNS,
    UNIVERSE_COLUMNS,
    Bars,
    DataError,
    check_bars,
    check_rule,
    snapshot_from_bars,
)

logger = logging.getLogger(__name__)

_FORMATS = {".csv": "CSV", ".parquet": "Parquet", ".pq": "Parquet"}
_DATE_NAMES = ("date", "datetime", "timestamp")
_META_TEXT = ("name", "sector", "industry")
_HEADER_BYTES = 1 << 16
"""The most bytes read to find out whether a CSV file's header has a ``symbol`` column."""
AVG_WINDOW = 20
"""Bars averaged for ``avg_dollar_volume`` in :meth:`FileSource.universe`."""


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
        self._metadata = _read_metadata(self.universe_path, max_file_bytes)
        self._init_caches()

    def __repr__(self) -> str:
        return (f"FileSource({str(self.path)!r}, universe_path="
                f"{None if self.universe_path is None else str(self.universe_path)!r}, "
                f"name={self.name!r}, max_file_bytes={self.max_file_bytes!r})")

    def _init_caches(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, Bars] = {}
        self._table_lock = threading.Lock()
        self._table: _LongTable | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_lock", "_cache", "_table_lock", "_table"):
            del state[key]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_caches()

    def symbols(self) -> list[str]:
        """Return every symbol that has price data, sorted, without parsing per-symbol files."""
        if self._table_path is None:
            return sorted(self._files)
        return sorted(self._long_table(self._table_path).rows)

    def universe(self) -> pd.DataFrame:
        """Return one row per symbol with metadata; a symbol whose file is bad gets NaN volume."""
        symbols = self.symbols()
        frame = pd.DataFrame({
            "symbol": pd.Series(symbols, dtype=object),
            "avg_dollar_volume": [self._avg_dollar_volume(s) for s in symbols],
        })
        unused = sorted(set(self._metadata["symbol"]) - set(symbols))
        if unused:
            logger.debug("%s: %d symbols of %s have no prices: %s", self.name, len(unused),
                         self.universe_path, ", ".join(unused[:10]))
        frame = frame.merge(self._metadata, on="symbol", how="left")
        frame["name"] = frame["name"].fillna(frame["symbol"])
        frame[["sector", "industry"]] = frame[["sector", "industry"]].fillna("Unknown")
        return frame.loc[:, list(UNIVERSE_COLUMNS)]

    def snapshot(self) -> pd.DataFrame:
        """Return the last bar of every symbol that loads; symbols whose file is bad are skipped."""
        rows = []
        for symbol in self.symbols():
            bars = self._bars_or_none(symbol)
            if bars is not None:
                rows.append(snapshot_from_bars(symbol, bars))
        return pd.DataFrame(rows, columns=list(SNAPSHOT_COLUMNS))

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
            label = _label(path)
            return _parse_bars(_read_table(path, label, self.max_file_bytes), label)
        table = self._long_table(self._table_path)
        rows = table.rows.get(symbol)
        if rows is None:
            raise DataError(f"FileSource has no symbol {symbol!r} (not in {self._table_path})")
        return _parse_bars(table.frame.iloc[rows], f"{_label(self._table_path)} (symbol {symbol})")

    def _long_table(self, path: Path) -> _LongTable:
        with self._table_lock:
            if self._table is None:
                self._table = _LongTable.read(path, self.max_file_bytes)
            return self._table

    def _bars_or_none(self, symbol: str) -> Bars | None:
        try:
            return self.bars(symbol)
        except DataError as exc:
            logger.debug("%s: skipping %s: %s", self.name, symbol, exc)
            return None

    def _avg_dollar_volume(self, symbol: str) -> float:
        bars = self._bars_or_none(symbol)
        if bars is None:
            return float("nan")
        return float(np.mean(bars.close[-AVG_WINDOW:] * bars.volume[-AVG_WINDOW:]))


class _LongTable:
    """A long table read once: the raw frame and each symbol's row positions in it."""

    def __init__(self, frame: pd.DataFrame, rows: dict[str, np.ndarray]) -> None:
        self.frame = frame
        self.rows = rows

    @classmethod
    def read(cls, path: Path, max_bytes: int | None) -> _LongTable:
        label = _label(path)
        frame = _read_table(path, label, max_bytes)
        column = _column_names(frame).get("symbol")
        if column is None:
            raise DataError(_lacking(label, ["symbol"], "symbol, date, open, high, low, close, "
                                                        "volume"))
        keys = frame[column].astype("string").str.strip().str.upper()
        keys = keys.mask(keys == "")
        indices = cast("dict[object, np.ndarray]", keys.groupby(keys, sort=True).indices)
        return cls(frame, {str(k): v for k, v in indices.items()})


def _label(path: Path) -> str:
    """Name a data file in errors by its own name: the folder is the caller's to know."""
    return f"FileSource: {path.name}"


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
                   if p.is_file() and p.suffix.lower() in _FORMATS and not p.name.startswith("."))
    if not files:
        raise ValueError(f"FileSource.path must be {rule}, not {str(path)!r}: "
                         "the folder has no .csv or .parquet file")
    return files


def _data_file(path: Path, field: str, rule: str) -> Path:
    if not path.is_file() or path.suffix.lower() not in _FORMATS:
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

    Only the header is read: a Parquet schema, or at most :data:`_HEADER_BYTES` of a CSV.
    """
    try:
        if _FORMATS[path.suffix.lower()] == "Parquet":
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
        else:
            with path.open("rb") as handle:
                header = handle.readline(_HEADER_BYTES)
            names = pd.read_csv(io.BytesIO(header), nrows=0).columns
    except (OSError, ValueError):
        return False
    return any(str(n).strip().lower() == "symbol" for n in names)


def _read_table(path: Path, label: str, max_bytes: int | None) -> pd.DataFrame:
    """Read a CSV or Parquet file with a default RangeIndex (a named index becomes a column).

    A file larger than ``max_bytes`` is refused before it is read. Errors name the
    file and the exception's type only: a parser's text may quote the file.
    """
    kind = _FORMATS[path.suffix.lower()]
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise DataError(f"{label} cannot be read ({type(exc).__name__})") from exc
    if max_bytes is not None and size > max_bytes:
        raise DataError(f"{label} is {size:,} bytes; the most allowed is {max_bytes:,} "
                        "(FileSource.max_file_bytes)")
    try:
        frame = pd.read_parquet(path) if kind == "Parquet" else pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{label}: the file is empty") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"{label} cannot be read as {kind} ({type(exc).__name__})") from exc
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()
    return frame


def _column_names(frame: pd.DataFrame) -> dict[str, object]:
    """Map each lower-cased, stripped column name to the first column that has it."""
    names: dict[str, object] = {}
    for column in frame.columns:
        names.setdefault(str(column).strip().lower(), column)
    return names


def _lacking(label: str, lacking: list[str], needs: str) -> str:
    plural = "s" if len(lacking) > 1 else ""
    return f"{label} lacks the column{plural} {', '.join(lacking)} (needs {needs})"


def _columns_of(frame: pd.DataFrame, label: str) -> dict[str, object]:
    """Map each of date and :data:`OHLCV_COLUMNS` to its column; raise naming all it lacks.

    The message names the expected columns only, never the file's own header.
    """
    names = _column_names(frame)
    found = {"date": next((names[n] for n in _DATE_NAMES if n in names), None)}
    found.update((column, names.get(column)) for column in OHLCV_COLUMNS)
    lacking = [column for column, name in found.items() if name is None]
    if lacking:
        raise DataError(_lacking(label, lacking, f"{', '.join(found)}; the date may also be "
                                                 f"called {' or '.join(_DATE_NAMES[1:])}"))
    return found


def _parse_bars(frame: pd.DataFrame, label: str) -> Bars:
    """Validate one symbol's raw rows by the module's rules; build sorted, read-only bars."""
    if frame.empty:
        raise DataError(f"{label}: the file has no rows")
    columns = _columns_of(frame, label)
    rows = frame.index.to_numpy() + 1  # counted from 1 after the header
    values = np.vstack([_parse_numbers(frame[columns[c]], c, label, rows) for c in OHLCV_COLUMNS])
    keep = ~np.isnan(values).all(axis=0)
    if not keep.any():
        raise DataError(f"{label}: no row has prices")
    rows, values = rows[keep], values[:, keep]
    for column, array in zip(OHLCV_COLUMNS, values, strict=True):
        check_rule(label, rows, np.isnan(array), f"{column} is empty")
    dates = _parse_dates(frame[columns["date"]][keep], label, rows)
    order = check_bars(label, rows, dates, dict(zip(OHLCV_COLUMNS, values, strict=True)))
    arrays = [np.ascontiguousarray(a) for a in (dates[order].astype("datetime64[ns]"),
                                                 *values[:, order])]
    for array in arrays:
        array.flags.writeable = False
    return Bars(*arrays)


def _parse_dates(raw: pd.Series, label: str, rows: np.ndarray) -> np.ndarray:
    """Parse a date column into datetime64 of the column's own unit; every cell a date."""
    check_rule(label, rows, raw.isna().to_numpy(), "date is empty")
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw
    else:
        text = raw.astype("string")
        try:
            parsed = pd.to_datetime(text, format=_date_format(text), errors="coerce")
        except (TypeError, ValueError) as exc:
            raise DataError(f"{label}: the date column cannot be read as dates") from exc
        check_rule(label, rows, parsed.isna().to_numpy(), "date is not a date like 2024-01-31")
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_localize(None)
    return parsed.to_numpy()  # in its own unit: a year-9999 date must not wrap round to 1816


def _date_format(text: pd.Series) -> str:
    """Guess the format of the first date; ``"mixed"`` parses each date on its own."""
    values = text.dropna()
    return (guess_datetime_format(str(values.iloc[0])) if len(values) else None) or "mixed"


def _parse_numbers(raw: pd.Series, column: str, label: str, rows: np.ndarray) -> np.ndarray:
    """Return a column as float64 (NaN where empty); raise for a non-number or an infinity."""
    if not pd.api.types.is_numeric_dtype(raw):
        parsed = pd.to_numeric(raw, errors="coerce")
        bad = (parsed.isna() & raw.notna()).to_numpy()
        check_rule(label, rows, bad, f"{column} is not a number")
        raw = parsed
    values = raw.to_numpy(dtype="float64", na_value=np.nan)
    check_rule(label, rows, np.isinf(values), f"{column} is not a finite number")
    return values


def _read_metadata(path: Path | None, max_bytes: int | None) -> pd.DataFrame:
    """Read the universe file into symbol, name, sector, industry, market_cap (NaN if absent)."""
    columns = ["symbol", *_META_TEXT, "market_cap"]
    if path is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}).astype(
            {"market_cap": "float64"})
    try:
        frame = _read_table(path, path.name, max_bytes)
        names = _column_names(frame)
        if "symbol" not in names:
            raise DataError(_lacking(path.name, ["symbol"],
                                     f"symbol; it may have {', '.join(columns[1:])}"))
        rows = frame.index.to_numpy() + 1
        meta = pd.DataFrame({
            "symbol": frame[names["symbol"]].astype("string").str.strip().str.upper(),
            **{c: frame[names[c]] if c in names else None for c in _META_TEXT},
            "market_cap": (_parse_numbers(frame[names["market_cap"]], "market_cap", path.name,
                                          rows) if "market_cap" in names else np.nan),
        })
    except DataError as exc:
        raise ValueError(f"FileSource.universe_path is unusable: {exc}") from exc
    meta = meta.dropna(subset=["symbol"]).drop_duplicates("symbol", keep="last")
    return meta.astype({"symbol": object, **{c: object for c in _META_TEXT},
                        "market_cap": "float64"})
