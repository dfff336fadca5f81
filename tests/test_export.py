"""The CSV of result rows: formula cells neutralised, figures rounded, RFC 4180 rows."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from technic_panel.streaming.export import DIGITS, FORMULA_PREFIXES, csv_safe, csv_text, rounded
from technic_panel.vocabulary import RESULT_COLUMNS


def read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_every_numeric_result_column_has_its_digits():
    text = {"symbol", "name", "sector", "industry", "priority_tier", "signal", "side"}
    assert set(RESULT_COLUMNS) - text - {"batch_number"} <= set(DIGITS)


def test_formula_text_is_prefixed_and_numbers_stay_numbers():
    frame = pd.DataFrame({"symbol": ["=1+1", "+A", "-B", "@C", "\tD", "\rE", "F-G"],
                          "change_pct": [-1.5, 2.0, -3.0, 0.0, 1.0, 1.0, 1.0]})
    safe = csv_safe(frame)
    assert list(safe["symbol"]) == ["'=1+1", "'+A", "'-B", "'@C", "'\tD", "'\rE", "F-G"]
    assert list(safe["change_pct"]) == list(frame["change_pct"])


def test_rounding_keeps_the_readers_digits_and_whole_numbers_for_money():
    frame = pd.DataFrame({"tech_rating": [71.23456], "alpha_score": [0.123456],
                          "market_cap": [758618963.55], "avg_dollar_volume_20": [np.nan],
                          "batch_number": [3.14159], "symbol": ["AAPL"]})
    assert read(csv_text(frame)) == [
        ["tech_rating", "alpha_score", "market_cap", "avg_dollar_volume_20", "batch_number",
         "symbol"],
        ["71.23", "0.1235", "758618964", "", "3.14159", "AAPL"]]
    assert rounded(frame)["market_cap"].dtype == "Int64"


def test_rounding_leaves_text_in_a_numeric_column_name_alone():
    frame = pd.DataFrame({"price": ["n/a"], "close": [None]})
    assert rounded(frame).equals(frame)


@given(st.lists(st.text(max_size=12), min_size=1, max_size=8))
def test_any_text_reads_back_as_written_once_neutralised(names):
    rows = read(csv_text(pd.DataFrame({"name": names})))
    assert rows[0] == ["name"]
    expected = [f"'{name}" if name.startswith(FORMULA_PREFIXES) else name for name in names]
    assert [row[0] if row else "" for row in rows[1:]] == expected
