"""One atomic change to a bar store: its DuckDB transaction and the generation it publishes.

A :class:`StoreTransaction` begins a DuckDB transaction, checks every write (see
:mod:`~technic_panel.data.store_check`), inserts the rows it adds into ``bars`` and
spills them to scratch Arrow files (:class:`~technic_panel.data.store_write.Pending`).
:meth:`StoreTransaction.commit` writes the next read generation from the previous one
and those files, updates the ``snapshot`` and ``meta`` tables, commits, then points
``CURRENT`` at the new generation. Until that commit nothing a reader sees has changed.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from technic_panel.data.base import OHLCV_COLUMNS, Bars, DataError
from technic_panel.data.store_check import (
    check_length,
    checked_bars,
    checked_symbol,
    checked_universe,
)
from technic_panel.data.store_layout import (
    Generation,
    generation_number,
    new_generation_name,
    prune,
    publish,
    read_dir,
    shard_of,
)
from technic_panel.data.store_write import Changes, Pending, finish, write_shards, write_symbols

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
"""Version of the DuckDB tables; a store of another version is refused."""
MODES = ("append", "replace")
_BARS = "symbol VARCHAR NOT NULL, date TIMESTAMP NOT NULL, " + ", ".join(
    f"{name} DOUBLE NOT NULL" for name in OHLCV_COLUMNS)
_SCHEMA = (
    f"CREATE TABLE bars ({_BARS})",
    "CREATE TABLE universe (symbol VARCHAR NOT NULL, name VARCHAR, sector VARCHAR, "
    "industry VARCHAR, market_cap DOUBLE)",
    "CREATE TABLE snapshot (symbol VARCHAR NOT NULL, date TIMESTAMP, close DOUBLE, "
    "change_pct DOUBLE, return_5d DOUBLE, return_21d DOUBLE, rel_volume DOUBLE, "
    "dollar_volume DOUBLE, avg_dollar_volume DOUBLE, first_date TIMESTAMP, bars BIGINT)",
    "CREATE TABLE meta (key VARCHAR NOT NULL, value VARCHAR)",
)
_COLUMNS = ", ".join(["symbol", "date", *OHLCV_COLUMNS])
_ROWS = "technic_rows"
"""The name rows from Python are queried under (see :func:`_registered`)."""


@dataclass
class WriteReport:
    """What a write did: bars added per symbol, refused (label, reason), symbols with nothing new.

    ``bool(report)`` is true when some bars were written.
    """

    written: dict[str, int] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.written)

    def update(self, other: WriteReport) -> None:
        """Add ``other``'s outcome to this report (a later write of the same symbol adds up)."""
        for symbol, count in other.written.items():
            self.written[symbol] = self.written.get(symbol, 0) + count
        self.refused.extend(other.refused)
        self.unchanged.extend(other.unchanged)


def create_schema(con: duckdb.DuckDBPyConnection, shards: int) -> None:
    """Create the store's tables in an empty database (its first generation comes on open)."""
    con.begin()
    for statement in _SCHEMA:
        con.execute(statement)
    con.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("schema_version", SCHEMA_VERSION), ("shards", str(shards)),
        ("created_at", _now().isoformat())])
    con.commit()


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


class StoreTransaction:
    """One atomic change: call :meth:`write`, :meth:`delete`, :meth:`set_universe`, then commit.

    Use it through :meth:`BarStore.transaction <technic_panel.data.store.BarStore.transaction>`,
    which commits on success and rolls back on any exception. ``rebuild=True`` writes a
    generation of the whole store from its DuckDB tables (recovery, a new layout).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, *,
                 rebuild: bool = False) -> None:
        self._con, self.path, self._rebuild = con, path, rebuild
        self._directory = read_dir(path)
        self._scratch = self._directory / f".tmp-pending-{secrets.token_hex(4)}"
        self._scratch.mkdir()
        con.begin()
        try:
            self._previous = self._meta("generation")
            self.changes = Changes(int(self._meta("shards") or 0))
            self._state: dict[str, tuple[np.datetime64, int]] = {
                symbol: (np.datetime64(date, "ns"), int(count)) for symbol, date, count in
                con.sql("SELECT symbol, date, bars FROM snapshot").fetchall()}
            self._pending = Pending(self._scratch, self.changes.shards)
            if rebuild:
                self._pend_everything()
        except BaseException:
            self.rollback()
            raise

    def __repr__(self) -> str:
        return (f"StoreTransaction({str(self.path)!r}, added={len(self.changes.added)}, "
                f"dropped={len(self.changes.dropped)})")

    def write(self, frames: Mapping[str, object], *, mode: str = "append") -> WriteReport:
        """Check and stage bars by symbol; see :meth:`BarStore.write`."""
        if mode not in MODES:
            raise ValueError(f"BarStore.write mode must be one of {', '.join(MODES)}, "
                             f"not {mode!r}")
        if not isinstance(frames, Mapping):
            raise ValueError("BarStore.write needs a mapping of symbol -> bars, not "
                             f"{type(frames).__name__}")
        report, staged, seen = WriteReport(), {}, set()
        for key, value in frames.items():
            label = str(key)
            try:
                symbol = checked_symbol(key)
                if symbol in seen:
                    raise DataError(f"BarStore: {label}: symbol {symbol} is given twice")
                seen.add(symbol)
                bars = self._new_bars(f"BarStore: {label}", symbol, value, mode)
            except DataError as exc:
                report.refused.append((label, str(exc)))
                continue
            if bars is None:
                report.unchanged.append(symbol)
            else:
                staged[symbol] = bars
        self._stage(staged, mode)
        report.written.update((symbol, len(bars)) for symbol, bars in staged.items())
        return report

    def delete(self, symbols: Iterable[str]) -> int:
        """Delete symbols' bars, snapshot and universe rows; return how many were stored."""
        if isinstance(symbols, str):
            raise ValueError(f"BarStore.delete needs a list of symbols, not the string {symbols!r}")
        try:
            stored = sorted({checked_symbol(s) for s in symbols} & set(self._state))
        except DataError as exc:
            raise ValueError(str(exc)) from exc
        self._drop(stored, "bars", "snapshot", "universe")
        self._pending.drop(stored)
        for symbol in stored:
            del self._state[symbol]
        self.changes.dropped.update(stored)
        self.changes.added.difference_update(stored)
        return len(stored)

    def set_universe(self, frame: pd.DataFrame) -> None:
        """Insert or update universe rows by symbol; new extra columns are added to the table."""
        rows = checked_universe(frame)
        known = {name for (name, *_) in self._con.sql("DESCRIBE universe").fetchall()}
        rows = rows.astype({c: "string" for c in rows.columns if rows[c].dtype == object})
        columns = [_quoted(c) for c in rows.columns]
        updates = ", ".join(f"{c} = {_ROWS}.{c}" for c in columns if c != '"symbol"')
        try:
            with _registered(self._con, rows):
                for name, kind, *_ in self._con.sql(f"DESCRIBE SELECT * FROM {_ROWS}").fetchall():
                    if name not in known:
                        self._con.execute(f"ALTER TABLE universe ADD COLUMN {_quoted(name)} "
                                          f"{kind}")
                if updates:
                    self._con.execute(f"UPDATE universe SET {updates} FROM {_ROWS} "
                                      f"WHERE universe.symbol = {_ROWS}.symbol")
                self._con.execute(f"INSERT INTO universe ({', '.join(columns)}) SELECT "
                                  f"{', '.join(columns)} FROM {_ROWS} WHERE symbol NOT IN "
                                  "(SELECT symbol FROM universe)")
        except duckdb.Error as exc:
            raise ValueError(f"BarStore.set_universe: {exc}") from exc
        self.changes.universe = True

    def commit(self) -> None:
        """Write and publish the next generation, committing the transaction; roll back on error."""
        if not (self.changes or self._rebuild):
            self.rollback()
            return
        name = new_generation_name(generation_number(self._previous) + 1)
        temporary = self._directory / f".tmp-{name}"
        try:
            temporary.mkdir()
            self._write_generation(temporary, name)
            self._con.commit()
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            self.rollback()
            raise
        shutil.rmtree(self._scratch, ignore_errors=True)
        publish(self._directory, name)
        prune(self._directory, {name, *([self._previous] if self._previous else [])})

    def rollback(self) -> None:
        """Abandon every change of this transaction."""
        shutil.rmtree(self._scratch, ignore_errors=True)
        try:
            self._con.rollback()
        except duckdb.TransactionException:
            logger.debug("%s: no transaction to roll back", self.path)

    def _write_generation(self, temporary: Path, name: str) -> None:
        logger.debug("%s: writing generation %s", self.path, name)
        previous = None if self._rebuild or not self._previous else Generation(
            self._directory / self._previous)
        touched = set(range(self.changes.shards)) if self._rebuild else \
            self.changes.touched_shards(shard_of)
        locations, snapshots = write_shards(temporary, previous, self.changes, touched,
                                            self._pending)
        self._drop(sorted(self.changes.added | self.changes.dropped), "snapshot")
        with _registered(self._con, snapshots):
            self._con.execute(f"INSERT INTO snapshot SELECT * FROM {_ROWS}")
        described = self._con.sql("SELECT s.*, u.* EXCLUDE (symbol) FROM snapshot s "
                                  "LEFT JOIN universe u USING (symbol)").df()
        stamp = _now().isoformat()
        write_symbols(temporary, locations.merge(described, on="symbol", how="left"),
                      {"generation": name, "updated_at": stamp})
        finish(temporary, self._directory / name)
        self._con.execute("DELETE FROM meta WHERE key IN ('generation', 'updated_at')")
        self._con.executemany("INSERT INTO meta VALUES (?, ?)",
                              [("generation", name), ("updated_at", stamp)])

    def _new_bars(self, label: str, symbol: str, value: object, mode: str) -> Bars | None:
        """Return the checked bars to add (None: nothing new); DataError naming a broken rule."""
        stored = self._state.get(symbol) if mode == "append" else None
        bars = checked_bars(label, value, None if stored is None else stored[0])
        if not len(bars):
            return None
        check_length(label, len(bars) + (0 if stored is None else stored[1]))
        return bars

    def _stage(self, staged: dict[str, Bars], mode: str) -> None:
        if not staged:
            return
        if mode == "replace":
            replaced = sorted(set(staged) & (set(self._state) | self.changes.added))
            self._drop(replaced, "bars")
            self._pending.drop(replaced)
            self.changes.dropped.update(replaced)
        symbols = list(staged)
        counts = [len(staged[s]) for s in symbols]
        table = pa.table({
            "symbol": pa.array(symbols, pa.string()).take(np.repeat(np.arange(len(symbols)),
                                                                    counts)),
            "date": pa.array(np.concatenate([staged[s].dates for s in symbols])),
            **{name: np.concatenate([getattr(staged[s], name) for s in symbols])
               for name in OHLCV_COLUMNS},
        })
        with _registered(self._con, table):
            self._con.execute(f"INSERT INTO bars SELECT * FROM {_ROWS}")
        self._pending.add(staged, shard_of)
        for symbol, bars in staged.items():
            stored = self._state.get(symbol)
            kept = stored[1] if stored is not None and mode == "append" else 0
            self._state[symbol] = (bars.dates[-1], kept + len(bars))
        self.changes.added.update(symbols)

    def _pend_everything(self) -> None:
        """Spill every stored bar, so the generation is written from the DuckDB tables alone."""
        reader = self._con.sql(f"SELECT {_COLUMNS} FROM bars ORDER BY symbol, date"
                               ).to_arrow_reader(1 << 20)
        for batch in reader:
            encoded = pc.run_end_encode(batch.column(0))
            ends = encoded.run_ends.to_numpy()
            columns = [batch.column(i).to_numpy() for i in range(1, batch.num_columns)]
            columns[0] = columns[0].astype("datetime64[ns]")
            staged = {symbol: Bars(*(c[start:end] for c in columns)) for symbol, start, end in
                      zip(encoded.values.to_pylist(), np.concatenate(([0], ends[:-1])), ends,
                          strict=True)}
            self._pending.add(staged, shard_of)
            self.changes.added.update(staged)
        self.changes.dropped.update(self.changes.added)

    def _drop(self, symbols: list[str], *tables: str) -> None:
        if not symbols:
            return
        with _registered(self._con, pa.table({"symbol": pa.array(symbols, pa.string())})):
            for table in tables:
                self._con.execute(f"DELETE FROM {table} WHERE symbol IN "
                                  f"(SELECT symbol FROM {_ROWS})")

    def _meta(self, key: str) -> str | None:
        rows = self._con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        return str(rows[0][0]) if rows else None


@contextlib.contextmanager
def _registered(con: duckdb.DuckDBPyConnection, rows: object) -> Iterator[None]:
    """Make ``rows`` (a DataFrame or an Arrow table) queryable as :data:`_ROWS` meanwhile."""
    con.register(_ROWS, rows)
    try:
        yield
    finally:
        con.unregister(_ROWS)


def _quoted(name: str) -> str:
    """Quote a column name for SQL (a double quote inside is doubled)."""
    return '"' + name.replace('"', '""') + '"'
