"""BarStore and StoreSource: writes, every validation rule, planning parts, pickling, export,
and the store's promises across processes: a killed writer leaves the previous state, and
readers keep reading while one writer appends."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from helpers import daily_bars, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from technic_panel.data import (
    SNAPSHOT_COLUMNS,
    UNIVERSE_COLUMNS,
    Bars,
    BarStore,
    DataError,
    DataSource,
    FileSource,
    StoreError,
    StoreSource,
    store_layout,
)
from technic_panel.data.base import (
    MIN_BARS,
    PLAN_COLUMNS,
    PlannableSource,
    snapshot_from_bars,
)
from technic_panel.data.store_layout import SHARDS, read_dir, shard_name, shard_of
from technic_panel.engine.executors import close_shared_workers
from technic_panel.engine.prioritize import prioritize
from technic_panel.engine.scanner import Scanner

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = {"position", "total_processed", "total_remaining", "priority_tier", "batch_number"}
"""Result fields that depend on arrival order and planning, not on the symbol's bars."""


@pytest.fixture
def store(tmp_path: Path):
    with BarStore(tmp_path / "bars.duckdb", create=True) as opened:
        yield opened


def frames(count: int, n: int = 250, start: str = "2023-01-02") -> dict[str, pd.DataFrame]:
    return {f"S{i:03d}": daily_bars(n, start, seed=i) for i in range(count)}


def assert_same_bars(bars: Bars, frame: pd.DataFrame) -> None:
    """Dates as datetime64[ns] and float64 OHLCV equal to ``frame``'s, exactly."""
    assert bars.dates.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(bars.dates, frame.index.to_numpy("datetime64[ns]"))
    for name in ("open", "high", "low", "close", "volume"):
        column = getattr(bars, name)
        assert column.dtype == np.float64
        np.testing.assert_array_equal(column, frame[name].to_numpy(np.float64))


def scan(source: DataSource, executor: str = "thread") -> dict[str, tuple[str, dict]]:
    events: dict[str, tuple[str, dict]] = {}
    Scanner(source, executor=executor).run(
        lambda e: events.__setitem__(e.symbol, (e.kind, {k: v for k, v in e.data.items()
                                                         if k not in VOLATILE})))
    return events


def run_python(code: str, *args: object, **kwargs) -> subprocess.Popen:
    kwargs.setdefault("text", True)
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


# --- writes --------------------------------------------------------------------------------

def test_a_written_symbol_reads_back_exactly_read_only_and_as_a_source(store: BarStore):
    given = frames(3)
    report = store.write(given)
    assert report.written == {s: 250 for s in given} and not report.refused and report
    source = store.source()
    assert isinstance(source, DataSource) and isinstance(source, PlannableSource)
    assert source.name == "store" and source.symbols() == sorted(given)
    for symbol, frame in given.items():
        bars = source.bars(symbol)
        assert_same_bars(bars, frame)
        assert not bars.close.flags.writeable
        pd.testing.assert_frame_equal(source.history(symbol), bars.to_frame())


def test_append_adds_only_bars_after_the_last_and_creates_new_symbols(store: BarStore):
    store.write({"ACME": daily_bars(250)})
    longer = daily_bars(260)
    changed = longer.copy()
    changed.iloc[:250, :] *= 2  # stored dates: ignored by an append, however they differ
    report = store.write({"ACME": changed, "NEW": daily_bars(220, seed=5)})
    assert report.written == {"ACME": 10, "NEW": 220}
    assert_same_bars(store.source().bars("ACME"), pd.concat([daily_bars(250), changed[250:]]))
    again = store.write({"ACME": changed})
    assert (again.written, again.unchanged, bool(again)) == ({}, ["ACME"], False)
    assert store.last_dates() == {"ACME": longer.index[-1], "NEW": daily_bars(220).index[-1]}
    stale = daily_bars(262)
    stale.iloc[5, 3] = np.nan  # an old row is not written, so not checked
    stale.iloc[261, 3] = -1.0
    [(_, reason)] = store.write({"ACME": stale}).refused
    assert reason == "BarStore: ACME row 262: close must be > 0"
    assert store.write({"ACME": stale.iloc[:261]}).written == {"ACME": 1}


def test_replace_makes_the_given_bars_the_whole_history(store: BarStore):
    store.write({"ACME": daily_bars(300)})
    shorter = daily_bars(210, start="2020-06-01", seed=9)
    assert store.write({"ACME": shorter}, mode="replace").written == {"ACME": 210}
    assert_same_bars(store.source().bars("ACME"), shorter)
    assert store.info().bars == 210


def test_delete_removes_bars_snapshot_and_universe_row(store: BarStore):
    store.write(frames(3))
    store.set_universe(pd.DataFrame({"symbol": ["S001"], "sector": ["Energy"]}))
    assert store.delete(["s001", "NOPE"]) == 1
    source = store.source()
    assert source.symbols() == ["S000", "S002"]
    with pytest.raises(DataError, match="StoreSource has no symbol 'S001'"):
        source.bars("S001")
    con = store.connection
    for table in ("bars", "snapshot", "universe"):
        assert con.sql(f"SELECT count(*) FROM {table} WHERE symbol = 'S001'").fetchall() == [(0,)]
    assert store.delete([]) == 0
    with pytest.raises(ValueError, match="a list of symbols"):
        store.delete("S000")


def test_unsorted_bars_are_stored_sorted_and_symbols_upper_cased(store: BarStore):
    frame = daily_bars(250)
    store.write({" acme ": frame.iloc[::-1]})
    assert_same_bars(store.source().bars("ACME"), frame)


def test_snapshot_and_universe_are_kept_at_write_time(store: BarStore):
    given = frames(4)
    store.write(given)
    store.write({"S000": daily_bars(251, seed=0)})
    source = store.source()
    snapshot = source.snapshot().set_index("symbol")
    assert list(source.snapshot().columns) == list(SNAPSHOT_COLUMNS)
    for symbol in given:
        expected = snapshot_from_bars(symbol, source.bars(symbol))
        assert snapshot.loc[symbol].to_dict() == {k: v for k, v in expected.items()
                                                  if k != "symbol"}
    universe = source.universe().set_index("symbol")
    bars = source.bars("S002")
    average = np.mean(bars.close[-20:] * bars.volume[-20:])
    assert universe.loc["S002", "avg_dollar_volume"] == average
    assert (universe.loc["S002", "name"], universe.loc["S002", "sector"]) == ("S002", "Unknown")


def test_set_universe_upserts_by_symbol_and_keeps_extra_columns(store: BarStore):
    store.write(frames(2))
    store.set_universe(pd.DataFrame({"Symbol": ["s000", "S001"], "Sector": ["Energy", "Utilities"],
                                     "market_cap": ["1e9", None], "Exchange": ["NYSE", "NASDAQ"]}))
    store.set_universe(pd.DataFrame({"symbol": ["S000"], "name": ["Acme Corp"]}))
    universe = store.source().universe().set_index("symbol")
    assert list(universe.reset_index().columns) == [*UNIVERSE_COLUMNS, "exchange"]
    assert universe.loc["S000", ["name", "sector", "exchange"]].tolist() == [
        "Acme Corp", "Energy", "NYSE"]
    assert universe.loc["S000", "market_cap"] == 1e9 and np.isnan(universe.loc["S001",
                                                                                "market_cap"])


@pytest.mark.parametrize(("frame", "message"), [
    (pd.DataFrame({"name": ["x"]}), "BarStore.set_universe needs a symbol column"),
    (pd.DataFrame({"symbol": ["A"], "close": [1.0]}), "the column names close are the store's"),
    (pd.DataFrame({"symbol": ["A", "B"], "market_cap": [1, "big"]}),
     "row 2: market_cap must be a finite number or empty"),
    (pd.DataFrame({"symbol": ["A", "B/C"]}), "row 2: BarStore: symbol 'B/C' must be"),
])
def test_bad_universe_rows_are_refused_naming_row_and_rule(store: BarStore, frame, message):
    with pytest.raises(ValueError, match=message):
        store.set_universe(frame)
    assert store.connection.sql("SELECT count(*) FROM universe").fetchall() == [(0,)]


# --- validation: every rule, with its message ---------------------------------------------

def broken(row: int, **cells: object) -> pd.DataFrame:
    frame = daily_bars(250).astype(object)
    for column, value in cells.items():
        frame.iloc[row - 1, frame.columns.get_loc(column)] = value
    return frame


def with_dates(dates: list[str]) -> pd.DataFrame:
    frame = daily_bars(250)
    frame.index = pd.DatetimeIndex(pd.to_datetime(dates + [str(d.date()) for d in
                                                           frame.index[len(dates):]]),
                                   name="date")
    return frame


RULES = [
    (broken(3, open=0.0), "row 3: open must be > 0"),
    (broken(4, high=-1.0), "row 4: high must be > 0"),
    (broken(5, low=-2.0), "row 5: low must be > 0"),
    (broken(6, close=-50.0), "row 6: close must be > 0"),
    (broken(7, volume=-1.0), "row 7: volume must be >= 0"),
    (broken(8, low=100.0, high=99.0), "row 8: high must be >= low"),
    (broken(9, low=60.0, close=70.0, high=80.0, open=55.0), "row 9: low must be <= open"),
    (broken(10, open=90.0), "row 10: open must be <= high"),
    (broken(11, close=1.0), "row 11: low must be <= close"),
    (broken(12, close=99.0), "row 12: close must be <= high"),
    (broken(13, close=np.nan), "row 13: close is empty"),
    (broken(14, volume=np.inf), "row 14: volume is not a finite number"),
    (broken(15, open="n/a"), "row 15: open is not a number"),
    (with_dates(["1899-12-29"]), "row 1: date must be in 1900-01-01..2100-12-31"),
    (daily_bars(250).set_axis(list(daily_bars(250).index[:-1]) + [daily_bars(250).index[0]])
     .rename_axis("date"), "row 250: date repeats row 1 (each date may appear once)"),
    (daily_bars(250).reset_index().assign(date=[None] + ["2023-01-03"] * 249),
     "row 1: date is empty"),
    (daily_bars(250).reset_index().assign(date=["soon"] * 250),
     "row 1: date is not a date like 2024-01-31 (250 of 250 rows)"),
    (daily_bars(MIN_BARS - 1), f": {MIN_BARS - 1} bars; a symbol needs at least {MIN_BARS}"),
    (daily_bars(250).drop(columns=["volume", "low"]), "lacks the columns low, volume"),
    (daily_bars(250).iloc[:0], ": no bars"),
    ("not bars", "must be a DataFrame of open, high, low, close, volume"),
]


@pytest.mark.parametrize(("bad", "message"), RULES)
def test_every_rule_refuses_the_symbol_with_its_message_and_writes_the_others(
        store: BarStore, bad, message):
    report = store.write({"GOOD": daily_bars(250), "BAD": bad})
    assert report.written == {"GOOD": 250}
    [(label, reason)] = report.refused
    assert label == "BAD" and reason.startswith("BarStore: BAD") and message in reason
    assert store.source().symbols() == ["GOOD"]
    assert store.connection.sql("SELECT count(*) FROM bars WHERE symbol = 'BAD'").fetchall() == [
        (0,)]


def test_an_append_that_leaves_too_few_bars_is_refused_and_one_that_adds_up_is_not(
        store: BarStore):
    report = store.write({"ACME": daily_bars(150)})
    assert report.refused == [("ACME", "BarStore: ACME: 150 bars; a symbol needs at least 200 "
                                       "(the indicators' longest look-back)")]
    store.write({"ACME": daily_bars(200)})
    assert store.write({"ACME": daily_bars(230)}).written == {"ACME": 30}


@pytest.mark.parametrize("symbol", ["", "  ", "A B", "A/B", "..", ".hidden", "A\\B", "x" * 65])
def test_symbols_that_cannot_name_a_file_are_refused(store: BarStore, symbol):
    [(label, reason)] = store.write({symbol: daily_bars(250)}).refused
    assert label == symbol and "must be 1-64 characters without spaces" in reason


def test_a_symbol_given_twice_in_other_cases_is_refused_once(store: BarStore):
    report = store.write({"acme": daily_bars(250), "ACME": daily_bars(250, seed=3)})
    assert report.written == {"ACME": 250}
    assert report.refused == [("ACME", "BarStore: ACME: symbol ACME is given twice")]


def test_write_refuses_an_unknown_mode_and_a_non_mapping(store: BarStore):
    with pytest.raises(ValueError, match="mode must be one of append, replace, not 'merge'"):
        store.write({}, mode="merge")
    with pytest.raises(ValueError, match="needs a mapping of symbol -> bars, not list"):
        store.write([daily_bars()])  # type: ignore[arg-type]


# --- transactions and generations ----------------------------------------------------------

def test_a_transaction_is_one_generation_and_an_exception_rolls_it_back(store: BarStore):
    before = store.info()
    with store.transaction() as tx:
        tx.write(frames(2))
        tx.write({"S000": daily_bars(260, seed=0)})
        tx.set_universe(pd.DataFrame({"symbol": ["S001"], "industry": ["Banks"]}))
    after = store.info()
    assert int(after.generation.split("-")[1]) == int(before.generation.split("-")[1]) + 1
    assert (after.symbols, after.bars) == (2, 510)
    with pytest.raises(RuntimeError, match="changed my mind"), store.transaction() as tx:
        tx.write({"S009": daily_bars(250)})
        tx.delete(["S000"])
        raise RuntimeError("changed my mind")
    assert store.info() == after
    assert sorted(p.name for p in read_dir(store.path).iterdir() if p.name.startswith("."))\
        == []


def test_a_source_reads_its_generation_until_refreshed(store: BarStore):
    store.write({"ACME": daily_bars(250)})
    source = store.source()
    store.write({"ACME": daily_bars(255)})
    assert len(source.bars("ACME")) == 250
    assert source.refresh() and len(source.bars("ACME")) == 255
    assert not source.refresh()


def test_a_source_keeps_reading_its_generation_after_writers_delete_it(store: BarStore):
    store.write({"ACME": daily_bars(250), "BETA": daily_bars(250, seed=1)})
    source = store.source()
    pickled = pickle.dumps(source)
    for n in (251, 252, 253):
        store.write({"ACME": daily_bars(n), "BETA": daily_bars(n, seed=1)})
    assert not (read_dir(store.path) / source.generation.name).exists()
    assert_same_bars(source.bars("BETA"), daily_bars(250, seed=1))
    worker = run_python("import pickle, sys\nsource = pickle.loads(sys.stdin.buffer.read())\n"
                        "print(len(source.bars('ACME')))", stdin=subprocess.PIPE, text=False)
    out, err = worker.communicate(pickled, timeout=60)
    assert out.decode().strip() == "253", err.decode()  # a worker reads the current one


def test_the_store_reopens_and_rebuilds_a_lost_read_folder(tmp_path: Path):
    path = tmp_path / "bars.duckdb"
    given = frames(5)
    with BarStore(path, create=True) as store:
        store.write(given)
        store.set_universe(pd.DataFrame({"symbol": ["S004"], "sector": ["Energy"]}))
    lost = StoreSource(path)
    expected = lost.universe()
    for entry in read_dir(path).iterdir():
        if entry.is_dir():
            for file in entry.iterdir():
                file.unlink()
            entry.rmdir()
    with BarStore(path) as store:
        assert store.info().symbols == 5
    source = StoreSource(path)
    assert source.generation.name != lost.generation.name
    pd.testing.assert_frame_equal(source.universe(), expected)
    for symbol, frame in given.items():
        assert_same_bars(source.bars(symbol), frame)


def test_sql_of_your_own_reaches_readers_after_a_rebuild(store: BarStore, tmp_path: Path):
    store.write(frames(2))
    store.connection.execute("DELETE FROM bars WHERE symbol = 'S001' AND date > '2023-12-01'")
    store.connection.execute("INSERT INTO bars SELECT '../S9', date, open, high, low, close, "
                             "volume FROM bars WHERE symbol = 'S000'")
    assert len(store.source().bars("S001")) == 250
    store.rebuild()
    source = store.source()
    assert source.symbols() == ["../S9", "S000", "S001"]
    assert_same_bars(source.bars("S001"), daily_bars(250, seed=1)[:"2023-12-01"])
    assert source.snapshot().set_index("symbol").loc["S001", "date"] == pd.Timestamp("2023-12-01")
    with pytest.raises(StoreError, match="the stored symbol '../S9' cannot name a file"):
        store.export(tmp_path / "out")


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: None, "must be an existing bar store, not .*: it does not exist \\(pass create"),
    (lambda p: p.write_text("date,close\n"), "must be a bar store \\(a DuckDB file\\)"),
    (lambda p: duckdb.connect(str(p)).execute("CREATE TABLE t (x INT)").close(),
     "a DuckDB file without the store's tables"),
    (lambda p: duckdb.connect(str(p)).close(), "is an empty DuckDB file \\(pass create=True"),
])
def test_opening_what_is_not_a_store_says_what_it_is(tmp_path: Path, make, message):
    path = tmp_path / "thing.duckdb"
    make(path)
    with pytest.raises(StoreError, match=message):
        BarStore(path)


def test_a_store_source_needs_a_store(tmp_path: Path):
    with pytest.raises(StoreError, match="StoreSource.path must be a bar store file.*not exist"):
        StoreSource(tmp_path / "none.duckdb")
    (tmp_path / "plain.duckdb").write_text("x")
    with pytest.raises(StoreError, match="has no plain.duckdb.read/CURRENT"):
        StoreSource(tmp_path / "plain.duckdb")


# --- reading: plan parts, pickling, export -----------------------------------------------

def test_plan_parts_cover_every_symbol_once_best_first_starting_small(tmp_path: Path):
    with BarStore(tmp_path / "bars.duckdb", create=True) as store:
        store.write(frames(600, n=200))
        source = store.source()
    parts = list(source.plan_parts())
    assert [len(p) for p in parts] == [256, 344]
    assert all(list(p.columns) == list(PLAN_COLUMNS) for p in parts)
    plan = pd.concat(parts, ignore_index=True)
    assert sorted(plan["symbol"]) == source.symbols()
    expected = prioritize(source.symbols(), source.snapshot())
    assert plan["symbol"].tolist() == expected["symbol"].tolist()


def test_bars_of_a_store_within_the_budget_are_views_of_its_mapping(store: BarStore):
    store.write(frames(3))
    generation = store.source().generation
    assert generation.mapped_reads
    bars = generation.bars("S001")
    assert_same_bars(bars, daily_bars(250, seed=1))
    shard = generation.shard(shard_of("S001", SHARDS))
    assert all(np.shares_memory(mine, whole) for mine, whole in zip(bars, shard, strict=True))
    assert not any(column.flags.writeable for column in bars)


def test_bars_of_a_store_past_the_budget_are_read_alike_even_once_deleted(store: BarStore,
                                                                         monkeypatch):
    expected = frames(40)
    store.write(expected)
    monkeypatch.setattr(store_layout, "MAPPED_BUDGET", 0)
    generation = store.source().generation
    assert not generation.mapped_reads
    shutil.rmtree(generation.directory)  # as the writer prunes an old generation
    for symbol, frame in expected.items():
        bars = generation.bars(symbol)
        assert_same_bars(bars, frame)
        shard = generation.shard(shard_of(symbol, SHARDS))
        assert not any(np.shares_memory(mine, whole) for mine, whole
                       in zip(bars, shard, strict=True))
        assert not any(column.flags.writeable for column in bars)


def test_a_shard_cut_short_is_named_when_read_past_the_budget(store: BarStore, monkeypatch):
    store.write(frames(3))
    monkeypatch.setattr(store_layout, "MAPPED_BUDGET", 0)
    generation = store.source().generation
    path = generation.directory / shard_name(shard_of("S001", SHARDS))
    os.truncate(path, path.stat().st_size // 4)
    with pytest.raises(StoreError, match=f"{path.name} ends before the bars"):
        generation.bars("S001")


def test_a_pickled_source_is_its_path_and_generation_only(store: BarStore):
    store.write(frames(40))
    source = store.source()
    source.bars("S001")
    pickled = pickle.dumps(source)
    assert len(pickled) < 400
    copy = pickle.loads(pickled)
    assert copy.generation.name == source.generation.name
    assert_same_bars(copy.bars("S007"), daily_bars(250, seed=7))


@pytest.mark.parametrize("format", ["csv", "parquet"])
def test_export_writes_files_file_source_reads_back_the_same(store: BarStore, tmp_path: Path,
                                                             format: str):
    given = frames(3)
    store.write(given)
    paths = store.export(tmp_path / "out", format=format)
    assert [p.name for p in paths] == [f"S00{i}.{format}" for i in range(3)]
    files = FileSource(tmp_path / "out")
    for symbol, frame in given.items():
        np.testing.assert_array_equal(files.bars(symbol).dates, frame.index.to_numpy())
        np.testing.assert_array_equal(files.bars(symbol).close, frame["close"].to_numpy())
    with pytest.raises(ValueError, match="format must be one of csv, parquet, not 'xlsx'"):
        store.export(tmp_path / "out", format="xlsx")


def test_info_counts_symbols_bars_dates_and_the_last_update(store: BarStore):
    empty = store.info()
    assert (empty.symbols, empty.bars, empty.first_date, empty.last_date) == (0, 0, None, None)
    store.write({"A": daily_bars(250), "B": daily_bars(200, start="2024-01-01")})
    info = store.info()
    assert (info.symbols, info.bars) == (2, 450)
    assert info.first_date == pd.Timestamp("2023-01-02")
    assert info.last_date == daily_bars(200, start="2024-01-01").index[-1]
    assert info.updated_at is not None and info.updated_at > empty.updated_at
    assert StoreSource(store.path).info() == info


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["append", "replace", "delete"]),
                          st.sampled_from(["A", "B", "C"]), st.integers(200, 230),
                          st.integers(0, 3)), min_size=1, max_size=5))
def test_any_sequence_of_writes_leaves_what_a_dict_of_frames_would(tmp_path_factory, steps):
    model: dict[str, pd.DataFrame] = {}
    with BarStore(tmp_path_factory.mktemp("h") / "bars.duckdb", create=True) as store:
        for action, symbol, n, seed in steps:
            frame = daily_bars(n, seed=seed)
            if action == "delete":
                assert store.delete([symbol]) == int(symbol in model)
                model.pop(symbol, None)
            elif action == "replace" or symbol not in model:
                store.write({symbol: frame}, mode=action)
                model[symbol] = frame
            else:
                store.write({symbol: frame})
                model[symbol] = pd.concat([model[symbol], frame[frame.index > model[symbol]
                                                                .index[-1]]])
        source = store.source()
        assert source.symbols() == sorted(model)
        for symbol, frame in model.items():
            assert_same_bars(source.bars(symbol), frame)


# --- across processes: executors, a killed writer, readers while appending -----------------

def test_a_process_executor_scan_of_a_store_matches_the_thread_scan(store: BarStore):
    store.write(frames(60))
    try:
        assert scan(store.source(), "process") == scan(store.source())
    finally:
        close_shared_workers()


KILLED_WRITER = r"""
import os, sys, time
sys.path.insert(0, "tests")
from helpers import daily_bars
from technic_panel.data import store_tx, store_write
from technic_panel.data.store import BarStore

path, point = sys.argv[1], sys.argv[2]

def hold(where):
    print(where, flush=True)
    time.sleep(60)

if point == "shards":
    write_table, written = store_write.write_table, []
    def counting(*args, **kwargs):
        written.append(1)
        if len(written) == 10:
            hold("shards")
        return write_table(*args, **kwargs)
    store_write.write_table = counting
if point == "committed":
    store_tx.publish = lambda *args: hold("committed")
with BarStore(path) as store, store.transaction() as tx:
    for batch in range(3):
        tx.write({f"N{batch}{i:03d}": daily_bars(250, seed=i) for i in range(100)})
        tx.write({f"S{i:03d}": daily_bars(251, seed=i) for i in range(30)})
        if point == "staged" and batch == 1:
            hold("staged")
"""


@pytest.mark.parametrize("point", ["staged", "shards", "committed"])
def test_a_writer_killed_mid_write_leaves_the_previous_state_exactly(tmp_path: Path, point):
    path = tmp_path / "bars.duckdb"
    with BarStore(path, create=True) as store:
        store.write(frames(30))
        store.set_universe(pd.DataFrame({"symbol": ["S001"], "sector": ["Energy"]}))
        before = store.info()
    expected = StoreSource(path)
    writer = run_python(KILLED_WRITER, path, point)
    assert writer.stdout.readline().strip() == point, writer.stderr.read()
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    source = StoreSource(path)
    assert source.generation.name == before.generation
    pd.testing.assert_frame_equal(source.universe(), expected.universe())
    for symbol in expected.symbols():
        assert_same_bars(source.bars(symbol), expected.history(symbol))
    with BarStore(path) as store:
        after = store.info()
        rows = store.connection.sql("SELECT count(*) FROM bars").fetchall()[0][0]
    if point == "committed":  # the commit happened: opening the store finishes publishing it
        assert (after.symbols, after.bars, rows) == (330, 330 * 250 + 30, 330 * 250 + 30)
    else:
        assert (after.symbols, after.bars, after.generation, rows) == (
            30, 30 * 250, before.generation, 30 * 250)
    assert [p.name for p in read_dir(path).iterdir() if p.name.startswith(".")] == []


def test_a_second_writer_process_is_refused_naming_the_rule(store: BarStore):
    child = run_python("import sys\nfrom technic_panel.data import BarStore\n"
                       "BarStore(sys.argv[1])", store.path)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 1
    assert "is open for writing in another process; one writer at a time" in err


READER = r"""
import json, sys
from pathlib import Path
import pandas as pd
from technic_panel.data import StoreSource

path, log, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
with log.open("a") as out:
    while not stop.exists():
        try:
            source = StoreSource(path)
            snapshot = source.snapshot().set_index("symbol")["date"]
            lasts = {str(source.bars(s).dates[-1]) for s in source.symbols()}
            counts = {len(source.bars(s)) for s in source.symbols()}
            agrees = all(pd.Timestamp(source.bars(s).dates[-1]) == snapshot[s]
                         for s in source.symbols())
            row = {"generation": source.generation.name, "lasts": sorted(lasts),
                   "counts": sorted(counts), "agrees": agrees}
        except Exception as exc:
            row = {"error": repr(exc)}
        out.write(json.dumps(row) + "\n")
        out.flush()
"""


def test_a_reader_process_keeps_reading_consistent_generations_while_one_writer_appends(
        tmp_path: Path):
    path, log, stop = tmp_path / "bars.duckdb", tmp_path / "reads.jsonl", tmp_path / "stop"
    with BarStore(path, create=True) as store:
        store.write(frames(40, n=250))
        reader = run_python(READER, path, log, stop)
        try:
            wait_until(lambda: log.exists() and log.read_text().count("\n") >= 1, timeout=60)
            for n in range(251, 256):
                assert store.write(frames(40, n=n)).written == {f"S{i:03d}": 1
                                                                for i in range(40)}
                name = store.info().generation
                wait_until(lambda name=name: name in log.read_text(), timeout=30)
        finally:
            stop.touch()
            reader.wait(60)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [row for row in rows if "error" in row] == []
    assert all(len(row["lasts"]) == 1 and len(row["counts"]) == 1 and row["agrees"]
               for row in rows)
    by_generation = {row["generation"]: row["counts"][0] for row in rows}
    assert len(by_generation) == 6
    assert sorted(by_generation.values()) == list(range(250, 256))
