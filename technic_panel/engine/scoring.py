"""Scores from indicators: tech_rating, alpha_score, signal and a trade plan.

Every component maps indicators to [0, 1] with ``squash(x) = 0.5 + 0.5 tanh(x)``,
so 0.5 is neutral and a mirrored price path (uptrend <-> downtrend) maps a
component ``c`` to about ``1 - c``. All inputs are ratios, so scaling every
price by a constant changes nothing.

- trend      = mean of squash(log(close/sma_50)/0.10), squash(log(close/sma_200)/0.20),
  squash(log(sma_50/sma_200)/0.10), squash(log(ema_20/sma_50)/0.06); its distance
  from 0.5 is then scaled by ADX conviction ``0.5 + 0.5 clip(adx_14/40, 0, 1)``.
- momentum   = mean of squash((rsi_14-50)/25), squash(macd_hist/atr_14/0.6), squash(roc_21/20).
- volume     = mean of squash(obv_slope/0.6) and squash(sign(change) (rel_volume-1)).
- volatility = risk-adjusted 63-day return, squash(roc_63 / (atr_pct sqrt 63)).
- breakout   = mean of range_pos_52w and Bollinger %B, each clipped to [0, 1].

Every component is in [0, 1] by construction, on any finite indicators, also those
of inconsistent bars (a close above the high, negative prices): each is a squash or
a clip, a ratio whose denominator is 0 counts as 0 and the log of a ratio that is
not positive counts as neutral, so no input raises or yields NaN.

Rating. ``raw = sum(w_i c_i) / sum(w_i)`` with the Strategy's weights, then
``tech_rating = 100 (0.5 + (raw - 0.5) / (1 + 4 extension))``, in [0, 100]. The
extension is measured on the side ``raw`` leans to: for a bullish raw score,
``max(rsi_14 - R, 0) / (100 - R) + max(stretch_atr - S, 0) / S``, with ``R`` =
``overbought_rsi``, ``S`` = ``max_stretch_atr`` and ``stretch_atr = (close - sma_20) /
atr_14``; for a bearish one the mirror, ``max((100 - R) - rsi_14, 0) / (100 - R) +
max(-S - stretch_atr, 0) / S``. A parabolic name's rating is thus pulled towards 50:
chasing it risks the snap back to its mean.

Signal. ``STRONG_BUY`` at or above ``strong_buy_threshold``, ``BUY`` at or above
``buy_threshold``, ``STRONG_SELL`` at or below ``strong_sell_threshold``, ``SELL`` at or
below ``sell_threshold``, ``HOLD`` between. The overextension guard: a name with
``rsi_14 >= R`` or ``stretch_atr >= S`` is never ``STRONG_BUY`` (such a rating gives
``BUY``), and one with ``rsi_14 <= 100 - R`` or ``stretch_atr <= -S`` never
``STRONG_SELL`` (``SELL``): parabolic moves, up or down, are not entries.

Alpha. ``alpha_score = squash(m / (1.5 v))``, in [0, 1]: risk-adjusted intermediate
momentum, the information the rating lacks (its longest look-backs are the 63-day
return and the moving averages). ``m = log((1 + roc_126/100) / (1 + roc_5/100))`` is
the log return from 126 to 5 bars ago (the latest week is left out, as short-term
moves tend to reverse), ``v = atr_pct/100 sqrt(121)`` the volatility over the same
121 bars from the ATR. A non-positive ratio or a zero ATR counts as 0 (neutral).

Trade plan. Long for buy signals and short for sell signals (a HOLD leans to its
nearer side); entry at the close; the stop ``stop_atr`` ATRs away; the target at the
first level of the price structure at least ``target_atr`` ATRs away, at
``target_atr`` ATRs if there is none, at most ``max_target_atr`` ATRs away. The levels
of a long are the upper Bollinger band, sma_50, sma_200 and the 52-week high above
the close, and past the high its projections ``high_52w (high_52w/low_52w)^f`` for f
in 1/8, 1/4, 1/2, 1 (a fraction of the year's range, in log terms, so a mirrored
chart has mirrored levels); a short's are the mirror: the lower band, the averages
and the 52-week low below the close, then ``low_52w (low_52w/high_52w)^f``. So
``reward_risk`` runs from ``target_atr/stop_atr`` to ``max_target_atr/stop_atr`` with
the structure. Neither the long stop nor the short target goes below a tenth of the
entry. Without a positive close and ATR (or should a price overflow or vanish in
floating point) there is no plan: entry, stop, target and reward_risk are None.
Ratings are rounded to 2 places, alpha_score and the components to 4, reward_risk to 2
(half to even on the value times 100 or 10,000, as numpy rounds);
prices are not rounded (a 4-place rounding would turn a sub-cent price into 0).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from math import copysign, isfinite, log, sqrt, tanh
from typing import Any

import param

from technic_panel.vocabulary import SCORE_COMPONENTS

STRATEGY_SETTINGS = (
    "weight_trend", "weight_momentum", "weight_volume", "weight_volatility", "weight_breakout",
    "strong_buy_threshold", "buy_threshold", "sell_threshold", "strong_sell_threshold",
    "overbought_rsi", "max_stretch_atr", "stop_atr", "target_atr", "max_target_atr",
)
"""The Strategy's Parameters, which are ScanConfig settings too (the same names)."""

EXTENSION_DAMPING = 4.0
"""How strongly overextension pulls tech_rating towards 50 (the 4 of the docstring)."""
ALPHA_SCALE = 1.5
"""Risk-adjusted 6-month momentum that maps alpha_score to squash(1) = 0.88."""
PROJECTIONS = (0.125, 0.25, 0.5, 1.0)
"""Fractions of the 52-week range (in log terms) projected past the extreme as targets."""

_PLAN_KEYS = ("side", "entry", "stop", "target", "reward_risk")
_SQRT_63, _SQRT_121 = sqrt(63.0), sqrt(121.0)
_INTEGRAL = 2.0 ** 52
"""From here on every float is a whole number: nothing is left to round."""


class StrategyError(ValueError):
    """Strategy settings that break a rule spanning several; ``field`` names one of them."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def squash(x: float) -> float:
    """Map any real number to (0, 1), 0 to 0.5, antisymmetric about it."""
    return 0.5 + 0.5 * tanh(x)


def _ratio(a: float, b: float) -> float:
    """Return ``a / b``, or 0 (neutral) when ``b`` is 0; an overflow gives an infinity."""
    return a / b if b != 0.0 else 0.0


def _log_ratio(a: float, b: float, scale: float) -> float:
    """Return ``squash(log(a / b) / scale)``; 0.5 (neutral) unless the ratio is positive."""
    ratio = _ratio(a, b)
    return squash(log(ratio) / scale) if ratio > 0.0 else 0.5


def _rounded(x: float, scale: float) -> float:
    """Return ``x`` rounded to ``1 / scale``, half to even on ``x * scale``, as numpy does.

    ``round(x, 2)`` rounds the exact binary value through a decimal conversion, at three
    times the cost; the two differ only where ``x * scale`` is a tie (0.225: numpy's and
    this 0.22, ``round`` 0.23). Past 2**52 (or a NaN) ``x`` is returned as is.
    """
    scaled = x * scale
    return round(scaled) / scale if -_INTEGRAL < scaled < _INTEGRAL else x


def _clip01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def _parts(ind: Mapping[str, float]) -> tuple[float, float, float, float, float]:
    """Return the component scores in the order of :data:`SCORE_COMPONENTS`.

    A live scan scores every symbol on every bar, so this is the formulas of the module
    docs as flat arithmetic on locals: the same operations in the same order.
    """
    close, atr, sma_50, sma_200 = ind["close"], ind["atr_14"], ind["sma_50"], ind["sma_200"]
    trend = (_log_ratio(close, sma_50, 0.10) + _log_ratio(close, sma_200, 0.20)
             + _log_ratio(sma_50, sma_200, 0.10) + _log_ratio(ind["ema_20"], sma_50, 0.06)) / 4
    conviction = 0.5 + 0.5 * _clip01(ind["adx_14"] / 40.0)
    momentum = (squash((ind["rsi_14"] - 50.0) / 25.0)
                + squash(_ratio(ind["macd_hist"], atr) / 0.6)
                + squash(ind["roc_21"] / 20.0)) / 3
    direction = copysign(1.0, ind["change_pct"])
    volume = (squash(ind["obv_slope"] / 0.6) + squash(direction * (ind["rel_volume"] - 1))) / 2
    return (0.5 + (trend - 0.5) * conviction, momentum, volume,
            squash(_ratio(ind["roc_63"], ind["atr_pct"] * _SQRT_63)),
            (_clip01(ind["range_pos_52w"]) + _clip01(ind["bb_pct_b"])) / 2)


def components(ind: Mapping[str, float]) -> dict[str, float]:
    """Return the five component scores in [0, 1] of one symbol's latest indicators."""
    return dict(zip(SCORE_COMPONENTS, _parts(ind), strict=True))


def alpha_score(ind: Mapping[str, float]) -> float:
    """Return risk-adjusted 6-month momentum, the last week left out, squashed to [0, 1]."""
    growth = _ratio(100.0 + ind["roc_126"], 100.0 + ind["roc_5"])
    momentum = log(growth) if growth > 0.0 else 0.0
    return squash(_ratio(momentum, ALPHA_SCALE * ind["atr_pct"] / 100.0 * _SQRT_121))


def _number(default: float, bounds: tuple[float, float], soft: tuple[float, float], step: float,
            label: str, doc: str) -> param.Number:
    return param.Number(default, bounds=bounds, softbounds=soft, step=step, label=label, doc=doc)


class Strategy(param.Parameterized):
    """The tunable weights, thresholds and trade-plan rules that turn indicators into scores.

    A scan scores thousands of symbols, so it calls :meth:`scorer` once and uses
    the returned plain-value :class:`Scorer`, which reads no Parameters.
    """

    weight_trend = _number(0.30, (0, 10), (0, 1), 0.05, "Trend weight",
                           "Weight of the trend component in tech_rating.")
    weight_momentum = _number(0.25, (0, 10), (0, 1), 0.05, "Momentum weight",
                              "Weight of the momentum component (RSI, MACD, 21-day return).")
    weight_volume = _number(0.15, (0, 10), (0, 1), 0.05, "Volume weight",
                            "Weight of the volume component (OBV slope, relative volume).")
    weight_volatility = _number(0.10, (0, 10), (0, 1), 0.05, "Risk-adjusted return weight",
                                "Weight of the risk-adjusted 63-day return.")
    weight_breakout = _number(0.20, (0, 10), (0, 1), 0.05, "Breakout weight",
                              "Weight of the position in the 52-week and Bollinger ranges.")
    strong_buy_threshold = _number(80.0, (0, 100), (50, 100), 1, "Strong buy at rating",
                                   "tech_rating at or above: STRONG_BUY (unless overextended).")
    buy_threshold = _number(72.0, (0, 100), (50, 100), 1, "Buy at rating",
                            "tech_rating at or above: BUY.")
    sell_threshold = _number(28.0, (0, 100), (0, 50), 1, "Sell at rating",
                             "tech_rating at or below: SELL.")
    strong_sell_threshold = _number(20.0, (0, 100), (0, 50), 1, "Strong sell at rating",
                                    "tech_rating at or below: STRONG_SELL (unless "
                                    "overextended).")
    overbought_rsi = _number(70.0, (50, 100), (60, 90), 1, "Overbought RSI",
                             "RSI at or above this (or at or below 100 minus it) is "
                             "overextended: no STRONG_BUY (STRONG_SELL), rating damped; "
                             "100 turns this guard off.")
    max_stretch_atr = _number(2.5, (0.1, 50), (0.5, 6), 0.1, "Max stretch (ATRs)",
                              "ATRs above (below) the 20-day mean at which a name is "
                              "overextended, as for overbought_rsi; 50 all but turns it off.")
    stop_atr = _number(2.0, (0.1, 20), (0.5, 5), 0.1, "Stop (ATRs)",
                       "Stop distance from entry, in ATRs.")
    target_atr = _number(3.0, (0.1, 50), (1, 10), 0.1, "Least target (ATRs)",
                         "The target is the first structure level at least this many ATRs "
                         "from entry.")
    max_target_atr = _number(8.0, (0.1, 100), (2, 20), 0.5, "Most target (ATRs)",
                             "Cap on the target distance from entry, in ATRs.")

    def validate(self) -> Strategy:
        """Check the rules that span several parameters; raise :class:`StrategyError`.

        Its ``field`` is the one of the clashing settings that was changed from its
        default (the flag the user typed), else the later one.
        """
        weights = [f"weight_{name}" for name in SCORE_COMPONENTS]
        if sum(getattr(self, name) for name in weights) <= 0:
            raise StrategyError(f"Strategy weights {', '.join(weights)} must not all be 0",
                                field=self._changed("weight_trend", "weight_trend"))
        names = ("strong_sell_threshold", "sell_threshold", "buy_threshold",
                 "strong_buy_threshold")
        values = [getattr(self, name) for name in names]
        for (below, low), (above, high) in itertools.pairwise(zip(names, values, strict=True)):
            if low >= high:
                raise StrategyError(f"Strategy thresholds must satisfy {' < '.join(names)}, "
                                    f"not {' / '.join(map(str, values))}",
                                    field=self._changed(below, above))
        if self.max_target_atr < self.target_atr:
            raise StrategyError(f"Strategy.max_target_atr must be >= target_atr "
                                f"({self.target_atr}), not {self.max_target_atr}",
                                field=self._changed("target_atr", "max_target_atr"))
        return self

    def _changed(self, first: str, second: str) -> str:
        """Return whichever of two settings alone differs from its default, else ``second``."""
        moved = [name for name in (first, second)
                 if getattr(self, name) != self.param[name].default]
        return moved[0] if len(moved) == 1 else second

    def scorer(self) -> Scorer:
        """Return a validated, frozen copy of these settings that scores quickly."""
        self.validate()
        return Scorer(**{name: getattr(self, name) for name in STRATEGY_SETTINGS})

    def score(self, ind: Mapping[str, float]) -> dict[str, float | str | None]:
        """Return :data:`SCORE_COLUMNS` for one symbol's latest indicators."""
        return self.scorer().score(ind)

    def rescore(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Return a result row re-scored under these settings from its indicator values.

        The row's indicators are those the scan computed, so this equals scoring the
        symbol's bars again, without fetching them: a changed strategy applies at once.
        """
        return {**row, **self.score(row)}


class Scorer:
    """A Strategy's values as plain floats: scoring without Parameter look-ups, picklable."""

    __slots__ = (*STRATEGY_SETTINGS, "_weights", "_weight_total")
    weight_trend: float
    weight_momentum: float
    weight_volume: float
    weight_volatility: float
    weight_breakout: float
    strong_buy_threshold: float
    buy_threshold: float
    sell_threshold: float
    strong_sell_threshold: float
    overbought_rsi: float
    max_stretch_atr: float
    stop_atr: float
    target_atr: float
    max_target_atr: float

    def __init__(self, **values: float) -> None:
        for name in STRATEGY_SETTINGS:
            setattr(self, name, float(values[name]))
        self._weights = tuple(getattr(self, f"weight_{name}") for name in SCORE_COMPONENTS)
        self._weight_total = sum(self._weights)

    def __getstate__(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in STRATEGY_SETTINGS}

    def __setstate__(self, state: dict[str, float]) -> None:
        Scorer.__init__(self, **state)

    def signal_for(self, rating: float, *, hot: bool = False, cold: bool = False) -> str:
        """Return the signal class of a tech_rating under these thresholds.

        ``hot`` (overextended upwards) caps it at BUY, ``cold`` (downwards) at SELL.
        """
        if rating >= self.strong_buy_threshold:
            return "BUY" if hot else "STRONG_BUY"
        if rating >= self.buy_threshold:
            return "BUY"
        if rating <= self.strong_sell_threshold:
            return "SELL" if cold else "STRONG_SELL"
        if rating <= self.sell_threshold:
            return "SELL"
        return "HOLD"

    def is_long(self, rating: float) -> bool:
        """Whether the trade plan for ``rating`` is long.

        Buy signals are long, sell signals short, and a HOLD leans to the side
        it is nearer (above or below the middle of the sell and buy thresholds).
        """
        return rating >= (self.sell_threshold + self.buy_threshold) / 2

    def overextended(self, ind: Mapping[str, float]) -> tuple[bool, bool]:
        """Return (hot, cold): RSI or the stretch from the 20-day mean past the guard."""
        rsi, stretch = ind["rsi_14"], ind["stretch_atr"]
        limit_rsi, limit_stretch = self.overbought_rsi, self.max_stretch_atr
        return (rsi >= limit_rsi or stretch >= limit_stretch,
                rsi <= 100.0 - limit_rsi or stretch <= -limit_stretch)

    def extension(self, ind: Mapping[str, float], *, bullish: bool) -> float:
        """How far past the guard a name is on one side: 0 inside it, growing beyond."""
        rsi, stretch = ind["rsi_14"], ind["stretch_atr"]
        if not bullish:
            rsi, stretch = 100.0 - rsi, -stretch
        room = 100.0 - self.overbought_rsi
        return (_ratio(max(rsi - self.overbought_rsi, 0.0), room)
                + max(stretch - self.max_stretch_atr, 0.0) / self.max_stretch_atr)

    def score(self, ind: Mapping[str, float]) -> dict[str, float | str | None]:
        """Return :data:`SCORE_COLUMNS` for one symbol's latest indicators.

        A live scan scores every symbol on every bar, so this reads each setting once and
        builds one dict; the arithmetic is that of the module docs, term by term.
        """
        parts = _parts(ind)
        weights = self._weights
        raw = (weights[0] * parts[0] + weights[1] * parts[1] + weights[2] * parts[2]
               + weights[3] * parts[3] + weights[4] * parts[4]) / self._weight_total
        damping = 1.0 + EXTENSION_DAMPING * self.extension(ind, bullish=raw >= 0.5)
        rating = 100.0 * (0.5 + (raw - 0.5) / damping)
        hot, cold = self.overextended(ind)
        side, entry, stop, target, reward_risk = self._plan(ind, self.is_long(rating))
        return {
            "tech_rating": _rounded(rating, 1e2), "alpha_score": _rounded(alpha_score(ind), 1e4),
            "signal": self.signal_for(rating, hot=hot, cold=cold), "side": side,
            "entry": entry, "stop": stop, "target": target, "reward_risk": reward_risk,
            "score_trend": _rounded(parts[0], 1e4), "score_momentum": _rounded(parts[1], 1e4),
            "score_volume": _rounded(parts[2], 1e4),
            "score_volatility": _rounded(parts[3], 1e4),
            "score_breakout": _rounded(parts[4], 1e4),
        }

    def trade_plan(self, ind: Mapping[str, float], *, long: bool) -> dict[str, float | str | None]:
        """Entry at the close, an ATR stop, the first structure level past ``target_atr`` ATRs.

        Neither the long stop nor the short target goes below a tenth of the entry (a
        price cannot fall below zero). Without a positive close and ATR, or should a
        value overflow or vanish, there is no plan: entry, stop, target and reward_risk are
        None.
        """
        return dict(zip(_PLAN_KEYS, self._plan(ind, long), strict=True))

    def _plan(self, ind: Mapping[str, float], long: bool) -> tuple:
        """Return :meth:`trade_plan`'s values in the order of :data:`_PLAN_KEYS`."""
        entry, atr = ind["close"], ind["atr_14"]
        side = "long" if long else "short"
        if not (entry > 0.0 and atr > 0.0):
            return side, None, None, None, None
        least = self.target_atr * atr
        reach = min(_first_level(ind, least, long=long), self.max_target_atr * atr)
        risk = self.stop_atr * atr
        if long:
            risk = min(risk, 0.9 * entry)
            stop, target = entry - risk, entry + reach
        else:
            reach = min(reach, 0.9 * entry)
            stop, target = entry + risk, entry - reach
        reward_risk = _ratio(reach, risk)
        if not (isfinite(stop) and isfinite(target) and isfinite(reward_risk)
                and stop > 0.0 and target > 0.0 and risk > 0.0):
            return side, None, None, None, None
        return side, entry, stop, target, _rounded(reward_risk, 1e2)


def _first_level(ind: Mapping[str, float], least: float, *, long: bool) -> float:
    """Return how far the nearest structure level at least ``least`` away lies (else ``least``).

    Distances run from the close in the trade's direction. Long: the upper Bollinger band,
    sma_50, sma_200, the 52-week high and its :data:`PROJECTIONS`; short: the mirror.
    """
    entry, high, low = ind["close"], ind["high_52w"], ind["low_52w"]
    if long:
        levels = [ind["bb_upper"], ind["sma_50"], ind["sma_200"], high]
        extreme, span = high, _ratio(high, low)
    else:
        levels = [ind["bb_lower"], ind["sma_50"], ind["sma_200"], low]
        extreme, span = low, _ratio(low, high)
    if span > 0.0:
        levels += [extreme * span ** fraction for fraction in PROJECTIONS]
    nearest = None
    for level in levels:
        distance = level - entry if long else entry - level
        if distance >= least and (nearest is None or distance < nearest):
            nearest = distance
    return least if nearest is None else nearest
