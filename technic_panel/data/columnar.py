"""Price columns read with pyarrow and checked by the rules in one vectorised pass.

A file is read whole with pyarrow (a CSV with pandas' null markers; pandas reads what
pyarrow cannot, or says why it cannot be read). :class:`PriceColumns` turns its date
and OHLCV columns into numpy arrays in a given row order and marks, over every row at
once, each row that breaks a rule (:func:`~technic_panel.data.base.rows_breaking_rules`,
empty or non-numeric cells, dates that do not rise). A span of rows with no mark is
already valid bars: its arrays are returned as read-only views, without a copy. Any
other span is checked row by row by :func:`~technic_panel.data.pricefile.checked_rows`,
so its error names the same row and rule as pandas' reader would. Text dates are parsed
in one pass, in the format of the first date; a span whose dates do not all parse so
is parsed alone, in the format of its own first date.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from technic_panel.data.base import OHLCV_COLUMNS, Bars, DataError, rows_breaking_rules
from technic_panel.data.pricefile import (
    FORMATS,
    CheckedRows,
    check_dates,
    check_numbers,
    check_size,
    checked_rows,
    columns_of,
    date_format,
    parse_dates,
    read_table,
)

PANDAS_NULLS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan",
                "null"]
"""The cells pandas' CSV reader takes for empty, so pyarrow reads a table as it would."""
_CSV_OPTIONS = {"null_values": PANDAS_NULLS, "strings_can_be_null": True}


def read_arrow(path: Path, label: str, max_bytes: int | None, *,
               threads: bool = True) -> pa.Table:
    """Read a whole CSV or Parquet file with pyarrow; with pandas if pyarrow cannot.

    ``threads=False`` reads on the calling thread alone (cheaper for small files). The
    size and errors are checked as :func:`~technic_panel.data.pricefile.read_table` does.
    """
    try:
        if FORMATS[path.suffix.lower()] == "Parquet":
            return pq.ParquetFile(path).read(use_threads=threads)
        return read_csv(path, threads=threads)
    except (OSError, pa.ArrowException):
        frame = read_table(path, label, max_bytes)
    for name, kind in frame.dtypes.items():
        if pd.api.types.is_object_dtype(kind):  # cells of several types: text for arrow
            frame[name] = frame[name].astype("string")
    return pa.Table.from_pandas(frame, preserve_index=False)


def read_csv(source: Path | bytes, *, threads: bool = True) -> pa.Table:
    """Read a CSV table (a file, or its bytes) as pandas would, null markers and all.

    pyarrow turns ``2024-01-02T00:00:00-05:00`` into UTC; pandas keeps the wall time, so
    such a date column is read again, as text, for :class:`PriceColumns` to parse.
    """
    def read(**options: object) -> pa.Table:
        where = pa.BufferReader(source) if isinstance(source, bytes) else source
        return pa_csv.read_csv(where, read_options=pa_csv.ReadOptions(use_threads=threads),
                               convert_options=pa_csv.ConvertOptions(**_CSV_OPTIONS, **options))

    table = read()
    try:
        position = columns_of(table.column_names, "")["date"]
    except DataError:
        return table
    kind, name = table.schema.types[position], table.column_names[position]
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        text = read(include_columns=[name], column_types={name: pa.string()})
        table = table.set_column(position, name, text.column(0))
    return table


def file_bars(path: Path, label: str, max_bytes: int | None) -> Bars:
    """Read one symbol's file whole and return its bars; DataError naming row and rule."""
    check_size(path, label, max_bytes)
    table = read_arrow(path, label, max_bytes, threads=False)
    if table.num_rows == 0:
        raise DataError(f"{label}: the file has no rows")
    columns = PriceColumns(table, label)
    clean = bool(columns.clean(np.zeros(1, dtype=np.int64))[0])
    return columns.bars(0, table.num_rows, label, clean)


class _Dates:
    """A date column: datetime64 in its own unit, its empty cells and its non-dates."""

    def __init__(self, column: pa.ChunkedArray, order: np.ndarray | None) -> None:
        kind = column.type
        self.text: pd.Series | None = None
        self.not_dates: np.ndarray | None = None
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            if pa.types.is_timestamp(kind) and kind.tz is not None:
                column = pc.local_timestamp(column)  # wall time, as pandas' tz_localize(None)
            self.values = _ordered(column.to_numpy(), order)
            self.empty = np.isnat(self.values)
            return
        raw = column.to_pandas()
        if order is not None:
            raw = raw.iloc[order].reset_index(drop=True)
        self.text = raw.astype("string")
        self.empty = raw.isna().to_numpy()
        try:
            parsed = pd.to_datetime(self.text, format=date_format(self.text), errors="coerce")
        except (TypeError, ValueError):  # each span then parses its own dates, and says why
            parsed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):
            parsed = parsed.dt.tz_localize(None)
        self.values = parsed.to_numpy()
        self.not_dates = np.isnat(self.values) & ~self.empty


def _ordered(values: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    return values if order is None else values[order]


def _numbers(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    """Return a column as float64 (NaN where empty) and which cells are not numbers."""
    kind = column.type
    if (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)
            or pa.types.is_boolean(kind) or pa.types.is_decimal(kind)):
        try:
            return pc.cast(column, pa.float64()).to_numpy(), None
        except pa.ArrowInvalid:
            pass  # a decimal beyond float64: pandas decides, cell by cell
    raw = column.to_pandas()
    parsed = pd.to_numeric(raw, errors="coerce")
    return parsed.to_numpy("float64", na_value=np.nan), (parsed.isna() & raw.notna()).to_numpy()


class PriceColumns:
    """The date and OHLCV columns of a table, in ``order`` (default: the file's), checked.

    ``rows`` numbers each row for people (from 1 after the header, in file order;
    ``first_row`` is the file row of the table's first, for a piece of a longer file).
    Raises the :class:`DataError` of :func:`~technic_panel.data.pricefile.columns_of`
    if a column is lacking. Read-only once built, so safe to share between threads.
    """

    def __init__(self, table: pa.Table, label: str, order: np.ndarray | None = None, *,
                 first_row: int = 0) -> None:
        columns = columns_of(table.column_names, label)
        self.rows = (np.arange(table.num_rows) if order is None else order) + 1 + first_row
        self.values: list[np.ndarray] = []
        """Each of :data:`OHLCV_COLUMNS` as float64, NaN where empty (a view where it can be)."""
        self.not_numbers: list[np.ndarray | None] = []
        for name in OHLCV_COLUMNS:
            values, not_numbers = _numbers(table.column(columns[name]))
            self.values.append(np.ascontiguousarray(_ordered(values, order)))
            self.not_numbers.append(None if not_numbers is None else _ordered(not_numbers, order))
        self.dates = _Dates(table.column(columns["date"]), order)
        # in nanoseconds, as Bars hold them: a date beyond 2262 wraps, but only in marked rows
        self._days = self.dates.values.astype("datetime64[ns]", copy=False)
        for array in (*self.values, self._days):
            array.flags.writeable = False

    def marked(self, starts: np.ndarray) -> np.ndarray:
        """Return which rows break a rule, are not plain numbers and dates, or do not rise.

        The rows at ``starts`` begin spans: they are not compared with the row before.
        """
        dates = self.dates
        bad = dates.empty.copy()
        for values in self.values:
            bad |= ~np.isfinite(values)
        for mask in (*self.not_numbers, dates.not_dates):
            if mask is not None:
                bad |= mask
        bad |= rows_breaking_rules(dates.values,
                                   dict(zip(OHLCV_COLUMNS, self.values, strict=True)))
        falling = np.zeros_like(bad)
        falling[1:] = ~(dates.values[1:] > dates.values[:-1])
        falling[starts] = False
        return bad | falling

    def clean(self, starts: np.ndarray) -> np.ndarray:
        """Return which spans of rows (from each of ``starts`` to the next) are valid bars."""
        if not len(self.rows):
            return np.zeros(len(starts), dtype=bool)
        return ~np.logical_or.reduceat(self.marked(starts), starts)

    def view(self, start: int, end: int) -> Bars:
        """Return rows ``start:end`` as bars, without a copy: for a span :meth:`clean` passed."""
        return Bars(self._days[start:end], *(values[start:end] for values in self.values))

    def snapshots(self, ends: np.ndarray, window: int) -> dict[str, np.ndarray]:
        """Return the plan values of the clean spans ending at ``ends``, as arrays.

        The same values, bit for bit, as ``snapshot_from_bars`` and the mean dollar volume
        of the last ``window`` bars give of each span's :meth:`view`; every span must
        hold more than 21 rows and at least ``window``.
        """
        close, volume = self.values[3][ends - 1], self.values[4][ends - 1]
        back = self.values[3][ends[:, None] - np.array([[2, 6, 22]])]
        mean_volume = self.values[4][ends[:, None] - 21 + np.arange(20)].mean(axis=1)
        recent = ends[:, None] - window + np.arange(window)
        rel_volume = np.full(len(ends), np.nan)
        np.divide(volume, mean_volume, out=rel_volume, where=mean_volume > 0)
        return {
            "avg_dollar_volume": (self.values[3][recent] * self.values[4][recent]).mean(axis=1),
            "date": self._days[ends - 1], "close": close,
            "change_pct": 100.0 * (close / back[:, 0] - 1.0),
            "return_5d": close / back[:, 1] - 1.0, "return_21d": close / back[:, 2] - 1.0,
            "rel_volume": rel_volume, "dollar_volume": close * volume,
        }

    def checked(self, start: int, end: int, label: str) -> CheckedRows:
        """Check rows ``start:end`` one by one; DataError naming ``label``, the row and the rule."""
        span = slice(start, end)
        rows = self.rows[span]
        for k, name in enumerate(OHLCV_COLUMNS):
            mask = self.not_numbers[k]
            check_numbers(label, rows, name, self.values[k][span],
                          None if mask is None else mask[span])
        dates = self.dates

        def parse(keep: np.ndarray, kept: np.ndarray) -> np.ndarray:
            if dates.text is not None and dates.not_dates is not None \
                    and dates.not_dates[span][keep].any():
                return parse_dates(dates.text.iloc[span][keep], label, kept)
            check_dates(label, kept, dates.empty[span][keep])
            return dates.values[span][keep]

        return checked_rows(label, rows, np.vstack([values[span] for values in self.values]),
                            parse)

    def bars(self, start: int, end: int, label: str, clean: bool) -> Bars:
        """Return rows ``start:end`` as bars: a view if ``clean``, else checked (DataError)."""
        return self.view(start, end) if clean else self.checked(start, end, label).bars()

