"""Ingest CSV/Parquet prices into a bar store: a folder of per-symbol files or a long table.

The files are read by :class:`~technic_panel.data.files.FileSource`, so the same column
rules hold (names matched case-insensitively, ``date``/``datetime``/``timestamp``, the
row rules, messages naming file, row and rule); each symbol's bars are then checked again
by the store (enough bars) and written in one transaction, in batches, so memory stays
bounded and nothing of the call is visible until all of it is committed.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from os import PathLike
from pathlib import Path

import pandas as pd

from technic_panel.data.base import Bars, DataError
from technic_panel.data.files import FileSource
from technic_panel.data.pricefile import FORMATS, read_table
from technic_panel.data.store import BarStore
from technic_panel.data.store_tx import StoreTransaction, WriteReport

logger = logging.getLogger(__name__)

BATCH = 500
"""Symbols read and staged together; their parsed bars are dropped after each batch."""


def ingest(path: str | PathLike[str], store: BarStore | str | PathLike[str], *,
           universe_path: str | PathLike[str] | None = None,
           progress: Callable[[int], object] | None = None,
           mode: str = "append") -> WriteReport:
    """Write the prices at ``path`` into ``store`` (a BarStore, or a file to open or create).

    ``universe_path`` names a CSV/Parquet file with a ``symbol`` column and any of
    name, sector, industry, market_cap and extra columns, upserted into the store's
    universe. ``progress(count)`` is called as files are read (``count`` read since the
    last call). ``mode`` is as for :meth:`~technic_panel.data.store.BarStore.write`:
    ``"append"`` adds only bars newer than a symbol's last stored one.

    Returns the report: a file that cannot be read, or whose bars break a rule, is
    refused with FileSource's reason (file, row and rule); the rest is written.
    Raises ``ValueError`` if ``path`` or ``universe_path`` is not readable at all.
    """
    source = FileSource(path, universe_path=universe_path)
    universe = _universe(Path(universe_path)) if universe_path is not None else None
    if not isinstance(store, BarStore):
        with BarStore(store, create=True) as opened:
            return _ingest(source, opened, universe, progress, mode)
    return _ingest(source, store, universe, progress, mode)


def _ingest(source: FileSource, store: BarStore, universe: pd.DataFrame | None,
            progress: Callable[[int], object] | None, mode: str) -> WriteReport:
    symbols, per_symbol = source.symbols(), _per_symbol(source)
    report = WriteReport()
    with store.transaction() as tx:
        for start in range(0, len(symbols), BATCH):
            batch = _fresh(source, per_symbol)
            report.update(_write(tx, batch, symbols[start:start + BATCH], progress, mode))
        if universe is not None:
            tx.set_universe(universe)
    logger.info("ingested %d of %d symbols from %s (%d refused)", len(report.written),
                len(symbols), source.path, len(report.refused))
    return report


def _write(tx: StoreTransaction, source: FileSource, symbols: list[str],
           progress: Callable[[int], object] | None, mode: str) -> WriteReport:
    """Read ``symbols`` from ``source`` and stage them; unreadable files are refused."""
    frames: dict[str, Bars] = {}
    refused = []
    for symbol in symbols:
        try:
            frames[symbol] = source.bars(symbol)
        except DataError as exc:
            refused.append((symbol, str(exc)))
        if progress is not None:
            progress(1)
    report = tx.write(frames, mode=mode)
    report.refused[:0] = refused
    return report


def _fresh(source: FileSource, per_symbol: bool) -> FileSource:
    """Return ``source`` with an empty bar cache (a per-symbol folder), or itself (one table).

    Copying keeps the folder's listing and drops the parsed bars, which FileSource
    caches for scans, so an ingest of any size holds one batch of bars at a time.
    """
    return copy.copy(source) if per_symbol else source


def _per_symbol(source: FileSource) -> bool:
    """Whether ``source`` is a folder of several files (else one long table, read once)."""
    return source.path.is_dir() and sum(
        1 for entry in source.path.iterdir() if entry.suffix.lower() in FORMATS) > 1


def _universe(path: Path) -> pd.DataFrame:
    """Read the universe file with every column it has (FileSource keeps only four)."""
    try:
        return read_table(path, path.name, None)
    except DataError as exc:
        raise ValueError(f"ingest universe_path is unusable: {exc}") from exc
