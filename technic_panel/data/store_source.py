"""StoreSource: the read side of a bar store, for scans in any process.

A :class:`StoreSource` reads the generation that was current when it was made (see
:mod:`~technic_panel.data.store_layout`) and never opens the DuckDB file, so it never
waits on, nor blocks, the one process writing to the store. It pickles to its path and
generation name only: process and Dask workers map the same files again (once per
process and generation), and bars are never pickled.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from technic_panel.data.base import (
    PLAN_COLUMNS,
    SNAPSHOT_COLUMNS,
    UNIVERSE_COLUMNS,
    Bars,
    DataError,
)
from technic_panel.data.store_check import checked_symbol
from technic_panel.data.store_layout import (
    LOCATION_COLUMNS,
    Generation,
    StoreError,
    current_name,
    read_dir,
)
from technic_panel.data.store_write import STATS_COLUMNS

logger = logging.getLogger(__name__)

FIRST_PART = 256
"""Rows of the first part :meth:`StoreSource.plan_parts` yields: the scan starts on these."""
PART = 4_096
"""Rows of each later part."""
_INTERNAL = {*LOCATION_COLUMNS[1:], *SNAPSHOT_COLUMNS[1:], *STATS_COLUMNS, "priority_score"}
_EXPORTS = {"csv": ".csv", "parquet": ".parquet"}
_ATTEMPTS = 5


@dataclass(frozen=True)
class StoreInfo:
    """What a bar store holds: symbol and bar counts, its date range and its last write."""

    path: Path
    symbols: int
    bars: int
    first_date: pd.Timestamp | None
    last_date: pd.Timestamp | None
    updated_at: pd.Timestamp | None
    generation: str


@functools.lru_cache(maxsize=4)
def _mapped(directory: str) -> Generation:
    return Generation(Path(directory))


_open_lock = threading.Lock()


def open_generation(path: Path, name: str | None = None) -> Generation:
    """Map generation ``name`` of the store at ``path`` (None: the current one), once a process.

    A generation deleted since (a worker unpickling a source after several writes) is
    replaced by the current one; a writer switching ``CURRENT`` meanwhile is retried.
    """
    directory, missing = read_dir(path), None
    for _ in range(_ATTEMPTS):
        wanted = name or current_name(directory)
        if wanted is None:
            raise StoreError(f"StoreSource.path must be a bar store, not {str(path)!r}: it has "
                             f"no {directory.name}/CURRENT (create one with "
                             "BarStore(path, create=True) or `technic-data ingest`)")
        if wanted == missing:
            raise StoreError(f"StoreSource: {path} names generation {wanted}, which is missing "
                             "(open the store once with BarStore to rebuild it)")
        try:
            with _open_lock:
                return _mapped(str(directory / wanted))
        except FileNotFoundError:
            if name is not None:
                logger.info("%s: generation %s is gone; reading the current one", path, name)
            name, missing = None, wanted
    raise StoreError(f"StoreSource could not open {path}: its generation changed "
                     f"{_ATTEMPTS} times while it was being read")


class StoreSource:
    """A :class:`~technic_panel.data.base.DataSource` reading a bar store read-only.

    Also a :class:`~technic_panel.data.base.PlannableSource`: :meth:`plan_parts` yields
    the stored plan in priority order, 256 rows first. Thread-safe; picklable by path.
    ``path`` is the store's DuckDB file; the source reads the generation current at
    construction until :meth:`refresh`.
    """

    name = "store"

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"StoreSource.path must be a bar store file, not {str(path)!r}: "
                             "it does not exist")
        self._pinned: str | None = None
        self._lock = threading.Lock()
        self._generation: Generation | None = open_generation(self.path)

    def __repr__(self) -> str:
        return f"StoreSource({str(self.path)!r}, generation={self.generation.name!r})"

    def __getstate__(self) -> dict:
        return {"path": self.path, "generation": self.generation.name}

    def __setstate__(self, state: dict) -> None:
        self.path = state["path"]
        self._pinned = state["generation"]
        self._lock = threading.Lock()
        self._generation = None

    @property
    def generation(self) -> Generation:
        """The generation this source reads (mapped on first use after unpickling)."""
        with self._lock:
            if self._generation is None:
                self._generation = open_generation(self.path, self._pinned)
            return self._generation

    def refresh(self) -> bool:
        """Read the store's newest generation from now on; return whether it changed."""
        newest = open_generation(self.path)
        with self._lock:
            changed = self._generation is None or newest.name != self._generation.name
            self._generation = newest
        return changed

    def symbols(self) -> list[str]:
        """Return every stored symbol, sorted, from the index alone."""
        return list(self.generation.symbols)

    def universe(self) -> pd.DataFrame:
        """Return one row per symbol (sorted): :data:`UNIVERSE_COLUMNS`, then extra columns."""
        table = self._sorted()
        extra = [c for c in table.column_names if c not in _INTERNAL and c not in UNIVERSE_COLUMNS]
        return table.select([*UNIVERSE_COLUMNS, *extra]).to_pandas()

    def snapshot(self) -> pd.DataFrame:
        """Return every symbol's last bar (sorted by symbol), kept up to date at write time."""
        return self._sorted().select(list(SNAPSHOT_COLUMNS)).to_pandas()

    def plan_parts(self, first: int = FIRST_PART, size: int = PART) -> Iterator[pd.DataFrame]:
        """Yield the plan (:data:`PLAN_COLUMNS`) best first: ``first`` rows, then ``size`` each."""
        table = self.generation.table.select(list(PLAN_COLUMNS))
        start, step = 0, first
        while start < len(table):
            yield table.slice(start, step).to_pandas()
            start, step = start + step, size

    def bars(self, symbol: str) -> Bars:
        """Return ``symbol``'s bars as read-only views of the mapped store."""
        bars = self.generation.bars(symbol)
        if bars is None:
            raise DataError(f"StoreSource has no symbol {symbol!r} (not in {self.path.name})")
        return bars

    def history(self, symbol: str) -> pd.DataFrame:
        """Return ``symbol``'s daily OHLCV bars as a DataFrame indexed by date."""
        return self.bars(symbol).to_frame()

    def info(self) -> StoreInfo:
        """Return what the generation read holds, without opening the DuckDB file."""
        generation = self.generation
        table = generation.table

        def bound(column: str, how: str) -> pd.Timestamp | None:
            value = getattr(pc, how)(table.column(column)).as_py()
            return None if value is None else pd.Timestamp(value)

        stamp = generation.metadata.get("updated_at")
        return StoreInfo(self.path, len(table), int(pc.sum(table.column("length")).as_py()
                                                    or 0),
                         bound("first_date", "min"), bound("date", "max"),
                         pd.Timestamp(stamp) if stamp else None, generation.name)

    def export(self, directory: str | PathLike[str], *, format: str = "csv") -> list[Path]:
        """Write one ``SYMBOL.csv`` (or ``.parquet``) file per symbol into ``directory``.

        The files are what :class:`~technic_panel.data.files.FileSource` reads; existing
        files of the same names are replaced. Returns the paths written, by symbol.
        """
        if format not in _EXPORTS:
            raise ValueError(f"StoreSource.export format must be one of "
                             f"{', '.join(_EXPORTS)}, not {format!r}")
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        generation = self.generation
        symbols = generation.table.column("symbol").to_pylist()
        written = []
        for row in generation.sorted_rows():
            path = folder / f"{_file_stem(symbols[row])}{_EXPORTS[format]}"
            table = _export_table(generation.bars_at(int(row)))
            if format == "csv":
                pacsv.write_csv(table, path)
            else:
                pq.write_table(table, path)
            written.append(path)
        return written

    def _sorted(self) -> pa.Table:
        generation = self.generation
        return generation.table.take(generation.sorted_rows())


def _file_stem(symbol: str) -> str:
    """Return ``symbol`` as a file name; StoreError for one SQL of a user's own put there."""
    try:
        if checked_symbol(symbol) == symbol:
            return symbol
    except DataError:
        pass
    raise StoreError(f"StoreSource.export: the stored symbol {symbol!r} cannot name a file "
                     "(written with SQL, not BarStore?); delete or rename it")


def _export_table(bars: Bars) -> pa.Table:
    """Return bars as a table with a ``date`` column: calendar dates when no bar has a time."""
    days = bars.dates.astype("datetime64[D]")
    dates = pa.array(days) if np.array_equal(days, bars.dates) else pa.array(bars.dates)
    return pa.table({"date": dates, **{name: getattr(bars, name) for name in
                                       ("open", "high", "low", "close", "volume")}})
