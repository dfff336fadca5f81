"""A long table (one file with a ``symbol`` column) read once, columnar, cut by offsets.

The file is read whole with pyarrow, its rows are stably sorted by symbol (so each
symbol keeps its file order) and its price columns become contiguous numpy arrays in
that order (:class:`~technic_panel.data.columnar.PriceColumns`): a symbol's rows are
one range of them. The rules are checked over the whole table at once, so a symbol none
of whose rows breaks one is a slice of the arrays, without a copy; any other symbol is
checked row by row and fails alone, naming its row (counted in the file) and the rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from technic_panel.data.base import Bars, DataError
from technic_panel.data.columnar import PriceColumns, read_arrow
from technic_panel.data.pricefile import (
    check_size,
    column_positions,
    columns_of,
    label_of,
    lacking,
)


class LongTable:
    """Every symbol's rows of one long table, sorted by symbol into contiguous arrays.

    Built by :meth:`read`; :meth:`bars` is a slice. Read-only once built, so thread-safe.
    """

    def __init__(self, label: str, names: list[str], symbols: list[str], starts: np.ndarray,
                 ends: np.ndarray, columns: PriceColumns | None) -> None:
        self.label, self.names, self.symbols = label, names, symbols
        self.index = {symbol: i for i, symbol in enumerate(symbols)}
        self.starts, self.ends = starts, ends
        self.columns = columns
        self.clean = np.zeros(len(symbols), dtype=bool)
        if columns is not None and symbols:
            by_row = np.argsort(starts)  # the spans tile the rows: check them in row order
            self.clean[by_row] = columns.clean(starts[by_row])

    @classmethod
    def read(cls, path: Path, max_bytes: int | None) -> LongTable:
        """Read and index the long table at ``path``; DataError if it cannot be read at all."""
        label = label_of(path)
        check_size(path, label, max_bytes)
        table = read_arrow(path, label, max_bytes)
        names = [str(name) for name in table.column_names]
        position = column_positions(names).get("symbol")
        if position is None:
            raise DataError(lacking(label, ["symbol"],
                                    "symbol, date, open, high, low, close, volume"))
        symbols, rank = _symbol_ranks(table.column(position))
        order, starts, ends = _spans(rank, len(symbols))
        try:
            columns = PriceColumns(table, label, order)
        except DataError:
            columns = None  # each symbol's bars() names the columns lacking
        return cls(label, names, symbols, starts, ends, columns)

    def bars(self, symbol: str) -> Bars:
        """Return ``symbol``'s bars (KeyError if absent); DataError naming its row and rule."""
        i = self.index[symbol]
        label = f"{self.label} (symbol {symbol})"
        if self.columns is None:
            columns_of(self.names, label)  # raises, naming the columns lacking
            raise AssertionError("unreachable: a table lacking no column has columns")
        return self.columns.bars(int(self.starts[i]), int(self.ends[i]), label,
                                 bool(self.clean[i]))


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
    array = column.combine_chunks()
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    keys = pc.utf8_upper(pc.utf8_trim_whitespace(pc.cast(encoded.dictionary, pa.string())))
    indices = pc.fill_null(encoded.indices, len(keys)).to_numpy().astype(np.int64)
    used = np.bincount(indices, minlength=len(keys) + 1)[:len(keys)] > 0
    names = [key if use else None for key, use in zip(keys.to_pylist(), used, strict=True)]
    symbols = sorted({name for name in names if name})
    position = {symbol: i for i, symbol in enumerate(symbols)}
    mapping = np.array([position.get(name, -1) if name else -1 for name in [*names, None]])
    return symbols, mapping[indices]
