"""The embedded synthetic universe: up to 100,000 plausible symbols, deterministic per seed.

The price model lives in :mod:`~technic_panel.data.synthetic_model`: each symbol comes
from its own seeded stream and only the market and sector factors are shared, so the
universe of N symbols is exactly the first N of any larger one with the same seed
(same tickers, metadata and bars), and a notebook at 1,000 symbols agrees with a
dashboard at 5,000.

Nothing is generated up front. Symbols are generated in fixed chunks of
:data:`CHUNK` on demand (:meth:`SyntheticSource.plan_parts` yields them a few chunks
at a time, the first one alone, so a scan of 100,000 symbols starts after one chunk)
and kept, as float32, in one process-wide :class:`ChunkCache` that every source of
the same seed shares. The cache is bounded; a symbol whose chunk was evicted, or a
worker process that never generated it, generates that one symbol alone (the model
computes each row by itself, so the bars are the same).
"""

from __future__ import annotations

import functools
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pandas as pd

from technic_panel.data.base import (
    PLAN_COLUMNS,
    SNAPSHOT_COLUMNS,
    UNIVERSE_COLUMNS,
    Bars,
    DataError,
)
from technic_panel.data.synthetic_model import (
    SECTORS,
    factors,
    generate_bars,
    metadata,
    ticker_position,
    tickers,
)
from technic_panel.vocabulary import require

__all__ = ["CACHE", "CHUNK", "SECTORS", "ChunkCache", "SyntheticSource"]

CHUNK = 256
"""Symbols generated together; chunk ``c`` always holds symbols ``c * CHUNK`` onwards."""
_LARGEST_PART = 64
"""Most chunks in one part of :meth:`SyntheticSource.plan_parts` (parts double up to it)."""


class SyntheticSource:
    """A deterministic synthetic universe of ``symbols`` stocks with ``bars`` daily bars each.

    ``latency_ms`` (with +-50% jitter) emulates a remote provider on every
    :meth:`bars` call; ``error_rate`` makes that share of symbols fail with a
    :class:`DataError` (the same symbols for the same seed).
    """

    name = "synthetic"

    def __init__(self, symbols: int = 5000, *, seed: int = 42, bars: int = 504,
                 latency_ms: float = 0.0, error_rate: float = 0.0) -> None:
        require("SyntheticSource", "symbols", symbols, "an integer in [1, 100000]",
                _is_int(symbols) and 1 <= symbols <= 100_000)
        require("SyntheticSource", "bars", bars, "an integer in [30, 5000]",
                _is_int(bars) and 30 <= bars <= 5000)
        require("SyntheticSource", "seed", seed, "an integer in [0, 2**32)",
                _is_int(seed) and 0 <= seed < 2**32)
        require("SyntheticSource", "latency_ms", latency_ms, "a number in [0, 60000]",
                _is_real(latency_ms) and 0 <= latency_ms <= 60_000)
        require("SyntheticSource", "error_rate", error_rate, "a number in [0, 1]",
                _is_real(error_rate) and 0 <= error_rate <= 1)
        self.size, self.seed, self.n_bars = int(symbols), int(seed), int(bars)
        self.latency_ms, self.error_rate = float(latency_ms), float(error_rate)

    @property
    def io_bound(self) -> bool:
        """Whether fetching waits on (emulated) latency, so more threads help."""
        return self.latency_ms > 0

    def __repr__(self) -> str:
        return (f"SyntheticSource(symbols={self.size}, seed={self.seed}, bars={self.n_bars}, "
                f"latency_ms={self.latency_ms}, error_rate={self.error_rate})")

    def symbols(self) -> list[str]:
        """Return every ticker, in universe order, without generating any bar."""
        return list(_tickers(self.seed, self.size))

    def plan_parts(self) -> Iterator[pd.DataFrame]:
        """Yield the universe and snapshot a few chunks at a time: one chunk, then doubling."""
        count, first, chunks = 1, 0, self._chunks()
        while first < chunks:
            yield self._rows(first, min(first + count, chunks))
            first += count
            count = min(2 * count, _LARGEST_PART)

    def universe(self) -> pd.DataFrame:
        """Return the symbols with name, sector, industry, market cap and dollar volume."""
        return self._rows(0, self._chunks()).loc[:, list(UNIVERSE_COLUMNS)]

    def snapshot(self) -> pd.DataFrame:
        """Return every symbol's last bar and recent return / relative volume."""
        return self._rows(0, self._chunks()).loc[:, list(SNAPSHOT_COLUMNS)]

    def bars(self, symbol: str) -> Bars:
        """Return ``symbol``'s bars after the emulated latency; fail as ``error_rate`` says."""
        index = None
        if isinstance(symbol, str):
            index = CACHE.position(self.seed, symbol)
            if index is None:
                index = ticker_position(self.seed, self.size, symbol)
        if index is None or index >= self.size:
            raise DataError(f"SyntheticSource has no symbol {symbol!r}")
        if self.latency_ms:
            time.sleep(self.latency_ms * (0.5 + _unit_hash(self.seed + 1, symbol)) / 1000.0)
        if _unit_hash(self.seed, symbol) < self.error_rate:
            raise DataError(f"synthetic provider failed for {symbol} "
                            f"(injected by error_rate={self.error_rate})")
        chunk = CACHE.get((self.seed, self.n_bars, index // CHUNK))
        if chunk is not None:
            arrays = chunk.ohlcv[:, index % CHUNK]
        else:
            arrays = generate_bars(self.seed, self.n_bars, index, index + 1).ohlcv[:, 0]
        return Bars(factors(self.seed, self.n_bars).dates,
                    *(np.asarray(a, dtype=np.float64) for a in arrays))

    def history(self, symbol: str) -> pd.DataFrame:
        """Return ``symbol``'s daily OHLCV bars as a DataFrame indexed by date."""
        return self.bars(symbol).to_frame()

    def _chunks(self) -> int:
        return -(-self.size // CHUNK)

    def _rows(self, first: int, stop: int) -> pd.DataFrame:
        """Return the plan rows of chunks ``first..stop`` (only this universe's symbols)."""
        frames = [CACHE.chunk(self.seed, self.n_bars, c).rows for c in range(first, stop)]
        rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].copy()
        return rows.iloc[:max(0, self.size - first * CHUNK)].reset_index(drop=True)


class _Chunk:
    """One generated chunk: its plan rows (universe and snapshot) and float32 bars."""

    def __init__(self, seed: int, n_bars: int, index: int) -> None:
        self.start = start = index * CHUNK
        block = generate_bars(seed, n_bars, start, start + CHUNK)
        self.ohlcv = block.ohlcv
        self.ohlcv.flags.writeable = False
        columns = metadata(seed, start, block)
        close = self.ohlcv[3][:, -22:].astype(np.float64)  # all the snapshot looks at
        volume = self.ohlcv[4][:, -22:].astype(np.float64)
        columns["avg_dollar_volume"] = (close[:, -20:] * volume[:, -20:]).mean(axis=1)
        columns.update(_snapshot_columns(factors(seed, n_bars).dates[-1], close, volume))
        self.rows = pd.DataFrame(columns, columns=list(PLAN_COLUMNS))
        self.symbols: list[str] = self.rows["symbol"].tolist()
        self.nbytes = self.ohlcv.nbytes + int(self.rows.memory_usage(deep=True).sum())


class ChunkCache:
    """Generated chunks of every synthetic universe in this process, least recent out first.

    ``budget`` bounds the bytes held (bars and rows); the default holds a whole
    100,000-symbol universe of 504 bars. Thread-safe; chunks are generated outside
    the lock, so two threads may both generate one (the same) chunk.
    """

    def __init__(self, budget: int = 1 << 30) -> None:
        self.budget = budget
        self.nbytes = 0
        self._chunks: OrderedDict[tuple[int, int, int], _Chunk] = OrderedDict()
        self._positions: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ChunkCache(chunks={len(self._chunks)}, nbytes={self.nbytes}, budget={self.budget})"

    def __len__(self) -> int:
        return len(self._chunks)

    def get(self, key: tuple[int, int, int]) -> _Chunk | None:
        """Return the chunk ``(seed, bars, index)`` if it is held, marking it recently used."""
        with self._lock:
            chunk = self._chunks.get(key)
            if chunk is not None:
                self._chunks.move_to_end(key)
            return chunk

    def position(self, seed: int, symbol: str) -> int | None:
        """Return the index of ``symbol`` in the universes of ``seed``, if a held chunk has it."""
        return self._positions.get((seed, symbol))

    def chunk(self, seed: int, n_bars: int, index: int) -> _Chunk:
        """Return chunk ``index`` of the ``(seed, bars)`` universe, generating it if need be."""
        key = (seed, n_bars, index)
        chunk = self.get(key)
        if chunk is None:
            chunk = _Chunk(seed, n_bars, index)
            with self._lock:
                if key not in self._chunks:
                    self._chunks[key] = chunk
                    self.nbytes += chunk.nbytes
                    self._positions.update(
                        ((seed, s), chunk.start + i) for i, s in enumerate(chunk.symbols))
                self._evict_locked()
        return chunk

    def clear(self) -> None:
        """Drop every chunk (they are generated again when asked for)."""
        with self._lock:
            self._chunks.clear()
            self._positions.clear()
            self.nbytes = 0

    def _evict_locked(self) -> None:
        while self.nbytes > self.budget and len(self._chunks) > 1:
            (seed, _, _), chunk = self._chunks.popitem(last=False)
            self.nbytes -= chunk.nbytes
            for symbol in chunk.symbols:
                self._positions.pop((seed, symbol), None)


CACHE = ChunkCache()
"""The process-wide cache every :class:`SyntheticSource` reads through."""


@functools.lru_cache(maxsize=4)
def _tickers(seed: int, size: int) -> tuple[str, ...]:
    return tuple(tickers(seed, 0, size))


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool)


def _unit_hash(seed: int, symbol: str) -> float:
    """Return a uniform draw in [0, 1) fixed by seed and symbol, independent of scan order."""
    return zlib.crc32(f"{seed}:{symbol}".encode()) / 2**32


def _snapshot_columns(date: np.datetime64, close: np.ndarray,
                      volume: np.ndarray) -> dict[str, object]:
    """Return the snapshot columns (but symbol) of bars ending at ``date``, vectorised."""
    last = close[:, -1]
    return {
        "date": pd.Timestamp(date),
        "close": last,
        "change_pct": 100.0 * (last / close[:, -2] - 1.0),
        "return_5d": last / close[:, -6] - 1.0,
        "return_21d": last / close[:, -22] - 1.0,
        "rel_volume": volume[:, -1] / volume[:, -21:-1].mean(axis=1),
        "dollar_volume": last * volume[:, -1],
    }
