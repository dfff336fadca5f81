"""Strategy and Scorer: ranges, selectivity, the guard, alpha, trade plans, no look-ahead.

Scored over the whole default synthetic universe (5,000 symbols, seed 42),
whose indicators are computed once per module.
"""

from __future__ import annotations

import collections
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_panel.data.base import Bars
from technic_panel.data.sample import SampleSource
from technic_panel.data.synthetic import SyntheticSource
from technic_panel.engine.evaluation import prefix, score_history, signal_table
from technic_panel.engine.indicators import YEAR, latest_indicators
from technic_panel.engine.scanner import Scanner
from technic_panel.engine.scoring import (
    EXTENSION_DAMPING,
    PROJECTIONS,
    STRATEGY_SETTINGS,
    Scorer,
    Strategy,
    StrategyError,
    alpha_score,
    components,
    squash,
)
from technic_panel.vocabulary import INDICATOR_COLUMNS, SCORE_COLUMNS, SIGNALS
from technic_panel.vocabulary import SCORE_COMPONENTS as COMPONENTS

SELL_SIDE = {"SELL", "STRONG_SELL"}
BUY_SIDE = {"BUY", "STRONG_BUY"}
WEIGHTS = {"trend": 0.30, "momentum": 0.25, "volume": 0.15, "volatility": 0.10,
           "breakout": 0.20}
THRESHOLDS = {"strong_buy_threshold": 80.0, "buy_threshold": 72.0, "sell_threshold": 28.0,
              "strong_sell_threshold": 20.0}
NO_GUARD = {"overbought_rsi": 100.0, "max_stretch_atr": 50.0}
"""Settings under which no finite stretch below 50 ATRs and no RSI short of 0 or 100 counts
as overextended: the plain weighted mean and the plain thresholds."""

MIRROR_TOLERANCE = 7.5
"""Largest |mirrored tech_rating - (100 - original)| accepted, in rating points, guard off.

Mirroring p -> K/p negates every log return, so each component c maps to about
1 - c, but not exactly: the volume component is exact (OBV and the day's
direction flip sign, relative volume is unchanged, and squash(-x) = 1 -
squash(x)); the others average prices arithmetically (SMA, ATR, the 52-week
range position (c-L)/(H-L) becomes L(H-c)/(c(H-L))) and 1/(1+r) - 1 != -r for
a 63-day return r, so a strong trend leaves a Jensen gap in each. The observed
worst total is 5 points (median 1), so 7.5 leaves 50% headroom yet catches a
component that stops mirroring (a flipped sign costs 2|c - 0.5|, tens of points).
The guard is off here: it is exactly symmetric in rsi_14 and stretch_atr (tested on
mirrored indicator values), but the mirrored bars' stretch is not exactly -stretch
(the same Jensen gap), which can carry a name just inside the guard across it.
"""


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    return SyntheticSource(symbols=5000, seed=42)


@pytest.fixture(scope="module")
def rows(source: SyntheticSource) -> dict[str, dict[str, float]]:
    return {s: latest_indicators(source.bars(s), s) for s in source.universe()["symbol"]}


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Strategy().scorer()


@pytest.fixture(scope="module")
def scores(rows, scorer: Scorer) -> dict[str, dict]:
    return {symbol: scorer.score(row) for symbol, row in rows.items()}


def mirrored(bars: Bars) -> Bars:
    """The price path reflected in log space: every up move becomes a down move."""
    k = float(np.median(bars.close)) ** 2  # keeps the mirrored prices at the same level
    return Bars(bars.dates, k / bars.open, k / bars.low, k / bars.high, k / bars.close,
                bars.volume.copy())


def scaled(bars: Bars, factor: float) -> Bars:
    return Bars(bars.dates, bars.open * factor, bars.high * factor, bars.low * factor,
                bars.close * factor, bars.volume.copy())


def with_signal(scores: dict[str, dict], signal: str) -> list[str]:
    return [symbol for symbol, row in scores.items() if row["signal"] == signal]


def rank_correlation(a, b) -> float:
    ranks = [np.argsort(np.argsort(np.asarray(x))) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


# --- Ranges and selectivity over the universe -------------------------------------------------


def test_every_row_has_the_score_columns(scores):
    for row in scores.values():
        assert list(row) == list(SCORE_COLUMNS)


def test_tech_rating_and_alpha_score_are_in_range(scores):
    ratings = np.array([row["tech_rating"] for row in scores.values()])
    alphas = np.array([row["alpha_score"] for row in scores.values()])
    assert len(ratings) == 5000
    assert ((ratings >= 0) & (ratings <= 100)).all()
    assert ((alphas >= 0) & (alphas <= 1)).all()
    for name in COMPONENTS:
        values = np.array([row[f"score_{name}"] for row in scores.values()])
        assert ((values >= 0) & (values <= 1)).all(), name
    assert ratings.std() > 5 and alphas.std() > 0.1  # both discriminate, not all near 50


def test_signals_are_selective(scores):
    counts = collections.Counter(row["signal"] for row in scores.values())
    assert set(counts) == set(SIGNALS)
    assert min(counts.values()) >= 25
    for signal, most in (("STRONG_BUY", 0.05), ("STRONG_SELL", 0.05), ("BUY", 0.15),
                         ("SELL", 0.15)):
        assert counts[signal] <= most * len(scores), (signal, counts)


def test_signal_and_side_follow_the_rating_and_the_guard(rows, scores, scorer: Scorer):
    cuts = (*THRESHOLDS.values(), 50.0)
    for symbol, row in scores.items():
        rating = row["tech_rating"]
        if any(math.isclose(rating, cut, abs_tol=0.005) for cut in cuts):
            continue  # rounded to 2 places: the unrounded rating may be on the other side
        hot, cold = scorer.overextended(rows[symbol])
        assert row["signal"] == scorer.signal_for(rating, hot=hot, cold=cold)
        assert row["side"] == ("long" if rating >= 50 else "short")


def test_no_parabolic_name_is_a_strong_buy(rows, scores):
    strong = with_signal(scores, "STRONG_BUY")
    assert len(strong) >= 25
    for symbol in strong:
        assert rows[symbol]["rsi_14"] < 70.0 and rows[symbol]["stretch_atr"] < 2.5, symbol
    for symbol in with_signal(scores, "STRONG_SELL"):
        assert rows[symbol]["rsi_14"] > 30.0 and rows[symbol]["stretch_atr"] > -2.5, symbol
    guarded = [s for s, row in scores.items()
               if row["tech_rating"] >= 80 and row["signal"] == "BUY"]
    assert guarded  # the guard did demote some on this universe, so the above can fail


def test_the_guard_caps_a_high_rating_at_buy(rows, scorer: Scorer):
    symbol, row = next((s, r) for s, r in rows.items()
                       if scorer.score(r)["signal"] == "STRONG_BUY")
    at_the_line = {**row, "rsi_14": 70.0}  # overextended, yet no extension to damp yet
    score = scorer.score(at_the_line)
    assert score["tech_rating"] >= 80 and score["signal"] == "BUY", (symbol, score)
    assert scorer.score({**row, "stretch_atr": 2.5})["signal"] == "BUY"


def test_overextension_pulls_the_rating_towards_50(rows, scorer: Scorer):
    row = next(r for r in rows.values() if 55 < r["rsi_14"] < 65 and 0 < r["stretch_atr"] < 2
               and scorer.score(r)["tech_rating"] > 60)
    calm = {**row, "rsi_14": 70.0}
    hot = {**row, "rsi_14": 95.0}
    assert components(hot)["momentum"] > components(calm)["momentum"]  # RSI is bullish ...
    assert scorer.score(hot)["tech_rating"] < scorer.score(calm)["tech_rating"]  # ... but late
    stretched = {**row, "stretch_atr": 10.0}
    assert 50 < scorer.score(stretched)["tech_rating"] < scorer.score(row)["tech_rating"]


def test_the_guard_is_symmetric_on_mirrored_indicators(rows, scorer: Scorer):
    for row in list(rows.values())[:300]:
        mirror = {**row, "rsi_14": 100.0 - row["rsi_14"], "stretch_atr": -row["stretch_atr"]}
        assert scorer.overextended(mirror) == scorer.overextended(row)[::-1]
        for bullish in (True, False):
            assert scorer.extension(mirror, bullish=not bullish) == pytest.approx(
                scorer.extension(row, bullish=bullish), abs=1e-12)


def test_rating_is_the_damped_weighted_mean_of_the_components(rows, scorer: Scorer):
    for symbol in list(rows)[:300]:
        row = rows[symbol]
        parts = components(row)
        raw = sum(WEIGHTS[n] * parts[n] for n in COMPONENTS) / sum(WEIGHTS.values())
        extension = scorer.extension(row, bullish=raw >= 0.5)
        expected = 100 * (0.5 + (raw - 0.5) / (1 + EXTENSION_DAMPING * extension))
        assert scorer.score(row)["tech_rating"] == pytest.approx(expected, abs=0.006)
        if extension == 0.0:
            assert scorer.score(row)["tech_rating"] == pytest.approx(100 * raw, abs=0.006)


# --- alpha_score ------------------------------------------------------------------------------


def test_alpha_score_is_risk_adjusted_six_month_momentum(source, rows, scores):
    for symbol in list(rows)[:200]:
        close = source.bars(symbol).close
        momentum = math.log(close[-6] / close[-127])  # 126 to 5 bars ago
        volatility = rows[symbol]["atr_pct"] / 100 * math.sqrt(121)
        expected = 0.5 + 0.5 * math.tanh(momentum / (1.5 * volatility))
        assert scores[symbol]["alpha_score"] == pytest.approx(expected, abs=6e-5), symbol


def test_alpha_score_carries_information_beyond_the_rating(scores):
    ratings = [row["tech_rating"] for row in scores.values()]
    alphas = [row["alpha_score"] for row in scores.values()]
    rho = rank_correlation(ratings, alphas)
    assert 0.3 <= rho <= 0.8, rho  # related (both read trends), yet not the same ranking


# --- Invariance and mirroring -----------------------------------------------------------------


def test_scaling_prices_leaves_the_scores_unchanged(source, scores, scorer: Scorer):
    for symbol in list(scores)[::25]:
        moved = scorer.score(latest_indicators(scaled(source.bars(symbol), 7.3), symbol))
        original = scores[symbol]
        assert moved["tech_rating"] == pytest.approx(original["tech_rating"], abs=0.011)
        assert moved["alpha_score"] == pytest.approx(original["alpha_score"], abs=1.1e-4)
        assert moved["reward_risk"] == pytest.approx(original["reward_risk"], abs=0.011)
        assert moved["entry"] == pytest.approx(7.3 * original["entry"], abs=5e-4)


@pytest.mark.parametrize(("signal", "other_side"), [
    ("STRONG_BUY", SELL_SIDE), ("STRONG_SELL", BUY_SIDE),
])
def test_mirroring_a_trend_moves_the_signal_to_the_other_side(source, rows, signal, other_side):
    unguarded = Strategy(**NO_GUARD).scorer()
    symbols = [s for s, row in rows.items() if unguarded.score(row)["signal"] == signal]
    assert len(symbols) >= 50
    gaps, alpha_gaps = [], []
    for symbol in symbols:
        original = unguarded.score(rows[symbol])
        mirror = unguarded.score(latest_indicators(mirrored(source.bars(symbol)), symbol))
        assert mirror["signal"] in other_side, (symbol, original, mirror)
        assert mirror["side"] != original["side"]
        gaps.append(mirror["tech_rating"] - (100.0 - original["tech_rating"]))
        alpha_gaps.append(mirror["alpha_score"] - (1.0 - original["alpha_score"]))
    gaps = np.abs(gaps)
    assert gaps.max() <= MIRROR_TOLERANCE
    assert np.median(gaps) <= 2.0
    assert np.median(np.abs(alpha_gaps)) <= 0.05  # the same Jensen gap, in the ATR


def test_mirroring_flips_the_volume_component_exactly(source, scores):
    for symbol in with_signal(scores, "STRONG_BUY")[:200]:
        bars = source.bars(symbol)
        original = components(latest_indicators(bars))
        mirror = components(latest_indicators(mirrored(bars)))
        assert mirror["volume"] == pytest.approx(1.0 - original["volume"], abs=1e-9)
        assert mirror["trend"] < 0.5 < original["trend"]


def test_squash_is_antisymmetric_about_one_half():
    for x in (-5.0, -0.3, 0.0, 0.7, 12.0):
        assert squash(-x) == pytest.approx(1.0 - squash(x), abs=1e-15)
        assert 0.0 <= squash(x) <= 1.0
    assert squash(0.0) == 0.5


# --- Strategy validation ----------------------------------------------------------------------


@pytest.mark.parametrize(("thresholds", "field"), [
    ({"buy_threshold": 85.0}, "buy_threshold"),  # buy above strong_buy
    ({"sell_threshold": 75.0}, "sell_threshold"),  # sell above buy
    ({"strong_sell_threshold": 30.0}, "strong_sell_threshold"),  # strong_sell above sell
    ({"buy_threshold": 80.0}, "buy_threshold"),  # equal to strong_buy
    ({"strong_sell_threshold": 28.0}, "strong_sell_threshold"),  # equal to sell
    ({"strong_buy_threshold": 70.0}, "strong_buy_threshold"),  # strong_buy below buy
    ({"strong_buy_threshold": 10.0, "buy_threshold": 20.0, "sell_threshold": 30.0,
      "strong_sell_threshold": 40.0}, "sell_threshold"),  # reversed: the later of the first
])
def test_thresholds_must_be_ordered(thresholds: dict[str, float], field: str):
    strategy = Strategy(**thresholds)
    rule = "strong_sell_threshold < sell_threshold < buy_threshold < strong_buy_threshold"
    for check in (strategy.validate, strategy.scorer):
        with pytest.raises(StrategyError, match=rule) as info:
            check()
        assert info.value.field == field
        for value in {**THRESHOLDS, **thresholds}.values():
            assert str(value) in str(info.value)


def test_valid_custom_thresholds_are_accepted():
    strategy = Strategy(strong_buy_threshold=90, buy_threshold=55, sell_threshold=45,
                        strong_sell_threshold=10)
    assert strategy.validate() is strategy
    scorer = strategy.scorer()
    assert scorer.signal_for(56) == "BUY" and scorer.signal_for(89.9) == "BUY"
    assert scorer.signal_for(44) == "SELL" and scorer.signal_for(10) == "STRONG_SELL"


def test_all_zero_weights_are_rejected():
    strategy = Strategy(**{f"weight_{name}": 0 for name in COMPONENTS})
    with pytest.raises(StrategyError, match="weights.*must not all be 0") as info:
        strategy.validate()
    assert info.value.field == "weight_trend"
    with pytest.raises(ValueError, match="must not all be 0"):
        strategy.scorer()


def test_a_single_nonzero_weight_scores_that_component(rows):
    only_trend = Strategy(weight_trend=1, weight_momentum=0, weight_volume=0,
                          weight_volatility=0, weight_breakout=0, **NO_GUARD)
    row = next(iter(rows.values()))
    score = only_trend.score(row)
    assert score["tech_rating"] == pytest.approx(100 * components(row)["trend"], abs=0.006)


def test_max_target_below_target_is_rejected():
    with pytest.raises(StrategyError, match="max_target_atr") as info:
        Strategy(target_atr=5.0, max_target_atr=4.0).validate()
    assert "target_atr" in str(info.value) and "5.0" in str(info.value)
    assert "4.0" in str(info.value) and info.value.field == "max_target_atr"
    with pytest.raises(StrategyError, match="max_target_atr") as info:
        Strategy(target_atr=9.0).validate()
    assert info.value.field == "target_atr"  # the one changed from its default
    Strategy(target_atr=5.0, max_target_atr=5.0).validate()  # equal is fine


@pytest.mark.parametrize(("field", "value"), [
    ("weight_trend", -1), ("weight_breakout", 11), ("buy_threshold", 101),
    ("strong_sell_threshold", -0.5), ("stop_atr", 0), ("target_atr", 51),
    ("max_target_atr", 0.05), ("overbought_rsi", 49), ("max_stretch_atr", 0),
])
def test_parameter_bounds_name_field_and_value(field: str, value: float):
    with pytest.raises(ValueError) as info:
        Strategy(**{field: value})
    assert field in str(info.value) and str(value) in str(info.value)


def test_every_setting_has_a_label_a_slider_range_and_a_step():
    for name in STRATEGY_SETTINGS:
        parameter = Strategy.param[name]
        low, high = parameter.bounds
        soft_low, soft_high = parameter.softbounds
        assert parameter.label and parameter.label != name.replace("_", " ").capitalize()
        assert low <= soft_low < soft_high <= high, name
        assert soft_low <= parameter.default <= soft_high, name  # the default fits the slider
        assert 0 < parameter.step <= (soft_high - soft_low) / 10, name


# --- Weights ----------------------------------------------------------------------------------


def test_raising_weight_trend_raises_the_rating_when_trend_is_above_it(rows):
    plain = Strategy(**NO_GUARD).scorer()
    scores = {s: plain.score(row) for s, row in rows.items()}
    candidates = [s for s, row in scores.items()
                  if row["score_trend"] * 100 > row["tech_rating"] + 1 and row["side"] == "long"]
    assert len(candidates) >= 50
    heavy = Strategy(weight_trend=0.9, **NO_GUARD).scorer()
    for symbol in candidates:
        assert heavy.score(rows[symbol])["tech_rating"] > scores[symbol]["tech_rating"]
    below = [s for s, row in scores.items() if row["score_trend"] * 100 < row["tech_rating"] - 1]
    for symbol in below[:200]:
        assert heavy.score(rows[symbol])["tech_rating"] < scores[symbol]["tech_rating"]


# --- Trade plan -------------------------------------------------------------------------------


def reference_target(row: dict[str, float], *, long: bool, scorer: Scorer) -> float:
    """The docstring's rule in plain numpy: the first level past target_atr ATRs, capped."""
    close, atr, high, low = row["close"], row["atr_14"], row["high_52w"], row["low_52w"]
    if long:
        levels = np.array([row["bb_upper"], row["sma_50"], row["sma_200"], high,
                           *(high * (high / low) ** np.array(PROJECTIONS))]) - close
    else:
        levels = close - np.array([row["bb_lower"], row["sma_50"], row["sma_200"], low,
                                   *(low * (low / high) ** np.array(PROJECTIONS))])
    far = levels[levels >= scorer.target_atr * atr]
    reach = far.min() if far.size else scorer.target_atr * atr
    return min(reach, scorer.max_target_atr * atr)


def test_trade_plan_geometry(rows, scores, scorer: Scorer):
    for symbol, row in scores.items():
        entry, stop, target = row["entry"], row["stop"], row["target"]
        atr = rows[symbol]["atr_14"]
        assert entry == pytest.approx(rows[symbol]["close"], abs=5e-5)
        if row["side"] == "long":
            assert stop < entry < target, (symbol, row)
        else:
            assert 0 < target < entry < stop, (symbol, row)
        assert abs(entry - stop) == pytest.approx(scorer.stop_atr * atr, abs=2e-4)
        distance = abs(target - entry)  # each of target and entry is rounded by <= 5e-5
        assert scorer.target_atr * atr - 1e-4 <= distance, (symbol, row)
        assert distance <= scorer.max_target_atr * atr + 1e-4, (symbol, row)
        reach = distance / atr
        # reward_risk is rounded to 2 places; entry/stop/target to 4, so allow both roundings.
        slack = 0.005 + 2e-4 / abs(entry - stop) * (1 + reach / scorer.stop_atr)
        assert row["reward_risk"] == pytest.approx(abs(target - entry) / abs(entry - stop),
                                                   abs=slack)


def test_target_is_the_first_structure_level_past_the_least_distance(source, rows, scores,
                                                                      scorer: Scorer):
    for symbol in list(scores)[::5]:
        row, score = rows[symbol], scores[symbol]
        bars = source.bars(symbol)
        assert row["high_52w"] == bars.high[-YEAR:].max()
        assert row["low_52w"] == bars.low[-YEAR:].min()
        expected = reference_target(row, long=score["side"] == "long", scorer=scorer)
        assert abs(score["target"] - score["entry"]) == pytest.approx(expected, rel=1e-5,
                                                                      abs=2e-4)


def test_reward_risk_varies_with_the_structure(scores, scorer: Scorer):
    signalled = [row["reward_risk"] for row in scores.values() if row["signal"] != "HOLD"]
    counts = collections.Counter(signalled)
    floor = round(scorer.target_atr / scorer.stop_atr, 2)
    assert counts[floor] <= 0.05 * len(signalled), counts.most_common(3)
    assert counts.most_common(1)[0][1] <= 0.10 * len(signalled), counts.most_common(3)
    assert len(counts) >= 50 and np.std(signalled) > 0.3


def test_sell_rows_carry_a_coherent_short_plan(scores):
    sells = [row for row in scores.values() if row["signal"] in SELL_SIDE]
    assert len(sells) >= 50
    for row in sells:
        assert row["side"] == "short"
        assert 0 < row["target"] < row["entry"] < row["stop"], row
        assert row["reward_risk"] == pytest.approx(
            (row["entry"] - row["target"]) / (row["stop"] - row["entry"]), abs=0.01)


@pytest.mark.parametrize("thresholds", [
    {"strong_sell_threshold": 10, "sell_threshold": 20, "buy_threshold": 45,
     "strong_buy_threshold": 80},
    {"strong_sell_threshold": 10, "sell_threshold": 55, "buy_threshold": 70,
     "strong_buy_threshold": 80},
])
def test_trade_side_agrees_with_the_signal_for_any_valid_thresholds(rows, thresholds):
    scorer = Strategy(**thresholds).scorer()
    for row in rows.values():
        score = scorer.score(row)
        if score["signal"] in BUY_SIDE:
            assert score["side"] == "long", score
        if score["signal"] in SELL_SIDE:
            assert score["side"] == "short", score


def test_wider_stop_lowers_reward_risk(rows):
    row = next(iter(rows.values()))
    tight, wide = Strategy(stop_atr=1.0).score(row), Strategy(stop_atr=4.0).score(row)
    assert wide["reward_risk"] < tight["reward_risk"]
    assert abs(wide["stop"] - wide["entry"]) > abs(tight["stop"] - tight["entry"])


# --- Scorer and rescore ----------------------------------------------------------------------


def test_scorer_pickles_and_scores_identically(rows):
    scorer = Strategy(weight_trend=0.7, buy_threshold=65, stop_atr=1.5).scorer()
    clone = pickle.loads(pickle.dumps(scorer))
    assert type(clone) is Scorer
    for name in Scorer.__slots__:
        assert getattr(clone, name) == getattr(scorer, name)
    for row in list(rows.values())[:300]:
        assert clone.score(row) == scorer.score(row)


def test_strategy_score_equals_its_scorer(rows):
    strategy = Strategy(weight_volume=0.5)
    scorer = strategy.scorer()
    for row in list(rows.values())[:50]:
        assert strategy.score(row) == scorer.score(row)


def test_rescoring_a_result_row_equals_scoring_its_bars(source):
    results = []
    Scanner(source, symbols=list(source.universe()["symbol"][:150])).run(
        lambda event: results.append(event.data) if event.kind == "result" else None)
    assert len(results) == 150
    tuned = Strategy(weight_trend=1.0, weight_volume=0.0, strong_buy_threshold=70,
                     buy_threshold=60, overbought_rsi=80, stop_atr=1.5, target_atr=2.0)
    changed = 0
    for row in results:
        assert Strategy().rescore(row) == row  # the scan's own strategy: nothing moves
        again = tuned.rescore(row)
        from_bars = tuned.score(latest_indicators(source.bars(row["symbol"]), row["symbol"]))
        assert again == {**row, **from_bars}
        changed += again["signal"] != row["signal"]
    assert changed > 0


@pytest.mark.parametrize(("rating", "signal"), [
    (100.0, "STRONG_BUY"), (80.0, "STRONG_BUY"), (79.99, "BUY"), (72.0, "BUY"),
    (71.99, "HOLD"), (50.0, "HOLD"), (28.01, "HOLD"), (28.0, "SELL"), (20.01, "SELL"),
    (20.0, "STRONG_SELL"), (0.0, "STRONG_SELL"),
])
def test_signal_for_boundaries(scorer: Scorer, rating: float, signal: str):
    assert scorer.signal_for(rating) == signal
    capped = {"STRONG_BUY": "BUY", "STRONG_SELL": "SELL"}.get(signal, signal)
    assert scorer.signal_for(rating, hot=True, cold=True) == capped


# --- Degenerate and arbitrary indicators ------------------------------------------------------


def test_short_target_stays_above_zero(scorer: Scorer):
    plan = scorer.trade_plan({"close": 10.0, "atr_14": 4.0, "bb_lower": 2.0, "sma_50": 12.0,
                              "sma_200": 14.0, "high_52w": 20.0, "low_52w": 8.0}, long=False)
    assert plan["side"] == "short" and plan["stop"] > plan["entry"]
    assert 0.0 < plan["target"] < plan["entry"], plan


def test_long_stop_stays_above_zero(scorer: Scorer):
    plan = scorer.trade_plan({"close": 1.0, "atr_14": 2.0, "bb_upper": 2.0, "sma_50": 1.5,
                              "sma_200": 1.2, "high_52w": 2.0, "low_52w": 1.0}, long=True)
    assert plan["side"] == "long"
    assert plan["stop"] == pytest.approx(0.1)  # not 1 - 2 * 2 = -3
    assert plan["target"] == pytest.approx(1.0 + 3.0 * 2.0)  # no level 3 ATRs away: 3 ATRs
    assert plan["reward_risk"] == pytest.approx(round(6.0 / 0.9, 2))


@pytest.mark.parametrize(("close", "atr"), [(0.0, 1.0), (-10.0, 1.0), (10.0, 0.0)])
@pytest.mark.parametrize("long", [True, False])
def test_no_trade_plan_without_a_positive_close_and_atr(scorer: Scorer, close, atr, long):
    plan = scorer.trade_plan({"close": close, "atr_14": atr}, long=long)
    assert plan == {"side": "long" if long else "short", "entry": None, "stop": None,
                    "target": None, "reward_risk": None}


def test_scores_are_rounded_half_to_even_as_numpy_rounds(rows, scorer: Scorer):
    for row in rows.values():
        score, parts = scorer.score(row), components(row)
        assert [score[f"score_{name}"] for name in COMPONENTS] == [
            float(np.round(parts[name], 4)) for name in COMPONENTS]
        assert score["alpha_score"] == float(np.round(alpha_score(row), 4))


def test_a_tie_of_the_scaled_value_rounds_to_even(scorer: Scorer):
    row = {"close": 50.0, "atr_14": 100.0, "bb_lower": 40.0, "sma_50": 45.0, "sma_200": 48.0,
           "high_52w": 60.0, "low_52w": 30.0}
    plan = scorer.trade_plan(row, long=False)
    assert (plan["stop"], plan["target"]) == (250.0, 5.0)  # reward 45 (capped), risk 200
    assert plan["reward_risk"] == 0.22  # 22.5 hundredths to even; round(0.225, 2) is 0.23


def test_a_reward_risk_past_every_rounding_is_kept_as_it_is(scorer: Scorer):
    row = {"close": 1e-300, "atr_14": 1.0, "bb_upper": 2.0, "sma_50": 1.5, "sma_200": 1.2,
           "high_52w": 2.0, "low_52w": 1.0}
    plan = scorer.trade_plan(row, long=True)
    assert plan["target"] == 4.0  # the projection 2 * (2 / 1) ** 1, past 3 ATRs
    assert plan["reward_risk"] == 4.0 / (0.9 * 1e-300)  # the stop at a tenth of the entry


def test_a_trade_plan_that_would_overflow_is_no_plan(rows, scorer: Scorer):
    row = {**next(iter(rows.values())), "close": 1e308, "atr_14": 1e308}
    plan = scorer.trade_plan(row, long=False)
    assert plan["entry"] is None and plan["stop"] is None


def check_score(score: dict) -> None:
    """The contract of any score: ranges, finite numbers, a coherent plan when there is one."""
    assert 0.0 <= score["tech_rating"] <= 100.0, score
    assert 0.0 <= score["alpha_score"] <= 1.0, score
    assert score["signal"] in SIGNALS
    for name in COMPONENTS:
        assert 0.0 <= score[f"score_{name}"] <= 1.0, (name, score)
    numbers = [value for value in score.values() if isinstance(value, float)]
    assert all(math.isfinite(value) for value in numbers), score
    if score["entry"] is not None:
        assert min(score["entry"], score["stop"], score["target"]) > 0.0, score
        low, high = sorted((score["stop"], score["target"]))
        assert low <= score["entry"] <= high, score  # rounding may put one on the entry


DEGENERATE = {  # indicators that inconsistent or non-positive bars give, all finite
    "close above the 52-week high": {"range_pos_52w": 7.0, "bb_pct_b": 5.0, "rsi_14": 100.0,
                                     "high_52w": 1.0, "stretch_atr": 40.0},
    "close far below the low": {"range_pos_52w": -9.0, "bb_pct_b": -40.0, "rsi_14": 0.0,
                                "low_52w": 1e6, "stretch_atr": -1e6},
    "zero ATR": {"atr_14": 0.0, "atr_pct": 0.0, "macd_hist": 3.0, "roc_63": 0.0,
                 "stretch_atr": 0.0},
    "negative close": {"close": -50.0, "ema_20": -40.0, "atr_pct": -2.0, "low_52w": -60.0},
    "zero averages": {"sma_50": 0.0, "sma_200": 0.0, "ema_20": 0.0, "low_52w": 0.0},
    "negative ADX": {"adx_14": -400.0, "sma_50": 1e-3, "sma_200": 1e-6},
    "huge values": {"macd_hist": 1e308, "atr_14": 1e-308, "roc_63": 1e308, "atr_pct": 1e-308,
                    "obv_slope": -1e308, "rel_volume": 1e308, "roc_21": -1e308,
                    "roc_126": 1e308, "stretch_atr": 1e308, "high_52w": 1e308},
    "ruined": {"roc_126": -100.0, "roc_5": -100.0, "low_52w": -1.0, "high_52w": -2.0},
}


@pytest.mark.parametrize("case", list(DEGENERATE))
def test_scores_stay_in_range_on_degenerate_indicators(rows, scorer: Scorer, case: str):
    check_score(scorer.score({**next(iter(rows.values())), **DEGENERATE[case]}))


_FINITE = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(values=st.fixed_dictionaries({name: _FINITE for name in INDICATOR_COLUMNS}),
       settings_=st.fixed_dictionaries({
           "stop_atr": st.floats(0.1, 20), "max_stretch_atr": st.floats(0.1, 50),
           "overbought_rsi": st.floats(50, 100)}))
def test_any_finite_indicators_give_a_score_in_range(values, settings_):
    check_score(Strategy(**settings_).score(values))


def test_a_close_above_the_52_week_high_counts_as_at_the_high(rows):
    row = next(iter(rows.values()))
    at_high = components({**row, "range_pos_52w": 1.0})["breakout"]
    assert components({**row, "range_pos_52w": 7.0})["breakout"] == at_high


def test_alpha_score_is_neutral_without_a_risk_measure(rows):
    row = next(iter(rows.values()))
    assert alpha_score({**row, "atr_pct": 0.0}) == 0.5
    assert alpha_score({**row, "roc_126": -100.0}) == 0.5  # log of 0: neutral, not -inf


# --- Walk-forward: no look-ahead --------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_bars() -> Bars:
    return SampleSource().bars("IBM")


@settings(max_examples=25, deadline=None)
@given(where=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_the_score_at_day_t_ignores_every_bar_after_it(sample_bars: Bars, where: float,
                                                       seed: int):
    n = len(sample_bars)
    t = YEAR + int(where * (n - YEAR - 21))
    rng = np.random.default_rng(seed)
    moves = np.concatenate([np.ones(t + 1), rng.lognormal(0.0, 0.2, n - t - 1)])  # any future
    volume = np.concatenate([np.ones(t + 1), rng.uniform(0.0, 5.0, n - t - 1)])
    bars = sample_bars
    future = Bars(bars.dates, bars.open * moves, bars.high * moves, bars.low * moves,
                  bars.close * moves, bars.volume * volume)
    history = score_history(sample_bars, start=t, step=10**6)
    changed = score_history(future, start=t, step=10**6)
    assert history["t"].tolist() == changed["t"].tolist() == [t]
    columns = list(SCORE_COLUMNS)
    assert history[columns].to_dict("records") == changed[columns].to_dict("records")
    assert history[columns].iloc[0].to_dict() == Strategy().score(
        latest_indicators(prefix(sample_bars, t)))
    expected = sample_bars.close[t + 5] / sample_bars.close[t] - 1.0
    assert history["fwd_5"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert changed["fwd_5"].iloc[0] != history["fwd_5"].iloc[0]  # the future did change


def test_signal_table_counts_means_and_hit_rates(sample_bars: Bars):
    history = score_history(sample_bars, step=20)
    table = signal_table(history)
    assert list(table.index) == list(SIGNALS)
    assert table["count"].sum() == len(history) and table["share"].sum() == pytest.approx(1)
    for signal, day in history.groupby("signal"):
        up = (day["fwd_20"] > 0).mean()
        assert table.loc[signal, "mean_20d"] == pytest.approx(day["fwd_20"].mean())
        assert table.loc[signal, "hit_20d"] == pytest.approx(
            1 - (day["fwd_20"] >= 0).mean() if signal in SELL_SIDE else up)
