"""Writing a bar store's next read generation from the previous one and a write's changes.

The writer calls :func:`write_shards` inside its DuckDB transaction: each shard the
write touches is merged from the previous generation's mapped shard (minus the symbols
replaced or deleted) and the rows the transaction adds, one symbol's bars contiguous and
oldest first; the other shards are hard-linked. The snapshot of every changed symbol is
computed from its merged bars by :func:`~technic_panel.data.base.snapshot_from_bars`, the
rule every source uses. :func:`write_symbols` then writes the symbols table in priority
order, the order a scan plans in, so its first part holds the likely best symbols.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from technic_panel.data.base import SNAPSHOT_COLUMNS, Bars, snapshot_from_bars
from technic_panel.data.files import AVG_WINDOW
from technic_panel.data.priority import priority_scores
from technic_panel.data.store_layout import (
    BAR_SCHEMA,
    LAYOUT_VERSION,
    LOCATION_COLUMNS,
    Generation,
    bar_table,
    link_or_copy,
    lookup_table,
    read_table,
    shard_name,
    sync_dir,
    write_table,
)

STATS_COLUMNS = ("avg_dollar_volume", "first_date", "bars")
"""What the store knows of each symbol besides its snapshot: kept in its snapshot table."""


@dataclass
class Changes:
    """What one transaction changes: the symbols whose bars it adds to or drops."""

    shards: int
    added: set[str] = field(default_factory=set)
    """Symbols the transaction adds rows to (appended, replaced or new)."""
    dropped: set[str] = field(default_factory=set)
    """Symbols whose stored rows it drops (replaced or deleted)."""
    universe: bool = False
    """Whether metadata changed, so the symbols table is rewritten even without new bars."""

    def __bool__(self) -> bool:
        return bool(self.added or self.dropped or self.universe)

    def touched_shards(self, shard_of: Callable[[str, int], int]) -> set[int]:
        """Return the shards holding a changed symbol."""
        return {shard_of(symbol, self.shards) for symbol in self.added | self.dropped}


Piece = tuple[list[np.ndarray], int, int]
"""A run of one symbol's bars: the six columns holding it, its first row and its length."""


class Pending:
    """The rows a transaction adds, spilled to Arrow files in ``folder``, found by shard.

    Each :meth:`add` writes one file (a symbol's bars contiguous, oldest first) and
    remembers each symbol's run in it; :meth:`drop` forgets what was added for symbols
    so far (a replace or a delete later in the same transaction).
    """

    def __init__(self, folder: Path, shards: int) -> None:
        self.folder, self.shards = folder, shards
        self._files: list[Path] = []
        self._runs: dict[int, list[tuple[str, int, int, int]]] = {}
        self._since: dict[str, int] = {}

    def add(self, staged: dict[str, Bars], shard_of: Callable[[str, int], int]) -> None:
        """Spill ``staged`` bars (by symbol) to a new file."""
        if not staged:
            return
        number, start = len(self._files), 0
        path = self.folder / f"pending-{number:06d}.arrow"
        for symbol, bars in staged.items():
            self._runs.setdefault(shard_of(symbol, self.shards), []).append(
                (symbol, number, start, len(bars)))
            start += len(bars)
        columns = [np.concatenate([getattr(bars, name) for bars in staged.values()])
                   for name in Bars._fields]
        write_table(path, bar_table(columns), sync=False)
        self._files.append(path)

    def drop(self, symbols: list[str]) -> None:
        """Forget the rows added so far for ``symbols``."""
        self._since.update((symbol, len(self._files)) for symbol in symbols)

    def runs(self, shard: int) -> dict[str, list[Piece]]:
        """Return the added runs of ``shard``'s symbols, oldest first, mapped from the files."""
        mapped: dict[int, list[np.ndarray]] = {}
        runs: dict[str, list[Piece]] = {}
        for symbol, number, start, length in self._runs.get(shard, []):
            if number < self._since.get(symbol, 0):
                continue
            if number not in mapped:
                table = read_table(self._files[number])
                mapped[number] = [table.column(name).chunk(0).to_numpy()
                                  for name in BAR_SCHEMA.names]
            runs.setdefault(symbol, []).append((mapped[number], start, length))
        return runs


def write_shards(target: Path, previous: Generation | None, changes: Changes,
                 touched: set[int], pending: Pending) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write every shard into ``target``; return the locations and the changed snapshots.

    The locations frame has :data:`~technic_panel.data.store_layout.LOCATION_COLUMNS`
    for every symbol; the snapshot frame has one row (snapshot plus :data:`STATS_COLUMNS`)
    per added symbol.
    """
    before = _locations(previous)
    rewritten = before["shard"].isin(touched).to_numpy()
    locations = [before[~rewritten]]
    for shard in sorted(set(locations[0]["shard"])):
        assert previous is not None
        link_or_copy(previous.directory / shard_name(shard), target / shard_name(shard))
    snapshots: list[dict[str, object]] = []
    by_shard = dict(tuple(before[rewritten].groupby("shard")))
    for shard in sorted(touched):
        mine = by_shard.get(shard, before.iloc[:0])
        kept = mine[~mine["symbol"].isin(changes.dropped)]
        old = previous.shard(shard) if previous is not None and len(kept) else None
        frame, columns = _merge(shard, kept, old, pending.runs(shard))
        if len(frame):
            write_table(target / shard_name(shard), bar_table(columns))
        locations.append(frame)
        snapshots.extend(_snapshot(symbol, Bars(*(c[s:s + n] for c in columns)))
                         for symbol, s, n in zip(frame["symbol"], frame["start"],
                                                 frame["length"], strict=True)
                         if symbol in changes.added)
    return (pd.concat(locations, ignore_index=True),
            pd.DataFrame(snapshots, columns=[*SNAPSHOT_COLUMNS, *STATS_COLUMNS]))


def _locations(generation: Generation | None) -> pd.DataFrame:
    if generation is None:
        return pd.DataFrame({"symbol": pd.Series(dtype=object), "shard": pd.Series(dtype="int16"),
                             "start": pd.Series(dtype="int64"), "length": pd.Series(dtype="int64")})
    return generation.table.select(list(LOCATION_COLUMNS)).to_pandas()


def _merge(shard: int, kept: pd.DataFrame, old: list[np.ndarray] | None,
           added: dict[str, list[Piece]]) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Merge a shard's kept runs and its added ones: one run per symbol, symbols sorted."""
    runs: dict[str, list[Piece]] = {}
    if old is not None:
        for symbol, start, length in zip(kept["symbol"], kept["start"], kept["length"],
                                         strict=True):
            runs[symbol] = [(old, int(start), int(length))]
    for symbol, pieces in added.items():
        runs.setdefault(symbol, []).extend(pieces)
    symbols = sorted(runs)
    pieces = [piece for symbol in symbols for piece in runs[symbol]]
    lengths = np.array([sum(n for _, _, n in runs[symbol]) for symbol in symbols], dtype=np.int64)
    columns = [np.concatenate([source[i][s:s + n] for source, s, n in pieces])
               if pieces else np.array([], dtype=BAR_SCHEMA.field(i).type.to_pandas_dtype())
               for i in range(len(BAR_SCHEMA))]
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(lengths) else lengths
    frame = pd.DataFrame({"symbol": pd.Series(symbols, dtype=object),
                          "shard": np.full(len(symbols), shard, dtype=np.int16),
                          "start": starts.astype(np.int64), "length": lengths})
    return frame, columns


def _snapshot(symbol: str, bars: Bars) -> dict[str, object]:
    row = snapshot_from_bars(symbol, bars)
    row["avg_dollar_volume"] = float(np.mean(bars.close[-AVG_WINDOW:] * bars.volume[-AVG_WINDOW:]))
    row["first_date"] = pd.Timestamp(bars.dates[0])
    row["bars"] = len(bars)
    return row


_TYPES = {
    "symbol": pa.string(), "shard": pa.int16(), "start": pa.int64(), "length": pa.int64(),
    "name": pa.string(), "sector": pa.string(), "industry": pa.string(),
    "market_cap": pa.float64(), "avg_dollar_volume": pa.float64(), "date": pa.timestamp("ns"),
    **{name: pa.float64() for name in SNAPSHOT_COLUMNS[2:]},
    "first_date": pa.timestamp("ns"), "bars": pa.int64(), "priority_score": pa.float64(),
}
"""The columns symbols.arrow leads with, in order, and their types (extra columns follow)."""


def write_symbols(target: Path, frame: pd.DataFrame, metadata: dict[str, str]) -> None:
    """Write symbols.arrow (``frame`` in priority order) and lookup.arrow into ``target``.

    ``frame`` holds the locations, :data:`~technic_panel.data.base.PLAN_COLUMNS`,
    :data:`STATS_COLUMNS` and any extra universe columns, one row per symbol.
    """
    frame = frame.copy()
    for column in ("date", "first_date"):
        frame[column] = frame[column].astype("datetime64[ns]")
    frame["name"] = frame["name"].fillna(frame["symbol"])
    frame[["sector", "industry"]] = frame[["sector", "industry"]].fillna("Unknown")
    frame["priority_score"] = (priority_scores(frame[list(SNAPSHOT_COLUMNS)]).to_numpy()
                               if len(frame) else np.array([], dtype=float))
    frame = frame.sort_values(["priority_score", "symbol"], ascending=[False, True],
                              na_position="last", kind="stable", ignore_index=True)
    leading = list(_TYPES)
    frame = frame[leading + [c for c in frame.columns if c not in _TYPES]]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema = pa.schema([pa.field(f.name, _TYPES.get(f.name, f.type)) for f in table.schema],
                       metadata={**metadata, "layout": LAYOUT_VERSION})
    table = table.cast(schema)
    write_table(target / "symbols.arrow", table)
    write_table(target / "lookup.arrow", lookup_table(frame["symbol"].tolist()))


def finish(target: Path, final: Path) -> None:
    """Flush a fully written generation folder and give it its final name."""
    sync_dir(target)
    os.replace(target, final)
    sync_dir(final.parent)
