"""A long table (one file with a ``symbol`` column) read columnar, in pieces, cut by offsets.

The symbol column is read first (of a Parquet file, alone and as a dictionary), so the
symbols and each one's rows are known at once. A Parquet table whose symbols each come
in one run of rows keeps its order and has its date and price columns read a few row
groups at a time (reads double in rows): each read completes a piece of whole symbols,
whose bars are ready, and planned and scanned, while later pieces are still read. Any
other table is read whole and its rows stably sorted by symbol (so each symbol keeps
its file order). A piece's price columns are contiguous numpy arrays
(:class:`~technic_panel.data.columnar.PriceColumns`) whose rules are checked over the
whole piece at once, so a symbol none of whose rows breaks one is a slice of the arrays,
without a copy; any other symbol is checked row by row and fails alone, naming its row
(counted in the file) and the rule.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from technic_panel.data.base import Bars, DataError
from technic_panel.data.columnar import PriceColumns, read_arrow
from technic_panel.data.pricefile import (
    FORMATS,
    check_size,
    column_positions,
    columns_of,
    label_of,
    lacking,
)
from technic_panel.data.tails import NEEDED_BARS

FIRST_ROWS = 1 << 16
"""The fewest rows of a Parquet table grouped by symbol read first (later reads double)."""
_UNREADABLE = (OSError, pa.ArrowException)
_NEEDS = "symbol, date, open, high, low, close, volume"


@dataclass(frozen=True)
class _Piece:
    """Whole symbols' rows: ``symbols`` (in row order) from row ``first`` of the table.

    ``columns`` is None if the table lacks a price column; ``error`` says why the rows
    could not be read (then there are no columns either).
    """

    symbols: np.ndarray
    first: int
    columns: PriceColumns | None
    clean: np.ndarray
    error: str | None = None


class LongTable:
    """Every symbol's rows of one long table, read in pieces of contiguous arrays.

    Built by :meth:`read`; :meth:`bars` is a slice of a piece, read first if need be, and
    :meth:`ready` follows the pieces as they are read. Thread-safe.
    """

    def __init__(self, label: str, names: list[str], symbols: list[str], starts: np.ndarray,
                 ends: np.ndarray, pieces: Iterator[_Piece]) -> None:
        self.label, self.names, self.symbols = label, names, symbols
        self.index = {symbol: i for i, symbol in enumerate(symbols)}
        self.starts, self.ends = starts, ends
        self._pieces = pieces
        self._lock = threading.Lock()
        self._read: list[_Piece] = []
        self._piece_of = np.full(len(symbols), -1, dtype=np.int64)
        self._clean = np.zeros(len(symbols), dtype=bool)

    @classmethod
    def read(cls, path: Path, max_bytes: int | None) -> LongTable:
        """Read the symbols of the long table at ``path``; DataError if it cannot be read."""
        label = label_of(path)
        check_size(path, label, max_bytes)
        if FORMATS[path.suffix.lower()] == "Parquet":
            try:
                table = _parquet_table(path, label)
                if table is not None:
                    return table
            except _UNREADABLE:
                pass  # read whole: pandas then says why it cannot be
        whole = read_arrow(path, label, max_bytes)
        names = [str(name) for name in whole.column_names]
        symbols, rank = _symbol_ranks(whole.column(_symbol_position(names, label)))
        order, starts, ends = _spans(rank, len(symbols))
        return cls(label, names, symbols, starts, ends,
                   iter([_whole_piece(whole, label, order, starts)]))

    def bars(self, symbol: str) -> Bars:
        """Return ``symbol``'s bars (KeyError if absent); DataError naming its row and rule."""
        i = self.index[symbol]
        piece = self._piece(i)
        label = f"{self.label} (symbol {symbol})"
        if piece.error is not None:
            raise DataError(f"{label} {piece.error}")
        if piece.columns is None:
            columns_of(self.names, label)  # raises, naming the columns lacking
            raise AssertionError("unreachable: a table lacking no column has columns")
        return piece.columns.bars(int(self.starts[i]) - piece.first,
                                  int(self.ends[i]) - piece.first, label, bool(self._clean[i]))

    def ready(self) -> Iterator[list[str]]:
        """Yield the symbols of each piece, in row order, as soon as it is read."""
        k = 0
        while True:
            with self._lock:
                while len(self._read) <= k:
                    if not self._read_one():
                        return
                piece = self._read[k]
            yield [self.symbols[i] for i in piece.symbols]
            k += 1

    def plan_values(self, symbols: list[str], window: int) -> tuple[dict[str, np.ndarray],
                                                                       np.ndarray]:
        """Return the plan values of ``symbols`` and which got them, vectorised by piece.

        A symbol whose rows are valid bars, long enough for every value, gets them as
        ``PriceColumns.snapshots`` gives them; any other (False) is left NaN (NaT).
        """
        indices = np.array([self.index[s] for s in symbols], dtype=np.int64)
        for i in indices:
            self._piece(int(i))
        pieces, lengths = self._piece_of[indices], self.ends[indices] - self.starts[indices]
        done = self._clean[indices] & (lengths >= max(NEEDED_BARS, window))
        values: dict[str, np.ndarray] = {}
        for k in np.unique(pieces[done]):
            piece, mask = self._read[int(k)], done & (pieces == k)
            assert piece.columns is not None, "a clean symbol's piece has columns"
            found = piece.columns.snapshots(self.ends[indices[mask]] - piece.first, window)
            for name, array in found.items():
                if name not in values:
                    empty = np.datetime64("NaT") if array.dtype.kind == "M" else np.nan
                    values[name] = np.full(len(symbols), empty, dtype=array.dtype)
                values[name][mask] = array
        return values, done

    def _piece(self, i: int) -> _Piece:
        """Return the piece holding symbol ``i``, reading pieces until it is read."""
        if self._piece_of[i] < 0:
            with self._lock:
                while self._piece_of[i] < 0 and self._read_one():
                    pass
        if self._piece_of[i] < 0:
            raise AssertionError(f"{self.label}: the pieces missed symbol {self.symbols[i]}")
        return self._read[int(self._piece_of[i])]

    def _read_one(self) -> bool:
        """Read the next piece (the lock held); False if every piece was read."""
        piece = next(self._pieces, None)
        if piece is None:
            return False
        self._clean[piece.symbols] = piece.clean
        self._read.append(piece)
        self._piece_of[piece.symbols] = len(self._read) - 1
        return True


def _symbol_position(names: list[str], label: str) -> int:
    position = column_positions(names).get("symbol")
    if position is None:
        raise DataError(lacking(label, ["symbol"], _NEEDS))
    return position


def _parquet_table(path: Path, label: str) -> LongTable | None:
    """Read a Parquet table's symbol column, and its pieces as they are wanted.

    None if its column names repeat (it is then read whole, as any other file).
    """
    names = [str(name) for name in pq.read_schema(path).names]
    if len(set(names)) != len(names):
        return None
    name = names[_symbol_position(names, label)]
    parquet = pq.ParquetFile(path, read_dictionary=[name])
    symbols, rank = _symbol_ranks(parquet.read(columns=[name]).column(0))
    order, starts, ends = _spans(rank, len(symbols))
    try:
        wanted = [names[p] for p in columns_of(names, label).values()]
    except DataError:  # each symbol's bars() names the columns lacking
        everyone = np.argsort(starts, kind="stable")
        pieces = iter([_Piece(everyone, 0, None, np.zeros(len(symbols), dtype=bool))])
    else:
        if order is None:
            pieces = _grouped_pieces(parquet, wanted, label, np.argsort(starts, kind="stable"),
                                     starts, ends)
        else:
            pieces = iter([_whole_piece(parquet.read(columns=wanted), label, order, starts)])
    return LongTable(label, names, symbols, starts, ends, pieces)


def _whole_piece(table: pa.Table, label: str, order: np.ndarray | None,
                 starts: np.ndarray) -> _Piece:
    """Return every symbol's rows of a table read whole, in ``order``, as one piece."""
    by_row = np.argsort(starts, kind="stable")
    try:
        columns = PriceColumns(table, label, order)
    except DataError:  # each symbol's bars() names the columns lacking
        return _Piece(by_row, 0, None, np.zeros(len(starts), dtype=bool))
    return _Piece(by_row, 0, columns, columns.clean(starts[by_row]))


def _grouped_pieces(parquet: pq.ParquetFile, wanted: list[str], label: str,
                    by_row: np.ndarray, starts: np.ndarray,
                    ends: np.ndarray) -> Iterator[_Piece]:
    """Yield pieces of whole symbols of a table grouped by symbol, row groups at a time.

    ``by_row`` lists the symbols in row order. Each read takes whole row groups, at least
    :data:`FIRST_ROWS` rows and then twice the last read, in one call (pyarrow decodes
    them without the GIL, so the symbols read are scanned meanwhile). A read's whole
    symbols are one piece, viewing its arrays, and a symbol that began in an earlier read
    is a piece of its own. If a read fails, one last piece holds every symbol not read
    yet, with the reason.
    """
    row_ends = ends[by_row]
    pending: list[pa.Table] = []  # the rows read of the symbol the reads so far end inside
    first = done = 0  # the file row of the next symbol's first row; the symbols read
    try:
        for groups in _reads(parquet.metadata):
            table = parquet.read_row_groups(groups, columns=wanted).combine_chunks()
            start = first + sum(part.num_rows for part in pending)  # the read's first row
            count = int(np.searchsorted(row_ends, start + table.num_rows, side="right")) - done
            if count and pending:
                size = int(row_ends[done]) - start
                rows = pa.concat_tables([*pending, table.slice(0, size)]).combine_chunks()
                yield _piece(rows, by_row[done:done + 1], first, label, starts)
                pending, first, done, count = [], int(row_ends[done]), done + 1, count - 1
            if count:
                size = int(row_ends[done + count - 1]) - first
                yield _piece(table.slice(first - start, size), by_row[done:done + count],
                             first, label, starts)
                first, done = first + size, done + count
            if first < start + table.num_rows:
                pending.append(table.slice(max(first - start, 0)))
    except _UNREADABLE as exc:
        rest = by_row[done:]
        yield _Piece(rest, first, None, np.zeros(len(rest), dtype=bool),
                     f"cannot be read as Parquet ({type(exc).__name__})")


def _piece(table: pa.Table, symbols: np.ndarray, first: int, label: str,
           starts: np.ndarray) -> _Piece:
    """Return the piece of ``symbols``, whose rows ``table`` holds from file row ``first``."""
    columns = PriceColumns(table, label, first_row=first)
    return _Piece(symbols, first, columns, columns.clean(starts[symbols] - first))


def _reads(metadata: pq.FileMetaData) -> Iterator[list[int]]:
    """Yield the row groups of each read: at least FIRST_ROWS rows, then doubling."""
    groups: list[int] = []
    rows, target = 0, FIRST_ROWS
    for group in range(metadata.num_row_groups):
        groups.append(group)
        rows += metadata.row_group(group).num_rows
        if rows >= target or group == metadata.num_row_groups - 1:
            yield groups
            groups, rows, target = [], 0, 2 * max(rows, target)


def _spans(rank: np.ndarray, count: int) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Return the row order (None: the file's) and each symbol's rows in it, start:end.

    A table whose symbols each come in one run of rows keeps its order; any other is
    sorted by symbol, stably, and loses the rows without a symbol (``rank`` -1).
    """
    if rank.size and rank.min() >= 0:
        cuts = np.flatnonzero(rank[1:] != rank[:-1]) + 1
        if cuts.size + 1 == count:
            firsts = np.concatenate([[0], cuts])
            starts, ends = np.empty(count, dtype=np.int64), np.empty(count, dtype=np.int64)
            starts[rank[firsts]] = firsts
            ends[rank[firsts]] = np.append(cuts, rank.size)
            return None, starts, ends
    order = np.argsort(rank, kind="stable")[np.count_nonzero(rank < 0):]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(rank[order], minlength=count))])
    return order, bounds[:-1], bounds[1:]


def _symbol_ranks(column: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """Return the sorted symbols (stripped, upper-cased) and each row's index among them.

    A row without a symbol (empty or null) gets -1. The strings are worked on in the
    column's dictionary of distinct values, so the rows cost one pass of integers.
    """
    if pa.types.is_dictionary(column.type):
        chunks = column.unify_dictionaries().chunks
    else:
        chunks = [pc.dictionary_encode(column.combine_chunks())]
    dictionary = chunks[0].dictionary if chunks else pa.array([], pa.string())
    keys = pc.utf8_upper(pc.utf8_trim_whitespace(pc.cast(dictionary, pa.string())))
    indices = np.concatenate([np.zeros(0, dtype=np.int64), *(
        pc.fill_null(chunk.indices, len(keys)).to_numpy().astype(np.int64)
        for chunk in chunks)])
    used = np.bincount(indices, minlength=len(keys) + 1)[:len(keys)] > 0
    names = [key if use else None for key, use in zip(keys.to_pylist(), used, strict=True)]
    symbols = sorted({name for name in names if name})
    position = {symbol: i for i, symbol in enumerate(symbols)}
    mapping = np.array([position.get(name, -1) if name else -1 for name in [*names, None]])
    return symbols, mapping[indices]
