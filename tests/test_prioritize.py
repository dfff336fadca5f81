"""prioritize: scan order, tiers and batches; and that the order finds the best symbols early."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_panel.data.base import SNAPSHOT_COLUMNS
from technic_panel.data.synthetic import SyntheticSource
from technic_panel.engine.indicators import latest_indicators
from technic_panel.engine.prioritize import (
    TIER_SHARES,
    prioritize,
    priority_scores,
    top_k_capture,
)
from technic_panel.engine.scoring import Strategy
from technic_panel.vocabulary import PRIORITY_TIERS


def toy_snapshot(n: int, seed: int = 0) -> pd.DataFrame:
    """A snapshot of ``n`` symbols S000.. with random but finite values."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "symbol": [f"S{i:03d}" for i in range(n)],
        "date": pd.Timestamp("2024-05-31"),
        "close": rng.uniform(5, 500, n),
        "change_pct": rng.normal(0, 2, n),
        "return_5d": rng.normal(0, 0.04, n),
        "return_21d": rng.normal(0, 0.08, n),
        "rel_volume": rng.lognormal(0, 0.4, n),
        "dollar_volume": rng.lognormal(16, 1.5, n),
    }).loc[:, list(SNAPSHOT_COLUMNS)]


def ranked_by_return_21d(n: int) -> pd.DataFrame:
    """Symbols R00.. whose only difference is return_21d, falling with the index."""
    return pd.DataFrame({
        "symbol": [f"R{i:02d}" for i in range(n)], "date": pd.Timestamp("2024-05-31"),
        "close": 50.0, "change_pct": 0.0, "return_5d": 0.0,
        "return_21d": np.linspace(0.2, -0.2, n), "rel_volume": 1.0, "dollar_volume": 1e7,
    })


@pytest.fixture(scope="module")
def synthetic() -> tuple[SyntheticSource, list[str], pd.Series]:
    """2,000 synthetic symbols and every one's final tech_rating after a full scan."""
    source = SyntheticSource(symbols=2000, seed=42)
    symbols = list(source.universe()["symbol"])
    scorer = Strategy().scorer()
    ratings = pd.Series({s: scorer.score(latest_indicators(source.bars(s), s))["tech_rating"]
                         for s in symbols})
    return source, symbols, ratings


# --- Order, tiers, batches ------------------------------------------------------------------


@pytest.mark.parametrize(("n", "high", "medium"), [(100, 10, 30), (2000, 200, 600), (10, 1, 3)])
def test_tiers_are_10_30_60_percent(n: int, high: int, medium: int):
    snapshot = toy_snapshot(n)
    order = prioritize(snapshot["symbol"], snapshot)
    counts = order["priority_tier"].value_counts()
    assert counts["high"] == high and counts["medium"] == medium
    assert counts["low"] == n - high - medium
    tiers = list(order["priority_tier"])
    assert tiers == sorted(tiers, key=PRIORITY_TIERS.index)  # high, then medium, then low


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 400), seed=st.integers(0, 1000))
def test_tiers_follow_the_shares_for_any_count(n: int, seed: int):
    order = prioritize(toy_snapshot(n, seed)["symbol"], toy_snapshot(n, seed))
    high = int(np.ceil(TIER_SHARES[0] * n))
    medium = int(np.ceil(TIER_SHARES[1] * n))
    expected = ["high"] * high + ["medium"] * medium
    expected += ["low"] * (n - len(expected))
    assert order["priority_tier"].tolist() == expected[:n]


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_ranking_a_subset_against_a_wider_snapshot_keeps_the_full_order(data):
    """What progressive planning relies on: known symbols ranked with every row seen."""
    snapshot = toy_snapshot(120, seed=data.draw(st.integers(0, 100)))
    subset = data.draw(st.lists(st.sampled_from(list(snapshot["symbol"])), unique=True,
                                min_size=1))
    full = prioritize(snapshot["symbol"], snapshot)["symbol"].tolist()
    ranked = prioritize(subset, snapshot)["symbol"].tolist()
    assert ranked == [symbol for symbol in full if symbol in set(subset)]


@pytest.mark.parametrize(("n", "batch_size"), [(2000, 50), (101, 10), (7, 1), (5, 50)])
def test_batches_are_1_based_contiguous_and_full(n: int, batch_size: int):
    snapshot = toy_snapshot(n)
    order = prioritize(snapshot["symbol"], snapshot, batch_size=batch_size)
    batches = order["batch_number"].to_numpy()
    assert batches[0] == 1
    assert set(np.diff(batches)) <= {0, 1}
    sizes = order.groupby("batch_number").size()
    assert list(sizes.index) == list(range(1, -(-n // batch_size) + 1))
    assert (sizes.iloc[:-1] == batch_size).all() and 1 <= sizes.iloc[-1] <= batch_size


def test_every_symbol_exactly_once():
    snapshot = toy_snapshot(300)
    given = list(snapshot["symbol"]) + ["S010", "S020", "EXTRA", "EXTRA"]
    order = prioritize(given, snapshot)
    assert order["symbol"].is_unique
    assert set(order["symbol"]) == set(given)
    assert len(order) == 301
    assert list(order.columns) == ["symbol", "priority_score", "priority_tier", "batch_number"]


def test_order_is_by_falling_priority_score():
    snapshot = toy_snapshot(500)
    order = prioritize(snapshot["symbol"], snapshot)
    scores = order["priority_score"].to_numpy()
    assert (np.diff(scores) <= 0).all()
    expected = priority_scores(snapshot).reindex(order["symbol"]).to_numpy()
    np.testing.assert_allclose(scores, expected)


def test_higher_recent_return_is_scanned_sooner():
    snapshot = ranked_by_return_21d(20)
    shuffled = list(np.random.default_rng(1).permutation(snapshot["symbol"]))
    order = prioritize(shuffled, snapshot)
    assert list(order["symbol"]) == list(snapshot["symbol"])


def test_missing_symbols_go_last_in_the_given_order():
    snapshot = toy_snapshot(50)
    given = ["ZZZ", *snapshot["symbol"][:25], "AAA", *snapshot["symbol"][25:], "MMM"]
    order = prioritize(given, snapshot)
    assert list(order["symbol"].iloc[-3:]) == ["ZZZ", "AAA", "MMM"]
    assert order["priority_score"].iloc[-3:].isna().all()
    assert order["priority_score"].iloc[:-3].notna().all()


def test_without_a_snapshot_the_given_order_is_kept():
    given = ["C", "A", "B", "D"]
    for snapshot in (None, toy_snapshot(0)):
        order = prioritize(given, snapshot, batch_size=2)
        assert list(order["symbol"]) == given
        assert list(order["batch_number"]) == [1, 1, 2, 2]


def test_ties_keep_the_given_order():
    snapshot = ranked_by_return_21d(6).assign(return_21d=0.0)
    given = ["R03", "R05", "R00", "R04", "R01", "R02"]
    assert list(prioritize(given, snapshot)["symbol"]) == given


def test_previous_ratings_shift_the_order():
    snapshot = ranked_by_return_21d(40)
    last = "R39"  # the weakest recent return
    ratings = pd.Series(50.0, index=snapshot["symbol"]) + np.linspace(-5, 5, 40)
    ratings[last] = 99.0
    plain = list(prioritize(snapshot["symbol"], snapshot)["symbol"])
    informed = list(prioritize(snapshot["symbol"], snapshot, ratings)["symbol"])
    assert plain.index(last) == 39
    assert informed.index(last) < 10
    assert informed != plain


def test_previous_ratings_for_some_symbols_only():
    snapshot = ranked_by_return_21d(30)
    ratings = pd.Series({"R29": 95.0, "R28": 10.0, "R27": 50.0, "GONE": 80.0})
    order = list(prioritize(snapshot["symbol"], snapshot, ratings)["symbol"])
    assert sorted(order) == sorted(snapshot["symbol"])
    assert order.index("R29") < order.index("R28")


def test_prioritize_is_deterministic():
    snapshot = toy_snapshot(400, seed=3)
    ratings = pd.Series(np.random.default_rng(3).uniform(0, 100, 400), index=snapshot["symbol"])
    first = prioritize(snapshot["symbol"], snapshot, ratings, batch_size=25)
    second = prioritize(list(snapshot["symbol"]), snapshot.copy(), ratings.copy(), batch_size=25)
    pd.testing.assert_frame_equal(first, second)


def test_infinite_and_missing_snapshot_values_do_not_break_the_order():
    snapshot = toy_snapshot(30)
    snapshot.loc[0, "rel_volume"] = 0.0  # log(0) = -inf
    snapshot.loc[1, "return_21d"] = np.nan
    snapshot.loc[2, "dollar_volume"] = np.inf
    order = prioritize(snapshot["symbol"], snapshot)
    assert order["priority_score"].notna().all() and np.isfinite(order["priority_score"]).all()
    assert sorted(order["symbol"]) == sorted(snapshot["symbol"])


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_1_is_rejected(batch_size: int):
    with pytest.raises(ValueError, match=f"batch_size must be >= 1, not {batch_size}"):
        prioritize(["A"], None, batch_size=batch_size)


# --- top_k_capture ---------------------------------------------------------------------------


def test_top_k_capture_toy_example():
    ratings = pd.Series({"A": 90, "B": 80, "C": 70, "D": 60, "E": 50,
                         "F": 40, "G": 30, "H": 20, "I": 10, "J": 0}, dtype=float)
    best_first = list("ABCDEFGHIJ")
    assert top_k_capture(best_first, ratings, k=2, fraction=0.2) == 1.0
    assert top_k_capture(best_first[::-1], ratings, k=2, fraction=0.2) == 0.0
    assert top_k_capture(list("AJBCDEFGHI"), ratings, k=2, fraction=0.2) == 0.5
    assert top_k_capture(list("JIHDGFECBA"), ratings, k=4, fraction=0.5) == 0.25  # D of ABCD
    assert top_k_capture(list("JIHGFEDCBA"), ratings, k=4, fraction=1.0) == 1.0


def test_top_k_capture_of_the_prioritised_order(synthetic):
    source, symbols, ratings = synthetic
    order = prioritize(symbols, source.snapshot())
    assert len(order) == 2000
    capture = top_k_capture(list(order["symbol"]), ratings)
    assert capture >= 0.6
    rng = np.random.default_rng(0)
    random = [top_k_capture(list(rng.permutation(symbols)), ratings) for _ in range(50)]
    assert random[0] < 0.45
    assert np.mean(random) < 0.3  # chance: k * fraction / k = 0.2 on average
    assert capture > max(random)


def test_top_tier_holds_better_rated_symbols(synthetic):
    source, symbols, ratings = synthetic
    order = prioritize(symbols, source.snapshot()).set_index("symbol")
    by_tier = ratings.groupby(order["priority_tier"].reindex(ratings.index)).mean()
    assert by_tier["high"] > by_tier["medium"] > by_tier["low"]
