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
``tech_rating = 100 * sum(w_i c_i) / sum(w_i)`` with the Strategy's weights, so
it is in [0, 100];
``alpha_score = squash(1.5 (tech_rating-50)/50 + 0.5 sharpe_63 - overextension)``,
in [0, 1], where overextension = (rsi_14-75)/25 above 75 and (rsi_14-25)/25 below 25.
The signal comes from tech_rating and the four thresholds. The trade plan is
long for buy signals and short for sell signals (a HOLD leans to its nearer
side): entry at the close, the stop ``stop_atr`` ATRs away, the target at the
52-week extreme but at least ``target_atr`` and at most ``max_target_atr`` ATRs
away; neither the long stop nor the short target goes below a tenth of the entry.
Without a positive close and ATR (or should a price overflow) there is no plan:
entry, stop, target and reward_risk are None.
"""

from __future__ import annotations

import math

import param

from technic_panel.vocabulary import SCORE_COMPONENTS


def squash(x: float) -> float:
    """Map any real number to (0, 1), 0 to 0.5, antisymmetric about it."""
    return 0.5 + 0.5 * math.tanh(x)


def _ratio(a: float, b: float) -> float:
    """Return ``a / b``, or 0 (neutral) when ``b`` is 0; an overflow gives an infinity."""
    return a / b if b != 0.0 else 0.0


def _log_ratio(a: float, b: float, scale: float) -> float:
    ratio = _ratio(a, b)
    return squash(math.log(ratio) / scale) if ratio > 0.0 else 0.5


def _clip01(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def components(ind: dict[str, float]) -> dict[str, float]:
    """Return the five component scores in [0, 1] of one symbol's latest indicators."""
    close, atr = ind["close"], ind["atr_14"]
    trend = (_log_ratio(close, ind["sma_50"], 0.10) + _log_ratio(close, ind["sma_200"], 0.20)
             + _log_ratio(ind["sma_50"], ind["sma_200"], 0.10)
             + _log_ratio(ind["ema_20"], ind["sma_50"], 0.06)) / 4
    conviction = 0.5 + 0.5 * _clip01(ind["adx_14"] / 40.0)
    momentum = (squash((ind["rsi_14"] - 50.0) / 25.0)
                + squash(_ratio(ind["macd_hist"], atr) / 0.6)
                + squash(ind["roc_21"] / 20.0)) / 3
    direction = math.copysign(1.0, ind["change_pct"])
    volume = (squash(ind["obv_slope"] / 0.6) + squash(direction * (ind["rel_volume"] - 1))) / 2
    return {
        "trend": 0.5 + (trend - 0.5) * conviction,
        "momentum": momentum,
        "volume": volume,
        "volatility": squash(_sharpe_63(ind)),
        "breakout": (_clip01(ind["range_pos_52w"]) + _clip01(ind["bb_pct_b"])) / 2,
    }


def _sharpe_63(ind: dict[str, float]) -> float:
    return _ratio(ind["roc_63"], ind["atr_pct"] * math.sqrt(63.0))


class Strategy(param.Parameterized):
    """The tunable weights, thresholds and trade-plan rules that turn indicators into scores.

    A scan scores thousands of symbols, so it calls :meth:`scorer` once and uses
    the returned plain-value :class:`Scorer`, which reads no Parameters.
    """

    w_trend = param.Number(0.30, bounds=(0, 10), doc="Weight of the trend component.")
    w_momentum = param.Number(0.25, bounds=(0, 10), doc="Weight of the momentum component.")
    w_volume = param.Number(0.15, bounds=(0, 10), doc="Weight of the volume component.")
    w_volatility = param.Number(0.10, bounds=(0, 10),
                                doc="Weight of risk-adjusted 63-day momentum.")
    w_breakout = param.Number(0.20, bounds=(0, 10),
                              doc="Weight of the position in the 52-week and Bollinger ranges.")
    strong_buy = param.Number(75.0, bounds=(0, 100), doc="tech_rating at or above: STRONG_BUY.")
    buy = param.Number(60.0, bounds=(0, 100), doc="tech_rating at or above: BUY.")
    sell = param.Number(40.0, bounds=(0, 100), doc="tech_rating at or below: SELL.")
    strong_sell = param.Number(25.0, bounds=(0, 100), doc="tech_rating at or below: STRONG_SELL.")
    stop_atr = param.Number(2.0, bounds=(0.1, 20), doc="Stop distance from entry, in ATRs.")
    target_atr = param.Number(3.0, bounds=(0.1, 50),
                              doc="Minimum target distance from entry, in ATRs.")
    max_target_atr = param.Number(8.0, bounds=(0.1, 100),
                                  doc="Cap on the target distance (the 52-week extreme), in ATRs.")

    def validate(self) -> Strategy:
        """Check the rules that span several parameters; raise ``ValueError`` naming them."""
        if sum(getattr(self, f"w_{name}") for name in SCORE_COMPONENTS) <= 0:
            raise ValueError("Strategy weights w_trend..w_breakout must not all be 0")
        order = [self.strong_sell, self.sell, self.buy, self.strong_buy]
        if order != sorted(order) or len(set(order)) < 4:
            raise ValueError(
                "Strategy thresholds must satisfy strong_sell < sell < buy < strong_buy, not "
                f"{self.strong_sell} / {self.sell} / {self.buy} / {self.strong_buy}")
        if self.max_target_atr < self.target_atr:
            raise ValueError(f"Strategy.max_target_atr must be >= target_atr "
                             f"({self.target_atr}), not {self.max_target_atr}")
        return self

    def scorer(self) -> Scorer:
        """Return a validated, frozen copy of these settings that scores quickly."""
        self.validate()
        return Scorer(**{name: getattr(self, name) for name in Scorer.__slots__})

    def score(self, ind: dict[str, float]) -> dict[str, float | str | None]:
        """Return :data:`SCORE_COLUMNS` for one symbol's latest indicators."""
        return self.scorer().score(ind)


class Scorer:
    """A Strategy's values as plain floats: scoring without Parameter look-ups, picklable."""

    __slots__ = ("w_trend", "w_momentum", "w_volume", "w_volatility", "w_breakout",
                 "strong_buy", "buy", "sell", "strong_sell",
                 "stop_atr", "target_atr", "max_target_atr")
    w_trend: float
    w_momentum: float
    w_volume: float
    w_volatility: float
    w_breakout: float
    strong_buy: float
    buy: float
    sell: float
    strong_sell: float
    stop_atr: float
    target_atr: float
    max_target_atr: float

    def __init__(self, **values: float) -> None:
        for name in self.__slots__:
            setattr(self, name, float(values[name]))

    def __getstate__(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, float]) -> None:
        Scorer.__init__(self, **state)

    def signal_for(self, rating: float) -> str:
        """Return the signal class of a tech_rating under these thresholds."""
        if rating >= self.strong_buy:
            return "STRONG_BUY"
        if rating >= self.buy:
            return "BUY"
        if rating <= self.strong_sell:
            return "STRONG_SELL"
        if rating <= self.sell:
            return "SELL"
        return "HOLD"

    def is_long(self, rating: float) -> bool:
        """Whether the trade plan for ``rating`` is long.

        Buy signals are long, sell signals short, and a HOLD leans to the side
        it is nearer (above or below the middle of ``sell`` and ``buy``).
        """
        return rating >= (self.sell + self.buy) / 2

    def score(self, ind: dict[str, float]) -> dict[str, float | str | None]:
        """Return :data:`SCORE_COLUMNS` for one symbol's latest indicators."""
        parts = components(ind)
        rating = 100.0 * (
            self.w_trend * parts["trend"] + self.w_momentum * parts["momentum"]
            + self.w_volume * parts["volume"] + self.w_volatility * parts["volatility"]
            + self.w_breakout * parts["breakout"]
        ) / (self.w_trend + self.w_momentum + self.w_volume + self.w_volatility + self.w_breakout)
        rsi = ind["rsi_14"]
        overextension = max(rsi - 75.0, 0.0) / 25.0 + min(rsi - 25.0, 0.0) / 25.0
        alpha = squash(1.5 * (rating - 50.0) / 50.0 + 0.5 * _sharpe_63(ind) - overextension)
        row: dict[str, float | str | None] = {
            "tech_rating": round(rating, 2), "alpha_score": round(alpha, 4),
            "signal": self.signal_for(rating),
        }
        row.update(self.trade_plan(ind, long=self.is_long(rating)))
        for name, value in parts.items():
            row[f"score_{name}"] = round(value, 4)
        return row

    def trade_plan(self, ind: dict[str, float], *, long: bool) -> dict[str, float | str | None]:
        """Entry at the close, an ATR stop, and a target at the 52-week extreme within ATR caps.

        Neither the long stop nor the short target goes below a tenth of the entry (a
        price cannot fall below zero). Without a positive close and ATR, or should a
        value overflow, there is no plan: entry, stop, target and reward_risk are None.
        """
        entry, atr = ind["close"], ind["atr_14"]
        side = "long" if long else "short"
        if not (entry > 0.0 and atr > 0.0):
            return {"side": side, **dict.fromkeys(("entry", "stop", "target", "reward_risk"))}
        reach = min(max(self._extreme(ind, long), self.target_atr * atr), self.max_target_atr * atr)
        risk = self.stop_atr * atr
        if long:
            risk = min(risk, 0.9 * entry)
        else:
            reach = min(reach, 0.9 * entry)
        sign = 1.0 if long else -1.0
        plan = {"entry": entry, "stop": entry - sign * risk, "target": entry + sign * reach,
                "reward_risk": reach / risk}
        if not all(map(math.isfinite, plan.values())):
            return {"side": side, **dict.fromkeys(plan)}
        return {"side": side, "entry": round(entry, 4), "stop": round(plan["stop"], 4),
                "target": round(plan["target"], 4), "reward_risk": round(plan["reward_risk"], 2)}

    @staticmethod
    def _extreme(ind: dict[str, float], long: bool) -> float:
        """Distance from the close to the 52-week high (long) or low (short)."""
        entry, pos = ind["close"], ind["range_pos_52w"]
        high_52w = _ratio(entry, 1.0 + ind["dist_high_52w"] / 100.0)
        if long:
            return high_52w - entry
        return entry - (_ratio(entry - pos * high_52w, 1.0 - pos) if pos < 1.0 else entry)
