"""Files' last bars, read without parsing the whole files, for planning a scan.

A plan needs each symbol's last close, recent returns and volumes (at most
:data:`NEEDED_BARS` bars back) long before the scan reads whole files. Of a CSV file,
only the header and the last :data:`TAIL_ROWS` lines are read, from a seek near its
end; the tails of many files that share a header are parsed together, as one table
(:class:`~technic_panel.data.columnar.PriceColumns`), so the rules are checked for all
of them at once. Of a Parquet file, only the date and price columns of its last row
groups are read.

:func:`tail_bars` gives None for a file whose tail alone cannot tell: the tail would
be the whole file (a short CSV, a Parquet file of one row group), a tail row breaks a
rule or is not understood, or the tail's dates do not rise (the file may be unsorted).
The caller then reads the whole file, which also names the bad row. A file whose
dates rise at its end is trusted to end with its latest bars.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from technic_panel.data.base import OHLCV_COLUMNS, Bars, DataError
from technic_panel.data.columnar import PriceColumns, read_csv
from technic_panel.data.pricefile import (
    FORMATS,
    CheckedRows,
    columns_of,
    label_of,
)

NEEDED_BARS = 22
"""Bars a plan row looks back: the 21-day return needs 22 (see ``snapshot_from_bars``)."""
TAIL_ROWS = 25
"""Lines read from a CSV file's end: :data:`NEEDED_BARS` and a few holiday placeholders."""
HEADER_BYTES = 1 << 16
"""The most bytes read for a CSV file's header line."""
_FIRST_WINDOW = 4096
"""Bytes first read from a CSV file's end; grown eightfold while it holds too few lines."""
_LAST_WINDOW = 1 << 20
_UNREADABLE = (OSError, ValueError, KeyError, pa.ArrowException)
"""What reading a tail may raise (a DataError is a ValueError): the whole file then says."""


def tail_bars(paths: Sequence[Path]) -> list[Bars | None]:
    """Return each file's last bars (None: read the whole file instead), in order."""
    found: list[Bars | None] = [None] * len(paths)
    by_header: dict[bytes, list[tuple[int, list[bytes]]]] = {}
    for i, path in enumerate(paths):
        try:
            if FORMATS[path.suffix.lower()] == "Parquet":
                found[i] = _accepted(_parquet_tail(path, label_of(path)))
            elif (lines := _last_lines(path)) is not None:
                by_header.setdefault(lines[0].rstrip(b"\r\n"), []).append((i, lines[1]))
        except _UNREADABLE:
            pass
    for header, tails in by_header.items():
        _csv_tails(header, tails, paths, found)
    return found


def _accepted(rows: CheckedRows | None) -> Bars | None:
    """Return the tail's bars if they rose in the file and are enough for a plan row."""
    if rows is None or len(rows.order) < NEEDED_BARS or not rows.in_file_order():
        return None
    return rows.bars()


def _last_lines(path: Path) -> tuple[bytes, list[bytes]] | None:
    """Return the header line and the last :data:`TAIL_ROWS` non-blank lines (None: short file).

    Any line ending (LF, CRLF or CR) and blank lines at the end are fine.
    """
    with path.open("rb") as handle:
        header = next(iter(handle.readline(HEADER_BYTES).splitlines(keepends=True)), b"")
        start, size = len(header), os.fstat(handle.fileno()).st_size
        window = _FIRST_WINDOW
        while True:
            if size - window <= start:
                return None
            handle.seek(size - window)
            lines = [line for line in handle.read(window).splitlines()[1:] if line.strip()]
            if len(lines) >= TAIL_ROWS or window >= _LAST_WINDOW:
                break
            window *= 8
    return (header, lines[-TAIL_ROWS:]) if len(lines) >= TAIL_ROWS else None


def _csv_tails(header: bytes, tails: list[tuple[int, list[bytes]]], paths: Sequence[Path],
               found: list[Bars | None]) -> None:
    """Parse the tails of files with one header as one table; fill ``found`` for each.

    If the table cannot be read, or a line did not make one row (a quoted line break),
    each tail is parsed alone, so one odd file cannot spoil the others.
    """
    try:
        table = read_csv(b"\n".join([header, *(line for _, lines in tails for line in lines)]),
                         threads=False)
        if table.num_rows != TAIL_ROWS * len(tails):
            raise ValueError("a tail line did not make one row")
        columns = PriceColumns(table, "tails")
    except _UNREADABLE:
        if len(tails) > 1:
            for tail in tails:
                _csv_tails(header, [tail], paths, found)
        return
    starts = np.arange(len(tails)) * TAIL_ROWS
    for k, ((i, _), clean) in enumerate(zip(tails, columns.clean(starts), strict=True)):
        start = k * TAIL_ROWS
        if clean:
            found[i] = columns.view(start, start + TAIL_ROWS)
            continue
        try:
            found[i] = _accepted(columns.checked(start, start + TAIL_ROWS, label_of(paths[i])))
        except DataError:
            pass  # the whole file's read names the row


def _parquet_tail(path: Path, label: str) -> CheckedRows | None:
    """Read the last row groups' date and price columns; None if that is the whole file."""
    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    columns = columns_of(names, label)
    groups, count = [], 0
    for group in reversed(range(parquet.metadata.num_row_groups)):
        groups.append(group)
        count += parquet.metadata.row_group(group).num_rows
        if count >= TAIL_ROWS:
            break
    if len(groups) == parquet.metadata.num_row_groups:
        return None
    wanted = [names[columns[c]] for c in ("date", *OHLCV_COLUMNS)]
    table = parquet.read_row_groups(sorted(groups), columns=wanted)
    table = table.slice(table.num_rows - TAIL_ROWS)
    return PriceColumns(table, label).checked(0, table.num_rows, label)
