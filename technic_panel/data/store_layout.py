"""The read layout of a bar store: immutable generations of memory-mapped Arrow files.

A :class:`~technic_panel.data.store.BarStore` keeps its data in one DuckDB file, ``FILE``,
which only the writer opens. After every committed write it publishes a *generation*
next to it, which readers memory-map and never change::

    FILE.read/CURRENT                  the name of the current generation (replaced atomically)
    FILE.read/gen-000042-1f2e3d4c/
        shard-00.arrow ... shard-63.arrow   bars, one record batch each; a symbol's bars are
                                            one contiguous run, oldest first (symbols are
                                            spread over shards by CRC-32 of their name)
        symbols.arrow                  one row per symbol in priority order: where its bars
                                       lie (shard, start, length), its universe and snapshot
        lookup.arrow                   the symbols' UTF-8 names, sorted, zero-padded to one
                                       width, with their row in symbols.arrow: a binary search

A write rewrites only the shards it touches (the others are hard-linked from the previous
generation), then switches ``CURRENT``; readers that opened an older generation keep
reading it (Linux keeps a memory map valid after its file is unlinked), and a half-written
generation is never named by ``CURRENT``. Bars come out as read-only numpy arrays: zero-copy
views of the mapping for a generation within :data:`MAPPED_BUDGET`, read copies past it.
"""

from __future__ import annotations

import mmap
import os
import secrets
import shutil
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from technic_panel.data.base import OHLCV_COLUMNS, Bars

LAYOUT_VERSION = "1"
"""Version of the files of a generation; a reader refuses any other."""
SHARDS = 64
"""Shards of a new store: few enough files, small enough that a write touching a few
symbols rewrites a few megabytes."""
CURRENT = "CURRENT"
MAPPED_BUDGET = 256 * 2**20
"""Largest generation (bytes of shard files) whose bars are views of its memory map; a larger
one's are read with ``os.pread`` into arrays of their own. A fault maps a whole page-cache
folio (up to megabytes on recent kernels), so a mapping read at random grows to the whole
file, and giving pages back (``MADV_DONTNEED``) made the symbols read next fault them in
again: 72 us a symbol on the 100,000-symbol store (2.3 GB) against 29 us for six reads,
while a mapped 5,000-symbol store (116 MB) that stays resident takes 15 us."""
BAR_SCHEMA = pa.schema([("date", pa.timestamp("ns")),
                        *[(name, pa.float64()) for name in OHLCV_COLUMNS]])
"""Columns of a shard file."""
LOCATION_COLUMNS = ("symbol", "shard", "start", "length")
"""Columns of symbols.arrow saying where a symbol's bars lie."""


class StoreError(ValueError):
    """A bar store cannot be opened or written: missing, locked by a writer, or not a store."""


def read_dir(path: Path) -> Path:
    """Return the folder of ``path``'s read generations (``FILE.read``)."""
    return path.with_name(path.name + ".read")


def shard_of(symbol: str, shards: int) -> int:
    """Return the shard holding ``symbol``'s bars: the same in every process and version."""
    return zlib.crc32(symbol.encode()) % shards


def shard_name(shard: int) -> str:
    """Return the file name of shard ``shard`` inside a generation."""
    return f"shard-{shard:02d}.arrow"


def shard_number(path: Path) -> int:
    """Return the number of the shard file at ``path`` (``shard-07.arrow``: 7)."""
    return int(path.stem.split("-")[1])


def new_generation_name(number: int) -> str:
    """Return a fresh generation name: its number and a random tag, never reused."""
    return f"gen-{number:06d}-{secrets.token_hex(4)}"


def generation_number(name: str | None) -> int:
    """Return the number in a generation's name (0 for none)."""
    return int(name.split("-")[1]) if name else 0


def current_name(directory: Path) -> str | None:
    """Return the name of the generation ``CURRENT`` points to, or None if there is none."""
    try:
        name = (directory / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def publish(directory: Path, name: str) -> None:
    """Point ``CURRENT`` at generation ``name``: write a temporary file, then rename it over."""
    temporary = directory / f".{CURRENT}.{secrets.token_hex(4)}"
    with open(temporary, "w") as handle:
        handle.write(name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, directory / CURRENT)
    sync_dir(directory)


def sync_dir(directory: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def prune(directory: Path, keep: set[str]) -> None:
    """Delete every generation and leftover temporary folder not named in ``keep``.

    Readers that mapped a deleted generation keep reading it; one that reads ``CURRENT``
    just before the switch finds the generation it names in ``keep``.
    """
    for entry in directory.iterdir():
        if entry.is_dir() and entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(f".{CURRENT}."):
            entry.unlink(missing_ok=True)


def read_table(path: Path) -> pa.Table:
    """Read an Arrow IPC file memory-mapped: the table's buffers are the file's pages."""
    with pa.memory_map(str(path)) as source:
        return ipc.open_file(source).read_all()


def write_table(path: Path, table: pa.Table, *, sync: bool = True) -> None:
    """Write ``table`` as an Arrow IPC file in one record batch; ``sync``: flush it to disk."""
    batch = table.combine_chunks().to_batches()
    with open(path, "wb") as sink:
        with ipc.new_file(sink, table.schema) as writer:
            writer.write_batch(batch[0] if batch else pa.RecordBatch.from_pylist(
                [], schema=table.schema))
        if sync:
            sink.flush()
            os.fsync(sink.fileno())


def bar_table(columns: list[np.ndarray]) -> pa.Table:
    """Return a shard table from its six numpy columns (dates as datetime64[ns])."""
    return pa.Table.from_arrays([pa.array(column) for column in columns], schema=BAR_SCHEMA)


class Generation:
    """One published generation, memory-mapped: its symbols table and its bars.

    Immutable, so thread-safe. Every file is mapped (and, past :data:`MAPPED_BUDGET`, opened)
    at once, so the generation stays readable after a writer deletes it. ``table`` lists the
    symbols in priority order (best first) with their universe and snapshot columns.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = directory.name
        self.table = read_table(directory / "symbols.arrow")
        metadata = {k.decode(): v.decode() for k, v in (self.table.schema.metadata or {}).items()}
        if metadata.get("layout") != LAYOUT_VERSION:
            raise StoreError(f"{directory} has layout version {metadata.get('layout')!r}; "
                             f"this technic-panel reads {LAYOUT_VERSION!r} (write to the "
                             "store once with this version to rebuild it)")
        self.metadata = metadata
        lookup = read_table(directory / "lookup.arrow")
        self._keys = _fixed_width(lookup.column("key"))
        self._rows = lookup.column("row").to_numpy()
        self._where = [self.table.column(c).to_numpy() for c in LOCATION_COLUMNS[1:]]
        self._maps: list[mmap.mmap] = []
        self._offsets: dict[int, list[int]] = {}
        self._files: dict[int, BinaryIO] = {}
        self._shards = {shard_number(path): self._map(path)
                        for path in directory.glob("shard-*.arrow")}
        self.mapped_reads = sum(len(mapped) for mapped in self._maps) <= MAPPED_BUDGET
        """Whether bars are views of the mapped files (else each read is a copy)."""
        if self.mapped_reads:
            for file in self._files.values():
                file.close()
            self._files.clear()
        if not set(np.unique(self._where[0]).tolist()) <= set(self._shards):
            raise FileNotFoundError(f"{directory} lacks shard files: a writer deleted it")
        names = self.table.column("symbol").take(self._rows)
        self.symbols: list[str] = (names.chunk(0).to_numpy(zero_copy_only=False).tolist()
                                   if names.num_chunks else [])
        """Every symbol, sorted (listed once: a scan asks for it before its first result)."""

    def __repr__(self) -> str:
        return f"Generation({str(self.directory)!r}, symbols={len(self.table)})"

    def row(self, symbol: str) -> int | None:
        """Return ``symbol``'s row in :attr:`table`, or None if the store lacks it."""
        key = symbol.encode()
        width = self._keys.dtype.itemsize
        if not key or len(key) > width or b"\0" in key:
            return None
        position = int(np.searchsorted(self._keys, key))
        if position == len(self._keys) or self._keys[position] != key:
            return None
        return int(self._rows[position])

    def sorted_rows(self) -> np.ndarray:
        """Return the rows of :attr:`table` in symbol order."""
        return self._rows

    def bars(self, symbol: str) -> Bars | None:
        """Return ``symbol``'s bars as read-only arrays, or None if the store lacks it.

        Views into its shard's mapping when :attr:`mapped_reads`, else read copies.
        """
        row = self.row(symbol)
        if row is None:
            return None
        return self.bars_at(row)

    def bars_at(self, row: int) -> Bars:
        """Return the bars of the symbol at ``row`` of :attr:`table`."""
        shard, start, length = (int(column[row]) for column in self._where)
        columns = self.shard(shard)
        if self.mapped_reads:
            return Bars(*(column[start:start + length] for column in columns))
        fd = self._files[shard].fileno()
        read = []
        for offset, column in zip(self._offsets[shard], columns, strict=True):
            size = column.itemsize * length
            data = os.pread(fd, size, offset + column.itemsize * start)
            if len(data) != size:
                raise StoreError(f"{self.directory / shard_name(shard)} ends before the bars "
                                 "its symbols table names: the store is damaged (rebuild it)")
            read.append(np.frombuffer(data, dtype=column.dtype))
        return Bars(*read)

    def shard(self, shard: int) -> list[np.ndarray]:
        """Return shard ``shard``'s six columns as numpy views of the mapped file."""
        return self._shards[shard]

    def _map(self, path: Path) -> list[np.ndarray]:
        """Map a shard file, kept open too (for reads past the budget); return its columns."""
        shard = shard_number(path)
        self._files[shard] = handle = open(path, "rb", buffering=0)  # noqa: SIM115
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        self._maps.append(mapped)
        buffer = pa.py_buffer(mapped)
        table = ipc.open_file(pa.BufferReader(buffer)).read_all()
        columns = [_numpy(table.column(name)) for name in BAR_SCHEMA.names]
        self._offsets[shard] = [
            column.ctypes.data - buffer.address for column in columns]
        return columns


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    """Return a one-chunk column as a zero-copy numpy view (an empty array for no chunk)."""
    if column.num_chunks == 0:
        return np.array([], dtype=column.type.to_pandas_dtype())
    return column.chunk(0).to_numpy(zero_copy_only=True)


def _fixed_width(column: pa.ChunkedArray) -> np.ndarray:
    """Return a fixed-size binary column as a numpy bytes array viewing the same memory."""
    width = column.type.byte_width
    if column.num_chunks == 0 or len(column) == 0:
        return np.array([], dtype=f"S{width}")
    chunk = column.chunk(0)
    return np.frombuffer(chunk.buffers()[1], dtype=f"S{width}", count=len(chunk),
                         offset=chunk.offset * width)


def lookup_table(symbols: list[str]) -> pa.Table:
    """Return lookup.arrow's table for the symbols of symbols.arrow, in their row order."""
    encoded = [symbol.encode() for symbol in symbols]
    width = max((len(key) for key in encoded), default=1)
    keys = np.array(encoded, dtype=f"S{width}")
    order = np.argsort(keys, kind="stable")
    column = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(keys), [None, pa.py_buffer(keys[order].tobytes())])
    return pa.table({"key": column, "row": pa.array(order.astype(np.int64))})


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (an unchanged shard costs nothing), else copy it."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
