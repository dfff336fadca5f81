"""SyntheticSource: a deterministic, plausible, lazily generated universe.

Besides its statistical character: the universe of N symbols is the first N of any
larger one with the same seed; it is generated in chunks only when asked for, held in
a bounded process-wide cache, and a symbol generated alone equals the same symbol
generated with its chunk.
"""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from technic_panel.data import SNAPSHOT_COLUMNS, UNIVERSE_COLUMNS, DataError, DataSource
from technic_panel.data.base import OHLCV_COLUMNS, PLAN_COLUMNS, PlannableSource, snapshot_from_bars
from technic_panel.data.synthetic import CACHE, CHUNK, SECTORS, SyntheticSource

DIGEST_CODE = """
import hashlib
from technic_panel.data.synthetic import SyntheticSource
source = SyntheticSource(symbols={symbols}, seed={seed})
digest = hashlib.sha256(source.universe().to_csv().encode())
for symbol in source.universe()["symbol"]:
    for array in source.bars(symbol):
        digest.update(array.tobytes())
print(digest.hexdigest())
"""


def digest(source: SyntheticSource) -> str:
    """The same fingerprint DIGEST_CODE computes, in this process."""
    value = hashlib.sha256(source.universe().to_csv().encode())
    for symbol in source.universe()["symbol"]:
        for array in source.bars(symbol):
            value.update(array.tobytes())
    return value.hexdigest()


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    return SyntheticSource()


@pytest.fixture(scope="module")
def universe(source: SyntheticSource) -> pd.DataFrame:
    return source.universe()


@pytest.fixture(scope="module")
def stacked(source: SyntheticSource, universe: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every symbol's bars as (symbols, bars) arrays, through the public bars()."""
    all_bars = [source.bars(symbol) for symbol in universe["symbol"]]
    return {name: np.stack([getattr(b, name) for b in all_bars]) for name in OHLCV_COLUMNS}


def test_is_a_data_source(source: SyntheticSource):
    assert isinstance(source, DataSource) and isinstance(source, PlannableSource)
    assert source.name == "synthetic"
    assert "symbols=5000" in repr(source) and "seed=42" in repr(source)


# --- Determinism ----------------------------------------------------------------------------


def test_same_seed_gives_identical_data_in_a_fresh_process():
    small = SyntheticSource(symbols=300, seed=5)
    code = DIGEST_CODE.format(symbols=300, seed=5)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.strip() == digest(small)


def test_same_seed_gives_identical_bars_and_universe(source: SyntheticSource,
                                                     universe: pd.DataFrame):
    twin = SyntheticSource(symbols=5000, seed=42)
    pd.testing.assert_frame_equal(twin.universe(), universe)
    pd.testing.assert_frame_equal(twin.snapshot(), source.snapshot())
    for symbol in universe["symbol"][::250]:
        for mine, theirs in zip(twin.bars(symbol), source.bars(symbol), strict=True):
            np.testing.assert_array_equal(mine, theirs)


def test_different_seed_differs(universe: pd.DataFrame):
    other = SyntheticSource(symbols=5000, seed=43).universe()
    assert list(other["symbol"]) != list(universe["symbol"])
    assert not np.allclose(other["market_cap"], universe["market_cap"])
    first, second = SyntheticSource(symbols=200, seed=1), SyntheticSource(symbols=200, seed=2)
    shared = set(first.universe()["symbol"]) & set(second.universe()["symbol"])
    for symbol in shared:
        assert not np.array_equal(first.bars(symbol).close, second.bars(symbol).close)
    assert digest(first) != digest(second)


# --- Shape of the universe ------------------------------------------------------------------


def test_default_universe_has_5000_unique_symbols(universe: pd.DataFrame):
    assert list(universe.columns) == list(UNIVERSE_COLUMNS)
    assert len(universe) == 5000
    assert universe["symbol"].is_unique
    assert universe["symbol"].str.fullmatch(r"[A-Z]{2,5}").all()
    assert universe["name"].str.len().gt(0).all()


def test_eleven_sectors_with_their_industries(universe: pd.DataFrame):
    assert set(universe["sector"]) == set(SECTORS)
    assert len(SECTORS) == 11
    for sector, industry in zip(universe["sector"], universe["industry"], strict=True):
        assert industry in SECTORS[sector]
    assert universe["sector"].value_counts().min() >= 100


def test_market_caps_span_orders_of_magnitude(universe: pd.DataFrame):
    caps = universe["market_cap"]
    assert (caps > 0).all()
    assert caps.max() / caps.min() > 1e3
    assert caps.quantile(0.99) / caps.quantile(0.01) > 100
    assert (universe["avg_dollar_volume"] > 0).all()


def test_bars_are_504_business_days(source: SyntheticSource, universe: pd.DataFrame):
    bars = source.bars(universe["symbol"].iloc[0])
    assert len(bars) == 504
    assert bars.dates.dtype == np.dtype("datetime64[ns]")
    dates = pd.DatetimeIndex(bars.dates)
    assert dates.is_monotonic_increasing and dates.is_unique
    assert (dates.day_of_week < 5).all()
    for array in bars[1:]:
        assert array.dtype == np.float64 and len(array) == 504


def test_ohlc_is_consistent_for_every_symbol(stacked: dict[str, np.ndarray]):
    o, h, low, c, v = (stacked[name] for name in OHLCV_COLUMNS)
    assert o.shape == (5000, 504)
    for array in (o, h, low, c, v):
        assert np.isfinite(array).all()
    assert (h >= np.maximum(o, c)).all()
    assert (low <= np.minimum(o, c)).all()
    assert (low > 0).all()
    assert (v > 0).all()


def test_prices_are_plausible(stacked: dict[str, np.ndarray]):
    close = stacked["close"]
    daily = np.abs(np.diff(np.log(close), axis=1))
    assert 0.003 < np.median(daily) < 0.05
    assert np.percentile(daily, 99.99) < 0.5  # no absurd jumps
    assert (stacked["high"] / stacked["low"] < 1.5).all()


def test_avg_dollar_volume_is_the_last_20_days(universe: pd.DataFrame,
                                               stacked: dict[str, np.ndarray]):
    expected = (stacked["close"][:, -20:] * stacked["volume"][:, -20:]).mean(axis=1)
    np.testing.assert_allclose(universe["avg_dollar_volume"].to_numpy(), expected, rtol=1e-6)


# --- Snapshot and history -------------------------------------------------------------------


def test_snapshot_has_one_row_per_symbol(source: SyntheticSource, universe: pd.DataFrame,
                                         stacked: dict[str, np.ndarray]):
    snapshot = source.snapshot()
    assert list(snapshot.columns) == list(SNAPSHOT_COLUMNS)
    assert list(snapshot["symbol"]) == list(universe["symbol"])
    np.testing.assert_array_equal(snapshot["close"].to_numpy(), stacked["close"][:, -1])
    assert (snapshot["date"] == pd.Timestamp(source.bars(universe["symbol"][0]).dates[-1])).all()


def test_snapshot_agrees_with_snapshot_from_bars(source: SyntheticSource,
                                                 universe: pd.DataFrame):
    snapshot = source.snapshot().set_index("symbol")
    for symbol in universe["symbol"][::97]:
        expected = snapshot_from_bars(symbol, source.bars(symbol))
        row = snapshot.loc[symbol]
        for column in SNAPSHOT_COLUMNS[2:]:
            assert row[column] == pytest.approx(expected[column], rel=1e-9, abs=1e-12), column
        assert row["date"] == expected["date"]


def test_history_frame_matches_bars(source: SyntheticSource, universe: pd.DataFrame):
    symbol = universe["symbol"].iloc[17]
    frame, bars = source.history(symbol), source.bars(symbol)
    assert list(frame.columns) == list(OHLCV_COLUMNS)
    assert frame.index.name == "date"
    np.testing.assert_array_equal(frame.index.to_numpy(), bars.dates)
    for name in OHLCV_COLUMNS:
        np.testing.assert_array_equal(frame[name].to_numpy(), getattr(bars, name))


def test_unknown_symbol_is_a_data_error(source: SyntheticSource):
    with pytest.raises(DataError, match="'NOPE!'"):
        source.bars("NOPE!")
    with pytest.raises(DataError):
        source.history("NOPE!")


def test_callers_cannot_corrupt_the_source(source: SyntheticSource, universe: pd.DataFrame):
    symbol = universe["symbol"].iloc[3]
    bars = source.bars(symbol)
    original = bars.close[-1]
    try:
        bars.close[-1] = -1.0  # either refused (read-only arrays) or a private copy
    except ValueError:
        pass
    assert source.bars(symbol).close[-1] == original


# --- Injected failures and latency ----------------------------------------------------------


def failing(source: SyntheticSource) -> list[str]:
    failed = []
    for symbol in source.universe()["symbol"]:
        try:
            source.bars(symbol)
        except DataError as exc:
            assert "error_rate" in str(exc) and symbol in str(exc)
            failed.append(symbol)
    return failed


def test_error_rate_fails_about_that_share_the_same_symbols_each_time():
    flaky = SyntheticSource(symbols=2000, seed=42, error_rate=0.1)
    failed = failing(flaky)
    assert 140 <= len(failed) <= 260
    assert failing(flaky) == failed
    assert failing(SyntheticSource(symbols=2000, seed=42, error_rate=0.1)) == failed
    assert failing(pickle.loads(pickle.dumps(flaky))) == failed
    assert set(failed) <= set(failing(SyntheticSource(symbols=2000, seed=42, error_rate=0.2)))
    assert failing(SyntheticSource(symbols=2000, seed=42)) == []
    assert len(failing(SyntheticSource(symbols=200, seed=42, error_rate=1.0))) == 200


def test_latency_delays_each_bars_call():
    slow = SyntheticSource(symbols=50, seed=3, latency_ms=20)
    symbols = list(slow.universe()["symbol"][:12])
    durations = []
    for symbol in symbols:
        start = time.perf_counter()
        slow.bars(symbol)
        durations.append(time.perf_counter() - start)
    assert min(durations) >= 0.0095  # 20 ms with -50% jitter at most
    assert np.median(durations) <= 0.060
    fast = SyntheticSource(symbols=50, seed=3)
    fast.bars(symbols[0])
    start = time.perf_counter()
    for symbol in symbols:
        fast.bars(symbol)
    assert time.perf_counter() - start < 0.1


def test_io_bound_only_with_latency():
    assert SyntheticSource(symbols=10).io_bound is False
    assert SyntheticSource(symbols=10, latency_ms=0.5).io_bound is True


# --- Construction and pickling --------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("symbols", 0), ("symbols", 100_001), ("symbols", -5), ("bars", 29), ("bars", 5001),
    ("latency_ms", -1), ("latency_ms", 60_001), ("latency_ms", float("nan")),
    ("error_rate", -0.1), ("error_rate", 1.5),
])
def test_bad_arguments_name_the_field(field: str, value: float):
    with pytest.raises(ValueError, match=f"SyntheticSource.{field} must be") as info:
        SyntheticSource(**{field: value})
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(("field", "value"), [
    ("symbols", 2.5),
    ("bars", 100.5),
])
def test_non_integer_counts_are_refused(field: str, value: float):
    with pytest.raises(ValueError, match=f"SyntheticSource.{field}"):
        SyntheticSource(**{field: value})


def test_smaller_universes_and_histories():
    small = SyntheticSource(symbols=7, seed=1, bars=60)
    assert len(small.universe()) == 7
    symbol = small.universe()["symbol"][0]
    assert len(small.bars(symbol)) == 60
    assert len(small.snapshot()) == 7


def test_pickling_drops_the_arrays_but_gives_the_same_bars(source: SyntheticSource,
                                                           universe: pd.DataFrame):
    source.bars(universe["symbol"][0])  # the 5,000 x 504 x 5 arrays are loaded
    payload = pickle.dumps(source)
    assert len(payload) < 2_000  # the arrays are ~50 MB
    clone = pickle.loads(payload)
    assert repr(clone) == repr(source)
    for symbol in universe["symbol"][::500]:
        for mine, theirs in zip(clone.bars(symbol), source.bars(symbol), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    flaky = pickle.loads(pickle.dumps(SyntheticSource(symbols=5, latency_ms=3,
                                                      error_rate=0.5)))
    assert flaky.latency_ms == 3.0 and flaky.error_rate == 0.5 and flaky.io_bound


@pytest.mark.parametrize(("field", "value"), [
    ("seed", -1), ("latency_ms", "x"), ("error_rate", None),
])
def test_negative_seed_and_non_numbers_are_refused_naming_the_field(field: str, value):
    with pytest.raises(ValueError, match=f"SyntheticSource.{field} must be"):
        SyntheticSource(**{field: value})


# --- Lazy, prefix-stable generation ---------------------------------------------------------


@pytest.fixture
def cold_cache():
    """An empty chunk cache for the test (and its budget restored after)."""
    budget = CACHE.budget
    CACHE.clear()
    yield CACHE
    CACHE.budget = budget
    CACHE.clear()


def fingerprint(source: SyntheticSource, symbols: list[str]) -> list[np.ndarray]:
    return [array for symbol in symbols for array in source.bars(symbol)]


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 600), more=st.integers(1, 700), seed=st.integers(0, 2**32 - 1))
def test_a_universe_is_the_prefix_of_any_larger_one(cold_cache, n: int, more: int, seed: int):
    cold_cache.clear()
    small = SyntheticSource(n, seed=seed, bars=60)
    symbols, universe, snapshot = small.symbols(), small.universe(), small.snapshot()
    sample = symbols[:: max(1, n // 7)]
    bars = fingerprint(small, sample)
    cold_cache.clear()  # the larger universe is generated anew, not read back
    large = SyntheticSource(n + more, seed=seed, bars=60)
    assert large.symbols()[:n] == symbols
    pd.testing.assert_frame_equal(large.universe().iloc[:n], universe)
    pd.testing.assert_frame_equal(large.snapshot().iloc[:n], snapshot)
    for mine, theirs in zip(fingerprint(large, sample), bars, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_1000_symbols_are_the_first_1000_of_5000(universe: pd.DataFrame):
    small = SyntheticSource(1000, seed=42).universe()
    pd.testing.assert_frame_equal(small, universe.iloc[:1000])


def test_metadata_does_not_depend_on_the_number_of_bars():
    short, long = SyntheticSource(300, bars=60), SyntheticSource(300, bars=700)
    columns = ["symbol", "name", "sector", "industry", "market_cap"]
    pd.testing.assert_frame_equal(short.universe()[columns], long.universe()[columns])
    assert not np.array_equal(short.snapshot()["close"], long.snapshot()["close"])


def test_a_symbol_generated_alone_equals_it_generated_with_its_chunk(cold_cache):
    source = SyntheticSource(3 * CHUNK, seed=9, bars=257)
    symbols = source.symbols()[CHUNK - 3: CHUNK + 40: 3]
    alone = fingerprint(source, symbols)
    assert len(cold_cache) == 0, "bars() of an ungenerated chunk must not generate the chunk"
    list(source.plan_parts())
    assert len(cold_cache) == 3
    for mine, theirs in zip(fingerprint(source, symbols), alone, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_symbols_generate_no_bars_and_the_first_part_one_chunk(cold_cache):
    source = SyntheticSource(100_000, seed=3)
    symbols = source.symbols()
    assert len(symbols) == len(set(symbols)) == 100_000
    assert all(2 <= len(s) <= 5 and s.isalpha() and s.isupper() for s in symbols)
    assert len(cold_cache) == 0
    parts = source.plan_parts()
    first = next(parts)
    assert len(cold_cache) == 1 and len(first) == CHUNK
    assert first["symbol"].tolist() == symbols[:CHUNK]
    second = next(parts)
    assert second["symbol"].tolist() == symbols[CHUNK:3 * CHUNK]
    parts.close()


def test_planning_generates_only_the_universe_s_chunks(cold_cache):
    list(SyntheticSource(CHUNK + 1, seed=8).plan_parts())
    assert len(cold_cache) == 2


def test_plan_parts_cover_the_universe_once_with_universe_and_snapshot(source: SyntheticSource,
                                                                      universe: pd.DataFrame):
    parts = list(source.plan_parts())
    sizes = [len(part) for part in parts]
    assert sizes[0] <= 256 and sizes == sorted(sizes[:-1]) + sizes[-1:]
    for part in parts:
        assert list(part.columns) == list(PLAN_COLUMNS)
    rows = pd.concat(parts, ignore_index=True)
    assert rows["symbol"].tolist() == source.symbols() == universe["symbol"].tolist()
    pd.testing.assert_frame_equal(rows.loc[:, list(UNIVERSE_COLUMNS)], universe)
    pd.testing.assert_frame_equal(rows.loc[:, list(SNAPSHOT_COLUMNS)], source.snapshot())


def test_the_cache_stays_within_its_budget_and_bars_stay_right(cold_cache):
    source = SyntheticSource(6 * CHUNK, seed=4, bars=80)
    symbols = source.symbols()[::37]
    expected = fingerprint(source, symbols)  # each generated alone: nothing cached yet
    list(source.plan_parts())
    one_chunk = cold_cache.nbytes // 6
    cold_cache.clear()
    cold_cache.budget = 2 * one_chunk + one_chunk // 2
    universe = source.universe()
    assert len(universe) == 6 * CHUNK
    assert len(cold_cache) == 2 and cold_cache.nbytes <= cold_cache.budget
    for mine, theirs in zip(fingerprint(source, symbols), expected, strict=True):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("symbol", ["ab", "ABCDEF", "A1", "", "ÄÖ"])
def test_symbols_that_cannot_be_tickers_are_data_errors(source: SyntheticSource, symbol: str):
    with pytest.raises(DataError, match="no symbol"):
        source.bars(symbol)


def test_a_ticker_of_a_larger_universe_is_not_in_a_smaller_one():
    outside = SyntheticSource(2000, seed=42).symbols()[1500]
    with pytest.raises(DataError, match=repr(outside)):
        SyntheticSource(1000, seed=42).bars(outside)


def test_volatility_clusters(stacked: dict[str, np.ndarray]):
    """GARCH: a large move tends to follow a large move (squared returns autocorrelate)."""
    returns = np.diff(np.log(stacked["close"]), axis=1)
    returns -= returns.mean(axis=0)  # take the market and most of the sectors out
    squared = returns**2
    lag_corr = [np.corrcoef(row[1:], row[:-1])[0, 1] for row in squared[:500]]
    assert np.median(lag_corr) > 0.05
