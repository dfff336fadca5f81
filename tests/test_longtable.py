"""LongTable: a Parquet long table grouped by symbol is read in pieces, and planned and
scanned while later pieces are still being read."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from technic_panel.data import DataError, FileSource, longtable
from technic_panel.engine.scanner import Scanner

BARS = 260


def frame_of(symbol: str, seed: int, n: int = BARS) -> pd.DataFrame:
    """Plausible daily bars of ``symbol`` with a ``symbol`` column, oldest first."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({
        "symbol": symbol, "date": pd.bdate_range("2023-01-02", periods=n),
        "open": close * 0.99, "high": close * 1.02, "low": close * 0.97, "close": close,
        "volume": rng.integers(1_000, 10_000, n).astype(float),
    })


@pytest.fixture
def grouped(tmp_path: Path, monkeypatch) -> tuple[Path, dict[str, pd.DataFrame]]:
    """Eight symbols grouped by symbol (not in symbol order), in row groups of 100 rows."""
    monkeypatch.setattr(longtable, "FIRST_ROWS", 300)
    frames = {s: frame_of(s, i) for i, s in enumerate(["HHH", "BBB", "GGG", "AAA", "FFF",
                                                       "CCC", "EEE", "DDD"])}
    path = tmp_path / "all.parquet"
    pd.concat(frames.values(), ignore_index=True).to_parquet(path, index=False,
                                                           row_group_size=100)
    return path, frames


def test_the_first_plan_part_comes_before_the_last_row_group_is_read(grouped, monkeypatch):
    path, frames = grouped
    read: list[list[int]] = []
    real = pq.ParquetFile.read_row_groups

    def recording(self, groups, *args, **kwargs):
        read.append(list(groups))
        return real(self, groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", recording)
    source = FileSource(path)
    assert source.symbols() == sorted(frames) and not read  # the symbol column alone
    parts = source.plan_parts()
    first = next(parts)
    groups = pq.ParquetFile(path).metadata.num_row_groups
    assert read == [[0, 1, 2]] and list(first["symbol"]) == ["HHH"]
    rest = list(parts)
    assert read == [[0, 1, 2], list(range(3, 9)), list(range(9, groups))]  # doubling reads
    plan = pd.concat([first, *rest], ignore_index=True)
    assert list(plan["symbol"]) == list(frames)  # planned in the table's order
    assert list(source.snapshot()["symbol"]) == sorted(frames)  # kept as symbols() lists
    assert len(read) == 3  # nothing read again for the snapshot


def test_a_symbol_across_reads_is_whole_and_names_its_file_row(grouped, tmp_path: Path):
    path, frames = grouped
    long = pd.read_parquet(path)
    long.loc[BARS + 50, "close"] = 3 * long.loc[BARS + 50, "high"]  # BBB, in the 2nd read
    long.to_parquet(path, index=False, row_group_size=100)
    source = FileSource(path)
    with pytest.raises(DataError) as info:
        source.bars("BBB")
    assert str(info.value) == ("FileSource: all.parquet (symbol BBB) row 311: close must be "
                               "<= high")
    hhh = source.bars("HHH")
    np.testing.assert_array_equal(hhh.close, frames["HHH"]["close"].to_numpy())
    assert not hhh.close.flags.writeable
    for symbol in ("AAA", "DDD"):  # AAA spans the 2nd and 3rd reads; DDD ends the file
        np.testing.assert_array_equal(source.bars(symbol).volume,
                                      frames[symbol]["volume"].to_numpy())


def test_threads_asking_for_bars_read_each_piece_once(grouped, monkeypatch):
    path, frames = grouped
    calls = []
    real = longtable.PriceColumns.__init__

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("first_row"))
        real(self, *args, **kwargs)

    monkeypatch.setattr(longtable.PriceColumns, "__init__", counting)
    source, found, start = FileSource(path), {}, threading.Barrier(len(frames))

    def ask(symbol: str) -> None:
        start.wait()
        found[symbol] = source.bars(symbol)

    threads = [threading.Thread(target=ask, args=(s,)) for s in reversed(list(frames))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for symbol, frame in frames.items():
        np.testing.assert_array_equal(found[symbol].dates, frame["date"].to_numpy())
        np.testing.assert_array_equal(found[symbol].close, frame["close"].to_numpy())
    assert len(calls) == len(set(calls))  # no piece was built twice


def test_a_row_group_that_cannot_be_read_fails_only_the_symbols_in_it(grouped):
    path, frames = grouped
    metadata = pq.ParquetFile(path).metadata
    column = metadata.row_group(metadata.num_row_groups - 1).column(5)  # close of the last
    data = bytearray(path.read_bytes())
    offset = column.dictionary_page_offset or column.data_page_offset
    data[offset:offset + column.total_compressed_size] = b"\xab" * column.total_compressed_size
    path.write_bytes(bytes(data))
    events = []
    summary = Scanner(FileSource(path)).run(events.append)
    errors = {e.symbol: e.data["message"] for e in events if e.kind == "error"}
    results = {e.symbol for e in events if e.kind == "result"}
    assert summary.status == "completed"
    assert results == {"HHH", "BBB", "GGG"}  # whole in the first two reads, rows 1-900
    assert errors == {s: f"FileSource: all.parquet (symbol {s}) cannot be read as Parquet "
                         "(OSError)" for s in ["AAA", "FFF", "CCC", "EEE", "DDD"]}
