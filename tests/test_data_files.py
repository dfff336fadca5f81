"""FileSource: per-symbol and long-table layouts, CSV and Parquet, row rules, errors that name
file, row and rule."""

from __future__ import annotations

import logging
import os
import pickle
import re
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from technic_panel.data import (
    SNAPSHOT_COLUMNS,
    UNIVERSE_COLUMNS,
    DataError,
    DataSource,
    FileSource,
    longtable,
)
from technic_panel.data import files as files_module
from technic_panel.data.base import PLAN_COLUMNS, PlannableSource, snapshot_from_bars

HEADER = "date,open,high,low,close,volume\n"


def ohlcv(n: int = 30, start: str = "2024-01-01", seed: int = 0) -> pd.DataFrame:
    """Plausible bars with a ``date`` column, oldest first."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({
        "date": pd.bdate_range(start, periods=n),
        "open": close * 0.99, "high": close * 1.02, "low": close * 0.97, "close": close,
        "volume": rng.integers(1_000, 10_000, n).astype(float),
    })


def write(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    """A folder of three good per-symbol CSV files."""
    folder = tmp_path / "prices"
    for i, symbol in enumerate(["acme", "BETA", "Gamma"]):
        write(folder / f"{symbol}.csv", ohlcv(seed=i))
    return folder


def assert_bars_equal(bars, frame: pd.DataFrame) -> None:
    np.testing.assert_array_equal(bars.dates, frame["date"].to_numpy("datetime64[ns]"))
    for column in ("open", "high", "low", "close", "volume"):
        array = getattr(bars, column)
        assert array.dtype == np.float64
        np.testing.assert_allclose(array, frame[column].to_numpy(float), rtol=1e-12)


# --- layouts ---------------------------------------------------------------------------------


def test_per_symbol_csv_folder(prices: Path):
    source = FileSource(prices)
    assert isinstance(source, DataSource)
    assert source.name == "files"
    assert source.symbols() == ["ACME", "BETA", "GAMMA"]
    assert_bars_equal(source.bars("ACME"), ohlcv(seed=0))
    history = source.history("GAMMA")
    assert list(history.columns) == ["open", "high", "low", "close", "volume"]
    assert history.index.name == "date"
    pd.testing.assert_frame_equal(history, source.bars("GAMMA").to_frame())


def test_per_symbol_parquet_folder_with_date_index(tmp_path: Path):
    frame = ohlcv(seed=3)
    (tmp_path / "pq").mkdir()
    frame.set_index("date").to_parquet(tmp_path / "pq" / "ACME.parquet")
    write(tmp_path / "pq" / "beta.parquet", ohlcv(seed=4))
    source = FileSource(tmp_path / "pq", name="parquet")
    assert source.name == "parquet"
    assert source.symbols() == ["ACME", "BETA"]
    assert_bars_equal(source.bars("ACME"), frame)
    assert_bars_equal(source.bars("BETA"), ohlcv(seed=4))


def test_columns_match_case_insensitively_and_extras_are_ignored(tmp_path: Path):
    frame = ohlcv()
    yahoo = frame.rename(columns=str.title).assign(**{"Adj Close": frame["close"] * 0.9})
    source = FileSource(write(tmp_path / "ACME.csv", yahoo))
    assert source.symbols() == ["ACME"]
    assert_bars_equal(source.bars("ACME"), frame)


@pytest.mark.parametrize("date_name", ["Datetime", "TIMESTAMP"])
def test_datetime_and_timestamp_are_date_columns(tmp_path: Path, date_name: str):
    frame = ohlcv()
    write(tmp_path / "ACME.csv", frame.rename(columns={"date": date_name}))
    assert_bars_equal(FileSource(tmp_path).bars("ACME"), frame)


def test_bars_are_sorted_by_date(tmp_path: Path):
    (tmp_path / "ACME.csv").write_text(
        HEADER
        + "2024-01-03,1,2,0.5,1.3,300\n"
        + "2024-01-02,1,2,0.5,1.2,200\n"
        + "2024-01-01,1,2,0.5,1.1,100\n")
    bars = FileSource(tmp_path).bars("ACME")
    np.testing.assert_array_equal(
        bars.dates, np.array(["2024-01-01", "2024-01-02", "2024-01-03"], "datetime64[ns]"))
    np.testing.assert_array_equal(bars.close, [1.1, 1.2, 1.3])
    np.testing.assert_array_equal(bars.volume, [100, 200, 300])


def test_rows_without_any_price_are_skipped_as_holiday_placeholders(tmp_path: Path):
    (tmp_path / "ACME.csv").write_text(
        HEADER + "2024-01-01,1,2,0.5,1.1,100\n2024-01-02,null,null,null,null,null\n,,,,,\n"
        + "2024-01-03,1,2,0.5,1.3,300\n")
    bars = FileSource(tmp_path).bars("ACME")
    np.testing.assert_array_equal(bars.close, [1.1, 1.3])


def test_integer_yyyymmdd_and_tz_aware_dates(tmp_path: Path):
    (tmp_path / "ACME.csv").write_text(HEADER + "20240102,1,2,0.5,1.1,100\n")
    frame = ohlcv(n=3)
    frame["date"] = frame["date"].dt.tz_localize("America/New_York")
    write(tmp_path / "BETA.parquet", frame)
    source = FileSource(tmp_path)
    assert source.bars("ACME").dates[0] == np.datetime64("2024-01-02")
    assert_bars_equal(source.bars("BETA"), ohlcv(n=3))


@pytest.mark.parametrize("where", ["file.csv", "file.parquet", "folder.csv", "folder.parquet"])
def test_long_table(tmp_path: Path, where: str):
    kind, suffix = where.split(".")
    frames = {s: ohlcv(seed=i) for i, s in enumerate(["ACME", "BETA"])}
    long = pd.concat([f.assign(Symbol=s) for s, f in frames.items()]).sample(frac=1, random_state=1)
    path = write(tmp_path / "all" / f"prices.{suffix}", long)
    source = FileSource(path if kind == "file" else path.parent)
    assert source.symbols() == ["ACME", "BETA"]
    for symbol, frame in frames.items():
        assert_bars_equal(source.bars(symbol), frame)
    assert list(source.snapshot()["symbol"]) == ["ACME", "BETA"]


def test_long_table_bad_value_fails_only_that_symbol(tmp_path: Path):
    long = pd.concat([ohlcv(seed=0).assign(symbol="ACME"), ohlcv(seed=1).assign(symbol="BETA")],
                     ignore_index=True).astype({"close": object})
    long.loc[33, "close"] = "oops"
    path = write(tmp_path / "all.csv", long)
    source = FileSource(path)
    assert_bars_equal(source.bars("ACME"), ohlcv(seed=0))
    with pytest.raises(DataError) as info:
        source.bars("BETA")
    assert str(info.value) == "FileSource: all.csv (symbol BETA) row 34: close is not a number"
    assert list(source.snapshot()["symbol"]) == ["ACME"]
    assert source.symbols() == ["ACME", "BETA"]


def test_long_table_missing_column_names_file_and_column(tmp_path: Path):
    long = ohlcv().assign(symbol="ACME").drop(columns="volume")
    path = write(tmp_path / "all.parquet", long)
    with pytest.raises(DataError) as info:
        FileSource(path).bars("ACME")
    assert str(info.value) == (
        "FileSource: all.parquet (symbol ACME) lacks the column volume (needs date, open, high, "
        "low, close, volume; the date may also be called datetime or timestamp)")


# --- universe and snapshot -------------------------------------------------------------------


def test_universe_file_metadata_and_defaults(prices: Path, tmp_path: Path):
    meta = pd.DataFrame({"Symbol": ["acme", "BETA", "NOPRICES"], "Name": ["Acme Corp", None, "X"],
                         "sector": ["Industrials", "Energy", "Energy"],
                         "MARKET_CAP": [1e9, 2e9, 3e9]})
    universe_path = write(tmp_path / "universe.parquet", meta)
    universe = FileSource(prices, universe_path=universe_path).universe()
    assert list(universe.columns) == list(UNIVERSE_COLUMNS)
    assert list(universe["symbol"]) == ["ACME", "BETA", "GAMMA"]
    assert list(universe["name"]) == ["Acme Corp", "BETA", "GAMMA"]
    assert list(universe["sector"]) == ["Industrials", "Energy", "Unknown"]
    assert list(universe["industry"]) == ["Unknown"] * 3
    np.testing.assert_array_equal(universe["market_cap"], [1e9, 2e9, np.nan])
    assert universe["market_cap"].dtype == np.float64
    last = ohlcv(seed=1).tail(20)
    assert universe.loc[1, "avg_dollar_volume"] == pytest.approx(
        (last["close"] * last["volume"]).mean())


def test_universe_without_universe_file(prices: Path):
    universe = FileSource(prices).universe()
    assert list(universe["name"]) == ["ACME", "BETA", "GAMMA"]
    assert universe["market_cap"].isna().all()
    assert (universe["avg_dollar_volume"] > 0).all()


def test_snapshot_has_a_row_per_symbol(prices: Path):
    snapshot = FileSource(prices).snapshot()
    assert list(snapshot.columns) == list(SNAPSHOT_COLUMNS)
    assert list(snapshot["symbol"]) == ["ACME", "BETA", "GAMMA"]
    assert snapshot.loc[0, "close"] == pytest.approx(ohlcv(seed=0)["close"].iloc[-1])


# --- errors ----------------------------------------------------------------------------------


def test_missing_column_message_names_file_and_column(prices: Path, monkeypatch):
    monkeypatch.chdir(prices.parent)
    (prices / "acme.csv").unlink()
    ohlcv().drop(columns="close").to_csv(prices / "ACME.csv", index=False)
    with pytest.raises(DataError) as info:
        FileSource("prices").bars("ACME")
    assert str(info.value) == (
        "FileSource: ACME.csv lacks the column close (needs date, open, high, low, close, "
        "volume; the date may also be called datetime or timestamp)")


BAD_FILES = {
    "no date column": ("ACME.csv", "day,open,high,low,close,volume\n2024-01-02,1,2,0.5,1,9\n",
                       " lacks the column date (needs date, open, high, low, close, volume; "
                       "the date may also be called datetime or timestamp)"),
    "unparsable date": ("ACME.csv", HEADER + "2024-01-02,1,2,0.5,1,9\nyesterday,1,2,0.5,1,9\n",
                        " row 2: date is not a date like 2024-01-31"),
    "non-numeric price": ("ACME.csv", "Date,Open,High,Low,Close,Volume\n2024-01-02,1,abc,1,1,9\n",
                          " row 1: high is not a number"),
    "empty file": ("ACME.csv", "", ": the file is empty"),
    "header only": ("ACME.csv", HEADER, ": the file has no rows"),
    "no price at all": ("ACME.csv", HEADER + "2024-01-02,,,,,\n", ": no row has prices"),
    "corrupt parquet": ("ACME.parquet", "not parquet", " cannot be read as Parquet"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_file_fails_only_its_symbol(prices: Path, name: str, caplog):
    filename, text, message = BAD_FILES[name]
    (prices / "acme.csv").unlink()
    bad = prices / filename
    bad.write_text(text)
    source = FileSource(prices)
    assert source.symbols() == ["ACME", "BETA", "GAMMA"]
    with pytest.raises(DataError) as info:
        source.bars("ACME")
    assert str(info.value).startswith(f"FileSource: {filename}{message}")
    with pytest.raises(DataError, match="ACME"):
        source.history("ACME")
    assert_bars_equal(source.bars("BETA"), ohlcv(seed=1))
    with caplog.at_level(logging.DEBUG, logger="technic_panel.data.files"):
        assert list(source.snapshot()["symbol"]) == ["BETA", "GAMMA"]
    assert f"skipping ACME: FileSource: {filename}" in caplog.text
    universe = source.universe()
    assert list(universe["symbol"]) == ["ACME", "BETA", "GAMMA"]
    assert np.isnan(universe.loc[0, "avg_dollar_volume"])


GOOD_ROW = "2024-01-02,10,12,9,11,100\n"
ROW_RULES = {  # the second row of ACME.csv -> the message after "FileSource: ACME.csv "
    "high below low": ("2024-01-03,10,8,9,9,100", "row 2: high must be >= low"),
    "open below low": ("2024-01-03,8,12,9,11,100", "row 2: low must be <= open"),
    "open above high": ("2024-01-03,13,12,9,11,100", "row 2: open must be <= high"),
    "close below low": ("2024-01-03,10,12,9,8,100", "row 2: low must be <= close"),
    "close above high": ("2024-01-03,10,12,9,18,100", "row 2: close must be <= high"),
    "zero open": ("2024-01-03,0,12,9,11,100", "row 2: open must be > 0"),
    "negative prices": ("2024-01-03,-10,-9,-12,-11,100", "row 2: open must be > 0"),
    "negative close": ("2024-01-03,10,12,9,-11,100", "row 2: close must be > 0"),
    "negative volume": ("2024-01-03,10,12,9,11,-1", "row 2: volume must be >= 0"),
    "empty close": ("2024-01-03,10,12,9,,100", "row 2: close is empty"),
    "empty volume": ("2024-01-03,10,12,9,11,", "row 2: volume is empty"),
    "empty date": (",10,12,9,11,100", "row 2: date is empty"),
    "duplicated date": ("2024-01-02,10,12,9,11,100",
                        "row 2: date repeats row 1 (each date may appear once)"),
    "year 9999": ("9999-12-31,10,12,9,11,100", "row 2: date must be in 1900-01-01..2100-12-31"),
    "year 1899": ("1899-12-31,10,12,9,11,100", "row 2: date must be in 1900-01-01..2100-12-31"),
    "not a number": ("2024-01-03,10,1O,9,11,100", "row 2: high is not a number"),
    "infinite": ("2024-01-03,10,inf,9,11,100", "row 2: high is not a finite number"),
    "not a date": ("2024-13-45,10,12,9,11,100", "row 2: date is not a date like 2024-01-31"),
}


@pytest.mark.parametrize("rule", list(ROW_RULES))
def test_each_row_rule_fails_the_symbol_naming_file_row_and_rule(prices: Path, rule: str):
    row, message = ROW_RULES[rule]
    (prices / "acme.csv").unlink()
    (prices / "ACME.csv").write_text(HEADER + GOOD_ROW + row + "\n")
    source = FileSource(prices)
    with pytest.raises(DataError) as info:
        source.bars("ACME")
    assert str(info.value) == f"FileSource: ACME.csv {message}"
    assert_bars_equal(source.bars("BETA"), ohlcv(seed=1))


def test_a_rule_error_counts_the_rows_that_break_it(tmp_path: Path):
    (tmp_path / "ACME.csv").write_text(
        HEADER + GOOD_ROW + "2024-01-03,10,8,9,9,100\n2024-01-04,10,8,9,9,100\n")
    with pytest.raises(DataError) as info:
        FileSource(tmp_path).bars("ACME")
    assert str(info.value) == "FileSource: ACME.csv row 2: high must be >= low (2 of 3 rows)"


def test_the_first_repeat_in_the_file_is_named_whatever_the_date_order(tmp_path: Path):
    (tmp_path / "ACME.csv").write_text(
        HEADER + "2024-01-09,1,2,0.5,1,9\n2024-01-05,1,2,0.5,1,9\n2024-01-09,1,2,0.5,1,9\n"
        + "2024-01-05,1,2,0.5,1,9\n2024-01-07,1,2,0.5,1,9\n")
    with pytest.raises(DataError) as info:
        FileSource(tmp_path).bars("ACME")
    assert str(info.value) == ("FileSource: ACME.csv row 3: date repeats row 1 (each date may "
                               "appear once) (2 rows repeat a date)")


def test_bars_on_the_edges_of_the_rules_are_accepted(tmp_path: Path):
    (tmp_path / "ACME.csv").write_text(
        HEADER + "1900-01-01,5,5,5,5,0\n2100-12-31,1,2,0.5,2,9\n2050-06-01,1,2,0.5,0.5,9\n")
    bars = FileSource(tmp_path).bars("ACME")
    np.testing.assert_array_equal(
        bars.dates, np.array(["1900-01-01", "2050-06-01", "2100-12-31"], "datetime64[ns]"))
    np.testing.assert_array_equal(bars.close, [5, 0.5, 2])


def test_a_parquet_date_beyond_the_nanosecond_range_is_refused_not_wrapped(tmp_path: Path):
    frame = ohlcv(n=3)
    frame["date"] = pd.to_datetime(["2024-01-02", "2024-01-03", "9999-12-31"]).as_unit("us")
    write(tmp_path / "ACME.parquet", frame)
    with pytest.raises(DataError) as info:
        FileSource(tmp_path).bars("ACME")
    assert str(info.value) == (
        "FileSource: ACME.parquet row 3: date must be in 1900-01-01..2100-12-31")


def test_listing_parses_no_price_file(prices: Path, monkeypatch):
    from technic_panel.data import files

    def fail(path, *args):
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(files, "read_table", fail)
    monkeypatch.setattr(files, "tail_bars", fail)
    assert FileSource(prices).symbols() == ["ACME", "BETA", "GAMMA"]


@pytest.mark.parametrize("layout", ["per-symbol", "long"])
def test_unknown_symbol_is_named(prices: Path, tmp_path: Path, layout: str):
    path = prices if layout == "per-symbol" else write(
        tmp_path / "all.csv", ohlcv().assign(symbol="ACME"))
    with pytest.raises(DataError, match="FileSource has no symbol 'NOPE'"):
        FileSource(path).bars("NOPE")


def test_missing_path_is_rejected_at_construction(tmp_path: Path):
    with pytest.raises(ValueError, match=r"FileSource\.path must be .* not '.*nowhere': "
                                         "it does not exist"):
        FileSource(tmp_path / "nowhere")


def test_folder_without_data_files_is_rejected(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / ".hidden.csv").write_text(HEADER)
    with pytest.raises(ValueError, match="FileSource.path .* has no .csv or .parquet file"):
        FileSource(tmp_path)


def test_file_of_another_format_is_rejected(tmp_path: Path):
    (tmp_path / "prices.json").write_text("{}")
    with pytest.raises(ValueError, match=r"FileSource\.path must be a \.csv/\.parquet file"):
        FileSource(tmp_path / "prices.json")


def test_two_files_for_one_symbol_are_rejected(prices: Path):
    write(prices / "ACME.parquet", ohlcv())
    with pytest.raises(ValueError, match="one file per symbol, not two for 'ACME'"):
        FileSource(prices)


def test_bad_universe_path_is_rejected(prices: Path, tmp_path: Path):
    with pytest.raises(ValueError, match=r"FileSource\.universe_path .*does not exist"):
        FileSource(prices, universe_path=tmp_path / "nowhere.csv")
    (tmp_path / "meta.csv").write_text("ticker,name\nACME,Acme\n")
    with pytest.raises(ValueError) as info:
        FileSource(prices, universe_path=tmp_path / "meta.csv")
    assert str(info.value) == (
        "FileSource.universe_path is unusable: meta.csv lacks the column symbol "
        "(needs symbol; it may have name, sector, industry, market_cap)")
    (tmp_path / "meta.csv").write_text("symbol,market_cap\nACME,1e9\nBETA,big\n")
    with pytest.raises(ValueError) as info:
        FileSource(prices, universe_path=tmp_path / "meta.csv")
    assert str(info.value) == ("FileSource.universe_path is unusable: meta.csv row 2: "
                               "market_cap is not a number")


# --- caching, threads, pickling --------------------------------------------------------------


def test_bars_are_cached_and_read_only(prices: Path):
    source = FileSource(prices)
    bars = source.bars("ACME")
    assert source.bars("ACME") is bars
    with pytest.raises(ValueError, match="read-only"):
        bars.close[0] = 0.0


def test_concurrent_reads_share_one_result(prices: Path, no_thread_leaks):
    source = FileSource(prices)
    results: list[tuple[str, object]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def read():
        start.wait()
        for symbol in ("ACME", "BETA", "GAMMA"):
            bars = source.bars(symbol)
            with lock:
                results.append((symbol, bars))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 24
    for symbol, bars in results:
        assert bars is source.bars(symbol)


@pytest.mark.parametrize("loaded", [False, True])
def test_pickle_round_trip(prices: Path, tmp_path: Path, loaded: bool):
    meta = write(tmp_path / "meta.csv", pd.DataFrame({"symbol": ["ACME"], "sector": ["Energy"]}))
    source = FileSource(prices, universe_path=meta, name="mine")
    if loaded:
        source.universe()
    state = source.__getstate__()
    assert not {"_lock", "_cache", "_table", "_table_lock"} & set(state)
    clone = pickle.loads(pickle.dumps(source))
    assert repr(clone) == repr(source)
    pd.testing.assert_frame_equal(clone.universe(), source.universe())
    assert_bars_equal(clone.bars("BETA"), ohlcv(seed=1))


# --- planning: plan parts from the files' tails ----------------------------------------------


def plan_of(source: FileSource) -> pd.DataFrame:
    return pd.concat(list(source.plan_parts()), ignore_index=True)


def expected_rows(source: FileSource, symbols: list[str]) -> pd.DataFrame:
    """What a plan row must hold: the snapshot of the symbol's whole bars."""
    rows = []
    for symbol in symbols:
        bars = source.bars(symbol)
        window = slice(-files_module.AVG_WINDOW, None)
        rows.append({**snapshot_from_bars(symbol, bars), "avg_dollar_volume": float(
            np.mean(bars.close[window] * bars.volume[window]))})
    return pd.DataFrame(rows).astype({"symbol": object, "date": "datetime64[ns]"})


def assert_plan_is_the_snapshot_of_all_bars(plan: pd.DataFrame, path: Path) -> None:
    expected = expected_rows(FileSource(path), list(plan["symbol"]))
    pd.testing.assert_frame_equal(plan[list(expected.columns)], expected, check_exact=True)


def forbid_whole_reads(monkeypatch) -> None:
    """Make reading any whole per-symbol file fail the test."""
    def fail(path, *args):
        raise AssertionError(f"read all of {path}")

    monkeypatch.setattr(files_module, "file_bars", fail)


def test_plan_parts_cover_every_symbol_once_in_growing_parts(tmp_path: Path, monkeypatch):
    for i in range(20):
        write(tmp_path / f"S{i:02d}.csv", ohlcv(n=25, seed=i))
    source = FileSource(tmp_path)
    assert isinstance(source, PlannableSource)
    assert files_module.FIRST_PART <= 64
    monkeypatch.setattr(files_module, "FIRST_PART", 2)
    monkeypatch.setattr(files_module, "LAST_PART", 8)
    parts = list(source.plan_parts())
    assert [len(part) for part in parts] == [2, 4, 8, 6]
    assert all(list(part.columns) == list(PLAN_COLUMNS) for part in parts)
    plan = pd.concat(parts, ignore_index=True)
    assert list(plan["symbol"]) == source.symbols()
    assert [len(part) for part in source.plan_parts()] == [2, 4, 8, 6]  # kept, read again
    pd.testing.assert_frame_equal(pd.concat(list(source.plan_parts()), ignore_index=True), plan)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_planning_reads_only_the_tails_of_long_files(tmp_path: Path, monkeypatch, suffix: str):
    for i, symbol in enumerate(["ACME", "BETA", "GAMMA", "DELTA"]):
        if suffix == "csv":
            write(tmp_path / f"{symbol}.csv", ohlcv(n=300, seed=i))
        else:  # several row groups, so the tail is not the whole file; it spans the last two
            ohlcv(n=300, seed=i).to_parquet(tmp_path / f"{symbol}.parquet", row_group_size=20)
    expected = expected_rows(FileSource(tmp_path), FileSource(tmp_path).symbols())
    forbid_whole_reads(monkeypatch)
    source = FileSource(tmp_path)
    plan = plan_of(source)
    pd.testing.assert_frame_equal(plan[list(expected.columns)], expected, check_exact=True)
    snapshot = source.snapshot()
    assert list(snapshot.columns) == list(SNAPSHOT_COLUMNS)
    pd.testing.assert_frame_equal(snapshot, expected[list(SNAPSHOT_COLUMNS)], check_exact=True)
    universe = source.universe()
    assert list(universe.columns) == list(UNIVERSE_COLUMNS)
    np.testing.assert_array_equal(universe["avg_dollar_volume"], expected["avg_dollar_volume"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 90), ending=st.sampled_from(["\n", "\r\n", "\r"]),
       blank=st.sampled_from(["", "\n", "\r\n\r\n", "\n  \n"]),
       holidays=st.lists(st.integers(1, 30), max_size=3),
       seed=st.integers(0, 99), title=st.booleans())
def test_a_csv_tail_gives_the_snapshot_of_the_whole_file(n, ending, blank, holidays, seed, title):
    frame = ohlcv(n=n, seed=seed)
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    for back in sorted(set(holidays)):
        if back < n:
            frame.loc[n - back, ["open", "high", "low", "close", "volume"]] = np.nan
    if title:
        frame = frame.rename(columns=str.title).assign(**{"Adj Close": 1.0})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ACME.csv"
        path.write_bytes((frame.to_csv(index=False, lineterminator=ending) + blank).encode())
        plan = plan_of(FileSource(folder))
        assert_plan_is_the_snapshot_of_all_bars(plan, Path(folder))


def test_a_file_the_tail_would_read_whole_is_read_once_for_plan_and_scan(tmp_path: Path,
                                                                          monkeypatch):
    write(tmp_path / "SHORT.csv", ohlcv(n=30))  # under 4 KB
    write(tmp_path / "WHOLE.parquet", ohlcv(n=300, seed=1))  # one row group
    source = FileSource(tmp_path)
    plan = plan_of(source)
    forbid_whole_reads(monkeypatch)
    assert_bars_equal(source.bars("SHORT"), ohlcv(n=30))  # kept from planning
    assert_bars_equal(source.bars("WHOLE"), ohlcv(n=300, seed=1))
    monkeypatch.undo()
    assert_plan_is_the_snapshot_of_all_bars(plan, tmp_path)


def test_a_file_whose_tail_is_broken_is_planned_with_nan_and_fails_its_bars(tmp_path: Path):
    write(tmp_path / "ACME.csv", close_last_above_high(ohlcv(n=300)))
    bad_middle = ohlcv(n=300, seed=1).astype({"close": object})
    bad_middle.loc[99, "close"] = "oops"
    write(tmp_path / "BETA.csv", bad_middle)
    write(tmp_path / "GAMMA.csv", ohlcv(n=300, seed=2))
    source = FileSource(tmp_path)
    plan = plan_of(source).set_index("symbol")
    assert list(plan.index) == ["ACME", "BETA", "GAMMA"]
    assert plan.loc["ACME", ["date", "close", "change_pct", "avg_dollar_volume"]].isna().all()
    with pytest.raises(DataError) as info:
        source.bars("ACME")
    assert str(info.value) == "FileSource: ACME.csv row 300: close must be <= high"
    assert plan.loc["BETA", "close"] == pytest.approx(ohlcv(n=300, seed=1)["close"].iloc[-1])
    with pytest.raises(DataError) as info:  # the tail was fine: the whole file is not
        source.bars("BETA")
    assert str(info.value) == "FileSource: BETA.csv row 100: close is not a number"
    assert list(source.snapshot()["symbol"]) == ["BETA", "GAMMA"]


def close_last_above_high(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[frame.index[-1], "close"] = 2 * frame["high"].iloc[-1]
    return frame


def test_an_unsorted_file_is_planned_from_its_sorted_bars(tmp_path: Path):
    write(tmp_path / "DESC.csv", ohlcv(n=200).iloc[::-1])
    write(tmp_path / "SHUF.parquet", ohlcv(n=200, seed=1).sample(frac=1, random_state=3))
    assert_plan_is_the_snapshot_of_all_bars(plan_of(FileSource(tmp_path)), tmp_path)


def test_plan_parts_carry_the_universe_files_metadata(prices: Path, tmp_path: Path):
    meta = write(tmp_path / "universe.csv", pd.DataFrame({
        "symbol": ["ACME", "beta "], "name": ["Acme Corp", "Beta Inc"],
        "sector": ["Industrials", "Energy"], "industry": ["Machinery", None],
        "market_cap": [1e9, 2.5e9]}))
    plan = plan_of(FileSource(prices, universe_path=meta))
    assert plan[["symbol", "name", "sector", "industry"]].values.tolist() == [
        ["ACME", "Acme Corp", "Industrials", "Machinery"],
        ["BETA", "Beta Inc", "Energy", "Unknown"],
        ["GAMMA", "GAMMA", "Unknown", "Unknown"]]
    np.testing.assert_array_equal(plan["market_cap"], [1e9, 2.5e9, np.nan])


# --- the long table, read columnar -----------------------------------------------------------


DEFECTS = ("close above high", "empty close", "repeated date", "placeholder", "negative volume",
           "shuffled", "not a number")


def symbol_rows(i: int, defect: str | None) -> pd.DataFrame:
    """One symbol's rows, with at most one defect."""
    frame = ohlcv(n=40, seed=i).astype({"volume": object})
    if defect == "close above high":
        frame.loc[30, "close"] = 3 * frame.loc[30, "high"]
    elif defect == "empty close":
        frame.loc[12, "close"] = np.nan
    elif defect == "repeated date":
        frame.loc[25, "date"] = frame.loc[20, "date"]
    elif defect == "placeholder":
        frame.loc[5, ["open", "high", "low", "close", "volume"]] = np.nan
    elif defect == "negative volume":
        frame.loc[39, "volume"] = -1.0
    elif defect == "shuffled":
        frame = frame.sample(frac=1, random_state=i)
    elif defect == "not a number":
        frame.loc[7, "volume"] = "many"
    return frame.reset_index(drop=True)


def in_long_rows(message: str, rows: np.ndarray) -> str:
    """Rename a per-symbol file's message to the long table's: its file and row numbers."""
    return re.sub(r"row (\d+)", lambda m: f"row {rows[int(m.group(1)) - 1]}", message)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(defects=st.lists(st.sampled_from((None, *DEFECTS)), min_size=1, max_size=5),
       suffix=st.sampled_from(["csv", "parquet"]),
       layout=st.sampled_from(["grouped", "grouped backwards", "shuffled"]),
       group_rows=st.sampled_from([None, 7, 45]))
def test_the_long_table_gives_what_per_symbol_files_give(defects, suffix, layout, group_rows):
    """Also when a grouped Parquet table is read in pieces of row groups (``group_rows``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(longtable, "FIRST_ROWS", 10)
        long_table_matches_files(defects, suffix, layout, group_rows)


def long_table_matches_files(defects, suffix, layout, group_rows):
    if suffix == "parquet" and "not a number" in defects:
        defects = [d if d != "not a number" else None for d in defects]
    frames = {f"S{i}": symbol_rows(i, defect) for i, defect in enumerate(defects)}
    order = list(frames)[::-1] if layout == "grouped backwards" else list(frames)
    long = pd.concat([frames[s].assign(symbol=s) for s in order], ignore_index=True)
    if layout == "shuffled":
        long = long.sample(frac=1, random_state=len(defects)).reset_index(drop=True)
    if "not a number" in defects:
        long = long.astype({"volume": str})
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = root / "long" / f"all.{suffix}"
        path.parent.mkdir()
        if suffix == "parquet":
            long.to_parquet(path, index=False, row_group_size=group_rows)
        else:
            long.to_csv(path, index=False)
        table = FileSource(path)
        for symbol in frames:  # the symbol's rows in the long table's order
            write(root / "files" / f"{symbol}.{suffix}",
                  long[long["symbol"] == symbol].drop(columns="symbol"))
        files = FileSource(root / "files")
        assert table.symbols() == files.symbols() == sorted(frames)
        pd.testing.assert_frame_equal(table.universe(), files.universe(), check_exact=True)
        pd.testing.assert_frame_equal(table.snapshot(), files.snapshot(), check_exact=True)
        for symbol in frames:
            rows = np.flatnonzero(long["symbol"] == symbol) + 1
            try:
                expected = files.bars(symbol)
            except DataError as exc:
                with pytest.raises(DataError) as info:
                    table.bars(symbol)
                assert str(info.value) == in_long_rows(str(exc), rows).replace(
                    f"{symbol}.{suffix}", f"all.{suffix} (symbol {symbol})")
                continue
            bars = table.bars(symbol)
            for column in bars._fields:
                np.testing.assert_array_equal(getattr(bars, column), getattr(expected, column))
                assert not getattr(bars, column).flags.writeable


def test_a_long_table_already_grouped_by_symbol_is_sliced_in_place(tmp_path: Path):
    frames = {s: ohlcv(seed=i) for i, s in enumerate(["GAMMA", "ACME", "BETA"])}
    long = pd.concat([f.assign(symbol=s) for s, f in frames.items()], ignore_index=True)
    source = FileSource(write(tmp_path / "all.parquet", long))
    for symbol, frame in frames.items():
        assert_bars_equal(source.bars(symbol), frame)
    a, b = source.bars("ACME"), source.bars("BETA")
    assert not np.shares_memory(a.close, b.close)
    assert a.close.base is not None and a.close.base is b.close.base  # slices of one array
    assert_plan_is_the_snapshot_of_all_bars(plan_of(source), tmp_path / "all.parquet")


def test_a_long_table_keeps_the_wall_time_of_dates_with_an_offset(tmp_path: Path):
    rows = "".join(f"ACME,2024-01-0{d}T00:00:00-05:00,1,2,0.5,1,9\n" for d in (2, 3, 4))
    (tmp_path / "all.csv").write_text("symbol,date,open,high,low,close,volume\n" + rows)
    bars = FileSource(tmp_path / "all.csv").bars("ACME")
    np.testing.assert_array_equal(
        bars.dates, np.array(["2024-01-02", "2024-01-03", "2024-01-04"], "datetime64[ns]"))


def test_a_row_too_short_for_pyarrow_is_read_as_pandas_reads_it(tmp_path: Path):
    (tmp_path / "ACME.csv").write_text(HEADER + GOOD_ROW + "2024-01-03,10,12,9\n")
    with pytest.raises(DataError) as info:
        FileSource(tmp_path).bars("ACME")
    assert str(info.value) == "FileSource: ACME.csv row 2: close is empty"
    long = "symbol," + HEADER + "ACME," + GOOD_ROW + "ACME,2024-01-03,10,12,9\nBETA," + GOOD_ROW
    (tmp_path / "long").mkdir()
    (tmp_path / "long" / "all.csv").write_text(long)
    source = FileSource(tmp_path / "long")
    with pytest.raises(DataError) as info:
        source.bars("ACME")
    assert str(info.value) == "FileSource: all.csv (symbol ACME) row 2: close is empty"
    np.testing.assert_array_equal(source.bars("BETA").close, [11.0])


def test_a_folder_is_read_by_a_thread_a_core_a_long_table_by_one(prices: Path, tmp_path: Path):
    from technic_panel.engine.scanner import Scanner

    long = write(tmp_path / "all.csv", ohlcv().assign(symbol="ACME"))
    cores = min(os.cpu_count() or 1, 2)
    assert not getattr(FileSource(prices), "io_bound", False)  # local files: no waiting
    assert Scanner(FileSource(prices)).executor.workers == cores  # pyarrow parses sans GIL
    assert Scanner(FileSource(prices), workers=5).executor.workers == 5  # a setting wins
    assert Scanner(FileSource(prices), executor="process").executor.workers == (
        os.cpu_count() or 1)  # processes: the process executor's own default
    assert Scanner(FileSource(long)).executor.workers == 1  # slices: computing is all
