"""The rules that turn a price file's rows into bars, and what reads the rows for them.

FileSource reads rows three ways: a whole file (:mod:`~technic_panel.data.columnar`,
pyarrow, or pandas where pyarrow cannot), the last rows of one for planning
(:mod:`~technic_panel.data.tails`) and one symbol's rows of a long table
(:mod:`~technic_panel.data.longtable`). Each checks its rows with :func:`checked_rows`
(or, over many rows at once, by the same rules), so the same rules give the same
messages whichever way the rows came: every cell of date, open, high, low, close and
volume is filled with a number or a date, a row with no price and no volume at all (a
holiday placeholder some exports write) is skipped, and every bar keeps the rules of
:func:`~technic_panel.data.base.check_bars`. Messages name the file, the row (counted
from 1 after the header) and the rule, never a value or a header name found in the
file, since they travel to remote clients.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from technic_panel.data.base import OHLCV_COLUMNS, Bars, DataError, check_bars, check_rule

FORMATS = {".csv": "CSV", ".parquet": "Parquet", ".pq": "Parquet"}
"""File suffixes read, and the format each names."""
DATE_NAMES = ("date", "datetime", "timestamp")
"""Names the date column may have (matched case-insensitively)."""
DateParser = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(keep, rows) -> dates``: the dates of the kept rows, checked; ``rows`` numbers them."""


class CheckedRows(NamedTuple):
    """Rows that keep every rule, in file order, with the order that sorts them by date."""

    dates: np.ndarray
    values: np.ndarray
    order: np.ndarray

    def in_file_order(self) -> bool:
        """Whether the file already had these rows sorted by date."""
        return bool((self.order == np.arange(len(self.order))).all())

    def bars(self) -> Bars:
        """Return the rows as sorted bars whose arrays are read-only (every caller shares them)."""
        arrays = [np.ascontiguousarray(a) for a in (
            self.dates[self.order].astype("datetime64[ns]"), *self.values[:, self.order])]
        for array in arrays:
            array.flags.writeable = False
        return Bars(*arrays)


def label_of(path: Path) -> str:
    """Name a data file in errors by its own name: the folder is the caller's to know."""
    return f"FileSource: {path.name}"


def check_size(path: Path, label: str, max_bytes: int | None) -> None:
    """Raise a :class:`DataError` if ``path`` cannot be stat'ed or is above ``max_bytes``."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise DataError(f"{label} cannot be read ({type(exc).__name__})") from exc
    if max_bytes is not None and size > max_bytes:
        raise DataError(f"{label} is {size:,} bytes; the most allowed is {max_bytes:,} "
                        "(FileSource.max_file_bytes)")


def read_table(path: Path, label: str, max_bytes: int | None) -> pd.DataFrame:
    """Read a CSV or Parquet file with a default RangeIndex (a named index becomes a column).

    A file larger than ``max_bytes`` is refused before it is read. Errors name the
    file and the exception's type only: a parser's text may quote the file.
    """
    kind = FORMATS[path.suffix.lower()]
    check_size(path, label, max_bytes)
    try:
        frame = pd.read_parquet(path) if kind == "Parquet" else pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{label}: the file is empty") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"{label} cannot be read as {kind} ({type(exc).__name__})") from exc
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()
    return frame


def column_positions(names: Iterable[object]) -> dict[str, int]:
    """Map each lower-cased, stripped column name to the position of the first that has it."""
    positions: dict[str, int] = {}
    for position, name in enumerate(names):
        positions.setdefault(str(name).strip().lower(), position)
    return positions


def lacking(label: str, missing: list[str], needs: str) -> str:
    """Say which columns ``label`` lacks and what it needs."""
    plural = "s" if len(missing) > 1 else ""
    return f"{label} lacks the column{plural} {', '.join(missing)} (needs {needs})"


def columns_of(names: Iterable[object], label: str) -> dict[str, int]:
    """Map date and each of :data:`OHLCV_COLUMNS` to a column position; raise naming any lacking.

    The message names the expected columns only, never the file's own header.
    """
    positions = column_positions(names)
    found = {"date": next((positions[n] for n in DATE_NAMES if n in positions), None)}
    found.update((column, positions.get(column)) for column in OHLCV_COLUMNS)
    missing = [column for column, position in found.items() if position is None]
    if missing:
        raise DataError(lacking(label, missing, f"{', '.join(found)}; the date may also be "
                                                f"called {' or '.join(DATE_NAMES[1:])}"))
    return {column: position for column, position in found.items() if position is not None}


def check_numbers(label: str, rows: np.ndarray, column: str, values: np.ndarray,
                  not_numbers: np.ndarray | None = None) -> None:
    """Raise for a cell that is not a number (``not_numbers``) or is infinite."""
    if not_numbers is not None:
        check_rule(label, rows, not_numbers, f"{column} is not a number")
    check_rule(label, rows, np.isinf(values), f"{column} is not a finite number")


def check_dates(label: str, rows: np.ndarray, empty: np.ndarray,
                not_dates: np.ndarray | None = None) -> None:
    """Raise for an empty date cell, then for one that is not a date."""
    check_rule(label, rows, empty, "date is empty")
    if not_dates is not None:
        check_rule(label, rows, not_dates, "date is not a date like 2024-01-31")


def checked_rows(label: str, rows: np.ndarray, values: np.ndarray,
                 parse_dates: DateParser) -> CheckedRows:
    """Check rows whose numbers are read (``values``: 5 x n float64, NaN where empty).

    Skips the rows without any price or volume, then checks that every cell is filled,
    the dates (``parse_dates`` reads and checks those of the kept rows) and the rules
    of :func:`~technic_panel.data.base.check_bars`.
    """
    keep = ~np.isnan(values).all(axis=0)
    if not keep.any():
        raise DataError(f"{label}: no row has prices")
    if not keep.all():
        rows, values = rows[keep], values[:, keep]
    for column, array in zip(OHLCV_COLUMNS, values, strict=True):
        check_rule(label, rows, np.isnan(array), f"{column} is empty")
    dates = parse_dates(keep, rows)
    order = check_bars(label, rows, dates, dict(zip(OHLCV_COLUMNS, values, strict=True)))
    return CheckedRows(dates, values, order)


def parse_dates(raw: pd.Series, label: str, rows: np.ndarray) -> np.ndarray:
    """Parse a date column into datetime64 of the column's own unit; every cell a date."""
    empty = raw.isna().to_numpy()
    check_dates(label, rows, empty)
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw
    else:
        text = raw.astype("string")
        try:
            parsed = pd.to_datetime(text, format=date_format(text), errors="coerce")
        except (TypeError, ValueError) as exc:
            raise DataError(f"{label}: the date column cannot be read as dates") from exc
        check_dates(label, rows, empty, parsed.isna().to_numpy())
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_localize(None)
    return parsed.to_numpy()  # in its own unit: a year-9999 date must not wrap round to 1816


def date_format(text: pd.Series) -> str:
    """Guess the format of the first date; ``"mixed"`` parses each date on its own."""
    values = text.dropna()
    return (guess_datetime_format(str(values.iloc[0])) if len(values) else None) or "mixed"


def parse_numbers(raw: pd.Series, column: str, label: str, rows: np.ndarray) -> np.ndarray:
    """Return a column as float64 (NaN where empty); raise for a non-number or an infinity."""
    not_numbers = None
    if not pd.api.types.is_numeric_dtype(raw):
        parsed = pd.to_numeric(raw, errors="coerce")
        not_numbers = (parsed.isna() & raw.notna()).to_numpy()
        raw = parsed
    values = raw.to_numpy(dtype="float64", na_value=np.nan)
    check_numbers(label, rows, column, values, not_numbers)
    return values
