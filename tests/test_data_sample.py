"""SampleSource: real split-adjusted prices from bokeh-sampledata, with hard-coded metadata."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from bokeh.sampledata import stocks

from technic_panel.data import SNAPSHOT_COLUMNS, UNIVERSE_COLUMNS, DataError, DataSource
from technic_panel.data.sample import COMPANIES, SampleSource

SHIPPED = [s for s in COMPANIES if hasattr(stocks, s)]


@pytest.fixture(scope="module")
def source() -> SampleSource:
    return SampleSource()


def test_is_a_data_source(source: SampleSource):
    assert isinstance(source, DataSource)
    assert source.name == "sample"
    assert SampleSource(name="real").name == "real"


def test_universe_lists_the_shipped_symbols_with_metadata(source: SampleSource):
    universe = source.universe()
    assert list(universe.columns) == list(UNIVERSE_COLUMNS)
    assert list(universe["symbol"]) == SHIPPED
    assert {"AAPL", "GOOG", "IBM", "MSFT"} <= set(SHIPPED)
    sectors = dict(zip(universe["symbol"], universe["sector"], strict=True))
    assert sectors["AAPL"] == sectors["MSFT"] == sectors["IBM"] == "Information Technology"
    assert sectors["GOOG"] == "Communication Services"
    assert universe["name"].str.len().gt(0).all()
    assert universe["industry"].str.len().gt(0).all()
    assert (universe["market_cap"] > 1e10).all()
    assert (universe["avg_dollar_volume"] > 1e8).all()


@pytest.mark.parametrize("symbol", SHIPPED)
def test_bars_are_sane_ohlcv(source: SampleSource, symbol: str):
    bars = source.bars(symbol)
    assert len(bars) > (100 if symbol == "FB" else 1000)
    assert bars.dates.dtype == np.dtype("datetime64[ns]")
    assert (np.diff(bars.dates) > np.timedelta64(0)).all()
    for array in (bars.open, bars.high, bars.low, bars.close, bars.volume):
        assert array.dtype == np.float64
        assert np.isfinite(array).all()
    assert (bars.low > 0).all()
    assert (bars.high >= bars.low).all()
    assert (bars.high >= np.maximum(bars.open, bars.close)).all()
    assert (bars.low <= np.minimum(bars.open, bars.close)).all()
    assert (bars.volume >= 0).all()


def test_aapl_has_more_than_1000_bars(source: SampleSource):
    bars = source.bars("AAPL")
    assert len(bars) > 1000
    assert bars.dates[0] == np.datetime64("2000-03-01")
    assert bars.dates[-1] == np.datetime64("2013-03-01")


@pytest.mark.parametrize(("symbol", "split"), [
    ("AAPL", "2000-06-21"), ("AAPL", "2005-02-28"), ("MSFT", "2003-02-18"),
])
def test_splits_are_adjusted_away(source: SampleSource, symbol: str, split: str):
    raw = getattr(stocks, symbol)
    day = raw["date"].index(split)
    raw_close = np.asarray(raw["close"])
    assert raw_close[day] / raw_close[day - 1] < 0.6  # the 2:1 split halves the raw price
    bars = source.bars(symbol)
    assert 0.85 < bars.close[day] / bars.close[day - 1] < 1.15
    assert 0.85 < bars.open[day] / bars.close[day - 1] < 1.15
    np.testing.assert_allclose(bars.close, raw["adj_close"], rtol=1e-9)
    np.testing.assert_allclose(bars.close * bars.volume, raw_close * np.asarray(raw["volume"]),
                               rtol=1e-9)


def test_snapshot_is_the_last_bar_of_each_symbol(source: SampleSource):
    snapshot = source.snapshot()
    assert list(snapshot.columns) == list(SNAPSHOT_COLUMNS)
    assert list(snapshot["symbol"]) == SHIPPED
    assert (snapshot["date"] == pd.Timestamp("2013-03-01")).all()
    assert snapshot.loc[0, "close"] == source.bars("AAPL").close[-1]


def test_history_matches_bars(source: SampleSource):
    history = source.history("IBM")
    pd.testing.assert_frame_equal(history, source.bars("IBM").to_frame())
    assert history.index.name == "date"


def test_unknown_symbol_is_named(source: SampleSource):
    with pytest.raises(DataError, match="SampleSource has no symbol 'TSLA' \\(it has AAPL"):
        source.bars("TSLA")


def test_bars_are_cached_and_read_only(source: SampleSource):
    bars = source.bars("MSFT")
    assert source.bars("MSFT") is bars
    with pytest.raises(ValueError, match="read-only"):
        bars.close[0] = 0.0


def test_pickle_round_trip(source: SampleSource):
    source.universe()
    clone = pickle.loads(pickle.dumps(source))
    assert not {"_lock", "_bars"} & set(source.__getstate__())
    assert repr(clone) == repr(source) == "SampleSource(name='sample')"
    np.testing.assert_array_equal(clone.bars("AAPL").close, source.bars("AAPL").close)
