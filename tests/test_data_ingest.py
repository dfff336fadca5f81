"""ingest(): folders of CSV/Parquet files and long tables into a bar store, with FileSource's
column rules and refusals; a scan of the store gives what a scan of the files gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import daily_bars

from technic_panel.data import BarStore, FileSource, StoreSource
from technic_panel.data import ingest as ingest_module
from technic_panel.data.ingest import ingest
from technic_panel.engine.scanner import Scanner

VOLATILE = {"position", "total_processed", "total_remaining", "priority_tier", "batch_number"}
"""Result fields that depend on arrival order and planning, not on the symbol's bars."""


def write(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = frame.reset_index()
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def folder(root: Path, count: int, suffix: str = ".csv", n: int = 260) -> Path:
    for i in range(count):
        write(root / f"s{i:03d}{suffix}", daily_bars(n, seed=i))
    return root


def scan(source) -> dict[str, tuple[str, dict]]:
    events: dict[str, tuple[str, dict]] = {}
    Scanner(source).run(lambda e: events.__setitem__(
        e.symbol, (e.kind, {k: v for k, v in e.data.items() if k not in VOLATILE})))
    return events


def assert_same_source_bars(store: StoreSource, files: FileSource) -> None:
    assert store.symbols() == [s for s in files.symbols() if s in store.symbols()]
    for symbol in store.symbols():
        for ours, theirs in zip(store.bars(symbol), files.bars(symbol), strict=True):
            np.testing.assert_array_equal(ours, theirs)


def test_a_scan_of_the_ingested_store_gives_what_a_scan_of_the_files_gives(tmp_path: Path):
    prices = folder(tmp_path / "prices", 40)
    write(prices / "BAD.csv", daily_bars(260, seed=99).assign(close=lambda f: f["high"] * 2))
    write(prices / "SHORT.csv", daily_bars(120, seed=98))
    report = ingest(prices, tmp_path / "bars.duckdb")
    assert sorted(report.written) == [f"S{i:03d}" for i in range(40)]
    assert report.refused == [
        ("BAD", "FileSource: BAD.csv row 1: close must be <= high (260 of 260 rows)"),
        ("SHORT", "BarStore: SHORT: 120 bars; a symbol needs at least 200 "
                  "(the indicators' longest look-back)")]
    files, store = FileSource(prices), StoreSource(tmp_path / "bars.duckdb")
    from_files, from_store = scan(files), scan(store)
    assert set(from_files) - set(from_store) == {"BAD", "SHORT"}
    assert {s: from_files[s] for s in from_store} == from_store
    assert all(kind == "result" for kind, _ in from_store.values())


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_long_table_is_ingested_with_its_symbol_column(tmp_path: Path, suffix: str):
    frames = [daily_bars(230, seed=i).reset_index().assign(Symbol=f"t{i}") for i in range(5)]
    table = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=1)
    path = write(tmp_path / f"all{suffix}", table.set_index("date"))
    report = ingest(path, tmp_path / "bars.duckdb")
    assert report.written == {f"T{i}": 230 for i in range(5)}
    assert_same_source_bars(StoreSource(tmp_path / "bars.duckdb"), FileSource(path))


def test_parquet_folders_and_mixed_column_names_follow_file_source(tmp_path: Path):
    prices = tmp_path / "pq"
    for i in range(3):
        frame = daily_bars(210, seed=i).rename(columns=str.upper).rename_axis("Timestamp")
        write(prices / f"p{i}.parquet", frame.assign(**{"ADJ CLOSE": 1.0}))
    assert len(ingest(prices, tmp_path / "bars.duckdb").written) == 3
    assert_same_source_bars(StoreSource(tmp_path / "bars.duckdb"), FileSource(prices))


def test_ingesting_again_appends_only_the_new_days(tmp_path: Path):
    prices = folder(tmp_path / "prices", 6)
    with BarStore(tmp_path / "bars.duckdb", create=True) as store:
        ingest(prices, store)
        again = ingest(prices, store)
        assert (again.written, sorted(again.unchanged)) == ({}, [f"S{i:03d}" for i in range(6)])
        write(prices / "s001.csv", daily_bars(263, seed=1))
        assert ingest(prices, store).written == {"S001": 3}
        assert store.info().bars == 6 * 260 + 3


def test_the_universe_file_brings_its_metadata_and_extra_columns(tmp_path: Path):
    prices = folder(tmp_path / "prices", 3)
    universe = tmp_path / "universe.csv"
    pd.DataFrame({"Symbol": ["s000", "S001", "ZZZ"], "Name": ["Acme", "Beta", "Nobody"],
                  "Sector": ["Energy", "Utilities", "Energy"], "market_cap": [1e9, 2e9, 3e9],
                  "exchange": ["NYSE", "NASDAQ", "OTC"]}).to_csv(universe, index=False)
    ingest(prices, tmp_path / "bars.duckdb", universe_path=universe)
    frame = StoreSource(tmp_path / "bars.duckdb").universe().set_index("symbol")
    assert frame.loc["S000", ["name", "sector", "industry", "market_cap", "exchange"]].tolist() \
        == ["Acme", "Energy", "Unknown", 1e9, "NYSE"]
    assert frame.loc["S002", ["name", "sector"]].tolist() == ["S002", "Unknown"]
    assert "ZZZ" not in frame.index  # metadata alone is not a symbol with prices


def test_progress_counts_every_file_read_and_one_commit_holds_every_batch(
        tmp_path: Path, monkeypatch):
    prices = folder(tmp_path / "prices", 23, n=200)
    monkeypatch.setattr(ingest_module, "BATCH", 5)
    counts: list[int] = []
    with BarStore(tmp_path / "bars.duckdb", create=True) as store:
        before = store.info().generation
        report = ingest(prices, store, progress=counts.append)
        after = store.info().generation
    assert len(report.written) == 23 and sum(counts) == 23
    assert int(after.split("-")[1]) == int(before.split("-")[1]) + 1


def test_paths_that_hold_no_prices_are_refused_before_anything_is_written(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="the folder has no .csv or .parquet file"):
        ingest(tmp_path / "empty", tmp_path / "bars.duckdb")
    prices = folder(tmp_path / "prices", 1)
    with pytest.raises(ValueError, match="universe_path must be an existing .csv/.parquet file"):
        ingest(prices, tmp_path / "bars.duckdb", universe_path=tmp_path / "nope.csv")
    assert not (tmp_path / "bars.duckdb").exists()
