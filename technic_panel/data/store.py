"""BarStore: daily bars of any number of symbols in one local DuckDB file, written atomically.

Overview: the DuckDB file ``FILE`` is the source of truth, holding the tables ``bars``
(symbol, date, open, high, low, close, volume), ``universe`` (symbol, name, sector,
industry, market_cap and any extra columns a user brings), ``snapshot`` (each symbol's
last bar and what is cheap to know of it, kept up to date at write time) and ``meta``
(schema version, last update, current generation); anyone may query it with SQL while
no writer holds it.

Mechanics: only one process may open a DuckDB file for writing, and a read-only open fails
while it does, so scans never open it. Each write is one DuckDB transaction; before it
commits, the writer materialises the store's next read *generation* (memory-mapped Arrow
files, see :mod:`~technic_panel.data.store_layout`), and after it commits it switches the
``CURRENT`` pointer to it. :class:`~technic_panel.data.store_source.StoreSource` reads
generations only, so readers in any process keep working while one writer appends. A
writer killed mid-write leaves the previous state: DuckDB rolls the transaction back and
``CURRENT`` still names the previous generation; opening the store again finishes a
publication that a crash interrupted between commit and switch.

Only data written through BarStore is checked; after changing the tables with SQL of your
own, call :meth:`BarStore.rebuild` so readers see it. A BarStore serialises its calls
with a lock, so threads may share one; two processes cannot (DuckDB's lock refuses the
second writer).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from os import PathLike
from pathlib import Path

import duckdb
import pandas as pd

from technic_panel.data.store_layout import (
    SHARDS,
    Generation,
    StoreError,
    current_name,
    prune,
    publish,
    read_dir,
)
from technic_panel.data.store_source import StoreInfo, StoreSource
from technic_panel.data.store_tx import (
    SCHEMA_VERSION,
    StoreTransaction,
    WriteReport,
    create_schema,
)

__all__ = ["BarStore", "StoreError", "StoreInfo", "StoreSource", "StoreTransaction",
           "WriteReport"]

logger = logging.getLogger(__name__)


class BarStore:
    """A local bar store: open it (``create=True`` makes one), write, and read it as a source.

    Parameters
    ----------
    path
        The DuckDB file; its read generations live in ``PATH.read/`` beside it.
    create
        Create the store if ``path`` does not exist (or is an empty DuckDB database).
    """

    def __init__(self, path: str | PathLike[str], *, create: bool = False) -> None:
        self.path = Path(path)
        exists = self.path.exists()
        if not exists and not create:
            raise StoreError(f"BarStore.path must be an existing bar store, not {str(path)!r}: "
                             "it does not exist (pass create=True to create one)")
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = _connect(self.path)
        try:
            self._open(create)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        state = "closed" if self._con is None else f"generation={self._meta('generation')!r}"
        return f"BarStore({str(self.path)!r}, {state})"

    def __enter__(self) -> BarStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the DuckDB file (and its write lock); safe to call twice."""
        con, self._con = self._con, None
        if con is not None:
            con.close()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The open DuckDB connection (for SQL of your own; write through this class)."""
        if self._con is None:
            raise StoreError(f"BarStore {self.path} is closed")
        return self._con

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        """Group writes, deletes and universe updates into one atomic change and generation."""
        with self._lock:
            tx = StoreTransaction(self.connection, self.path)
            try:
                yield tx
            except BaseException:
                tx.rollback()
                raise
            tx.commit()

    def write(self, frames: Mapping[str, object], *, mode: str = "append") -> WriteReport:
        """Write bars by symbol (OHLCV frames indexed by date, or Bars), in one transaction.

        ``mode="append"`` adds the bars dated after the symbol's last stored bar (a new
        symbol is created); ``"replace"`` makes the given bars the symbol's whole history.
        A symbol whose bars break a rule is refused, with its reason, and nothing of it is
        written; the others are.
        """
        with self.transaction() as tx:
            return tx.write(frames, mode=mode)

    def delete(self, symbols: Iterable[str]) -> int:
        """Delete symbols (bars, snapshot and universe row); return how many were stored."""
        with self.transaction() as tx:
            return tx.delete(symbols)

    def set_universe(self, frame: pd.DataFrame) -> None:
        """Insert or update universe rows by symbol: name, sector, industry, market_cap, extras."""
        with self.transaction() as tx:
            tx.set_universe(frame)

    def last_dates(self) -> dict[str, pd.Timestamp]:
        """Return each stored symbol's last bar date."""
        with self._lock:
            rows = self.connection.sql("SELECT symbol, date FROM snapshot").fetchall()
        return {symbol: pd.Timestamp(date) for symbol, date in rows}

    def rebuild(self) -> None:
        """Write a new read generation from the DuckDB tables alone (after SQL of your own)."""
        with self._lock:
            StoreTransaction(self.connection, self.path, rebuild=True).commit()

    def source(self) -> StoreSource:
        """Return a read-only source of the store as it is now."""
        return StoreSource(self.path)

    def info(self) -> StoreInfo:
        """Return the symbol and bar counts, the date range and the last update."""
        return self.source().info()

    def export(self, directory: str | PathLike[str], *, format: str = "csv") -> list[Path]:
        """Write one file per symbol into ``directory`` (``"csv"`` or ``"parquet"``)."""
        return self.source().export(directory, format=format)

    def _meta(self, key: str) -> str | None:
        with self._lock:
            rows = self.connection.execute("SELECT value FROM meta WHERE key = ?",
                                           [key]).fetchall()
        return str(rows[0][0]) if rows else None

    def _open(self, create: bool) -> None:
        tables = {name for (name,) in self.connection.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()}
        if "meta" not in tables:
            if tables:
                raise StoreError(f"BarStore.path must be a bar store, not {str(self.path)!r}: "
                                 "it is a DuckDB file without the store's tables")
            if not create:
                raise StoreError(f"BarStore.path {str(self.path)!r} is an empty DuckDB file "
                                 "(pass create=True to make it a store)")
            create_schema(self.connection, SHARDS)
        version = self._meta("schema_version")
        if version != SCHEMA_VERSION:
            raise StoreError(f"BarStore {self.path} has schema version {version!r}; this "
                             f"technic-panel reads {SCHEMA_VERSION!r}")
        read_dir(self.path).mkdir(exist_ok=True)
        self._recover()

    def _recover(self) -> None:
        """Make ``CURRENT`` name the committed generation, rebuilding it if it is missing."""
        directory = read_dir(self.path)
        committed, current = self._meta("generation"), current_name(directory)
        if committed and (directory / committed / "symbols.arrow").exists():
            if current != committed:
                logger.info("%s: publishing generation %s, committed before a crash",
                            self.path, committed)
                publish(directory, committed)
        else:
            logger.info("%s: rebuilding the read generation from the DuckDB tables", self.path)
            self.rebuild()
        committed = self._meta("generation")
        prune(directory, {name for name in (committed, current) if name})
        Generation(directory / str(committed))  # fails now, naming it, if unreadable


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    """Open ``path`` read-write; StoreError if another process writes to it or it is not DuckDB."""
    try:
        return duckdb.connect(str(path))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreError(f"BarStore {path} is open for writing in another process; one "
                             "writer at a time (scans read it with StoreSource meanwhile)"
                             ) from exc
        raise StoreError(f"BarStore.path must be a bar store (a DuckDB file), not "
                         f"{str(path)!r}: {type(exc).__name__}") from exc
    except duckdb.Error as exc:
        raise StoreError(f"BarStore {path} cannot be opened: {exc}") from exc
