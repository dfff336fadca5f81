"""Universes offline: pytickersymbols' indices with GICS sectors and Yahoo symbols, user lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytickersymbols import PyTickerSymbols

from technic_panel.data import FileSource, SyntheticSource
from technic_panel.data.synthetic import SECTORS
from technic_panel.data.universes import (
    UNIVERSE_FILE_COLUMNS,
    index_members,
    index_names,
    index_universe,
    load_universe,
    read_symbol_list,
    sector_for,
    write_universe_file,
)

US_INDICES = {"sp500": "S&P 500", "sp100": "S&P 100", "sp600": "S&P 600",
              "nasdaq100": "NASDAQ 100", "dow30": "DOW JONES"}
BIG_INDICES = ("sp500", "sp600", "sp100", "nasdaq100", "dow30", "ftse100", "eurostoxx50",
               "dax", "mdax", "nikkei225", "cac40")
SUFFIXES = {"dax": ".DE", "mdax": ".DE", "tecdax": ".DE", "sdax": ".DE", "cac40": ".PA",
            "ftse100": ".L", "nikkei225": ".T", "ibex35": ".MC", "aex": ".AS", "smi": ".SW",
            "omxs30": ".ST", "omxh25": ".HE", "bel20": ".BR"}


def companies(index: str) -> list[dict]:
    return list(PyTickerSymbols().get_stocks_by_index(index))


def test_every_index_pytickersymbols_ships_is_offered_unless_it_has_no_home_listing():
    shipped = PyTickerSymbols().get_all_indices()
    offered = {index_members(name).index for name in index_names()}
    assert offered <= set(shipped)
    assert set(US_INDICES) <= set(index_names())
    for index in set(shipped) - offered:  # CAC Mid 60 in pytickersymbols 1.17
        with pytest.raises(ValueError, match="use a file of symbols"):
            index_universe(index)


@pytest.mark.parametrize("name", index_names())
def test_each_index_is_a_universe_frame_with_gics_sectors(name):
    frame = index_universe(name)
    assert list(frame.columns) == list(UNIVERSE_FILE_COLUMNS)
    assert frame["symbol"].is_unique and frame["symbol"].is_monotonic_increasing
    assert set(frame["sector"]) <= {*SECTORS, "Unknown"}
    assert not set(frame["industry"]) & set(SECTORS)
    assert frame["market_cap"].isna().all()
    assert frame["name"].map(lambda text: isinstance(text, str) and text != "").all()


@pytest.mark.parametrize("name", BIG_INDICES)
def test_the_big_indices_map_nearly_every_member_to_a_sector(name):
    frame = index_universe(name)
    unknown = int((frame["sector"] == "Unknown").sum())
    assert unknown <= 0.02 * len(frame), frame[frame["sector"] == "Unknown"]
    assert frame["sector"].nunique() >= (6 if name == "dow30" else 9)


@pytest.mark.parametrize("name, index", US_INDICES.items())
def test_us_indices_keep_every_member_under_its_us_ticker_in_yahoo_spelling(name, index):
    members = index_members(name)
    assert members.index == index and members.skipped == ()
    assert len(members.frame) == len(companies(index))
    assert not members.frame["symbol"].str.contains(r"\.").any()


def test_class_shares_take_yahoos_dash_and_known_members_their_gics_sector():
    frame = index_universe("sp500").set_index("symbol")
    assert {"BRK-B", "BF-B"} <= set(frame.index) and "BRK.B" not in frame.index
    expected = {"AAPL": "Information Technology", "MSFT": "Information Technology",
                "JPM": "Financials", "XOM": "Energy", "NEE": "Utilities", "PLD": "Real Estate",
                "LIN": "Materials", "PG": "Consumer Staples", "AMZN": "Consumer Discretionary",
                "GOOGL": "Communication Services", "MMM": "Industrials", "JNJ": "Health Care"}
    assert frame.loc[list(expected), "sector"].to_dict() == expected


def test_labels_pool_across_indices_so_gics_wins_over_other_taxonomies():
    nasdaq = index_universe("nasdaq100").set_index("symbol")
    own = next(c for c in companies("NASDAQ 100") if c["symbol"] == "GOOGL")["industries"]
    assert "Communication Services" not in own  # NASDAQ 100 alone says "Technology"
    assert nasdaq.loc["GOOGL", "sector"] == "Communication Services"
    assert nasdaq.loc["NFLX", "sector"] == "Communication Services"


@pytest.mark.parametrize("name, suffix", SUFFIXES.items())
def test_other_indices_list_each_member_on_the_home_exchange(name, suffix):
    members = index_members(name)
    assert members.frame["symbol"].str.endswith(suffix).all()
    assert members.frame["symbol"].str.count(r"\.").eq(1).all()
    assert len(members.frame) + len(members.skipped) == len(companies(members.index))
    assert all(": " in reason for reason in members.skipped)


def test_airbus_doubled_suffix_is_read_as_its_xetra_listing():
    assert "AIR.DE" in set(index_universe("dax")["symbol"])


@pytest.mark.parametrize("spelling", ["sp500", "S&P 500", "SP-500", "s&p500"])
def test_an_index_answers_to_its_short_and_its_own_name(spelling):
    assert index_members(spelling).index == "S&P 500"


def test_dow_jones_is_dow30():
    assert index_members("dow30").index == index_members("DOW JONES").index == "DOW JONES"


def test_an_unknown_index_lists_the_names_there_are():
    with pytest.raises(ValueError, match=r"'sp400' is not an index .* sp500"):
        index_universe("sp400")


def test_sector_for_prefers_gics_names_then_other_taxonomies_then_keywords():
    assert sector_for(["Conglomerate", "Industrials"]) == "Industrials"
    assert sector_for(["Technology", "Communication Services"]) == "Communication Services"
    assert sector_for(["Consumer Non-Cyclicals", "Food & Tobacco"]) == "Consumer Staples"
    assert sector_for(["Semiconductor equipment"]) == "Information Technology"
    assert sector_for(["Property & Casualty Insurance"]) == "Financials"
    assert sector_for(["Residential REITs"]) == "Real Estate"
    assert sector_for(["Oil & Gas Exploration & Production"]) == "Energy"
    assert sector_for(["Renewable Electricity"]) == "Utilities"
    assert sector_for(["Construction Materials"]) == "Materials"
    assert sector_for(["Services"]) == sector_for([]) == "Unknown"


@given(st.lists(st.text(max_size=40), max_size=6))
def test_sector_for_always_answers_a_gics_sector_or_unknown(labels):
    assert sector_for(labels) in {*SECTORS, "Unknown"}


def test_a_plain_list_skips_blanks_comments_and_repeats(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("# my watch list\naapl\n\n  MSFT \nbrk-b\nAAPL\nsap.de\n")
    frame = read_symbol_list(path)
    assert frame["symbol"].tolist() == ["AAPL", "MSFT", "BRK-B", "SAP.DE"]


def test_a_bad_symbol_is_named_by_its_line(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("AAPL\n\nMS FT\n")
    with pytest.raises(ValueError, match=r"mine.txt line 3: a symbol is letters"):
        read_symbol_list(path)


@pytest.mark.parametrize("text, rule", [
    ("", "holds no symbols"), ("# only a comment\n\n", "holds no symbols"),
    ("ticker,name\nAAPL,Apple\n", "has no symbol column"),
])
def test_a_list_without_symbols_says_so(tmp_path, text, rule):
    path = tmp_path / "mine.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=rule):
        read_symbol_list(path)


def test_a_table_keeps_metadata_and_extra_columns_and_maps_sector_names(tmp_path):
    path = tmp_path / "mine.csv"
    pd.DataFrame({"Symbol": ["acme", "beta", "gamma"], "Sector": ["Technology", "Banks", None],
                  "name": ["Acme", "Beta", "Gamma"], "watch": [1, 2, 3]}).to_csv(path,
                                                                              index=False)
    frame = read_symbol_list(path)
    assert frame["symbol"].tolist() == ["ACME", "BETA", "GAMMA"]
    assert frame["sector"].tolist() == ["Information Technology", "Banks", "Unknown"]
    assert frame["watch"].tolist() == [1, 2, 3] and frame["name"].tolist()[0] == "Acme"


def test_a_parquet_list_with_symbols_as_its_index(tmp_path):
    path = tmp_path / "mine.parquet"
    pd.DataFrame({"symbol": ["7203", "AAPL"], "sector": ["Consumer Cyclicals", None]}
                 ).set_index("symbol").to_parquet(path)
    frame = read_symbol_list(path)
    assert frame["symbol"].tolist() == ["7203", "AAPL"]
    assert frame["sector"].tolist() == ["Consumer Discretionary", "Unknown"]


def test_an_unreadable_file_says_what_it_should_be(tmp_path):
    path = tmp_path / "mine.parquet"
    path.write_text("not parquet")
    with pytest.raises(ValueError, match=r"cannot be read \(.*\); give one symbol a line"):
        read_symbol_list(path)


def test_load_universe_reads_a_file_when_there_is_one_else_an_index(tmp_path):
    path = tmp_path / "dow30"
    path.write_text("IBM\n")
    assert load_universe(path)["symbol"].tolist() == ["IBM"]
    assert len(load_universe("dow30")) == 30
    with pytest.raises(ValueError, match="neither an existing file nor an index"):
        load_universe(tmp_path / "missing.txt")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_universe_file_gives_filesource_real_sectors(tmp_path, suffix):
    prices = tmp_path / "prices"
    prices.mkdir()
    synthetic = SyntheticSource(3, bars=60)
    for symbol, generated in zip(("AAPL", "JPM", "XOM"), synthetic.universe()["symbol"],
                                 strict=True):
        synthetic.history(generated).to_csv(prices / f"{symbol}.csv")
    path = write_universe_file(index_universe("sp500"), tmp_path / f"sp500{suffix}")
    universe = FileSource(prices, universe_path=path).universe().set_index("symbol")
    assert universe["sector"].to_dict() == {
        "AAPL": "Information Technology", "JPM": "Financials", "XOM": "Energy"}
    assert universe.loc["JPM", "name"] == "JPMorgan Chase"
    assert np.isnan(universe.loc["JPM", "market_cap"])


def test_a_universe_file_must_be_csv_or_parquet(tmp_path):
    with pytest.raises(ValueError, match=r"must end in .csv, .parquet or .pq"):
        write_universe_file(index_universe("dow30"), tmp_path / "dow.json")
    assert not list(Path(tmp_path).iterdir())
