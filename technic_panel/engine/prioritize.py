"""Order a universe so the likely best symbols are scanned first.

The order uses only what is known *before* the scan: the source's cheap
``snapshot()`` (recent returns, relative volume, dollar volume) and, when there
is one, the previous scan's tech_ratings. It never looks at the results of the
scan it orders. Each symbol gets a ``priority_score``, a ``priority_tier``
(``high`` for the first 10%, ``medium`` for the next 30%, ``low`` for the rest)
and a ``batch_number`` (1-based, ``batch_size`` symbols each).

priority_score = z(return_21d) + 0.5 z(return_5d) + 0.25 z(sign(change) log rel_volume)
+ 0.1 z(log dollar_volume); with previous ratings, 0.6 of it comes from their z-score.
How much this helps is measured by :func:`top_k_capture` in ``benchmarks/bench_engine.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

TIER_SHARES = (0.10, 0.30)
"""Shares of the ordered universe in the ``high`` and ``medium`` tiers; the rest is ``low``."""


def _zscore(values: pd.Series) -> pd.Series:
    values = values.replace([np.inf, -np.inf], np.nan)
    spread = values.std()
    if not spread or np.isnan(spread):
        return pd.Series(0.0, index=values.index)
    return ((values - values.mean()) / spread).fillna(0.0)


def priority_scores(snapshot: pd.DataFrame,
                    previous_ratings: pd.Series | None = None) -> pd.Series:
    """Return a priority score per symbol (higher: scan sooner), indexed by symbol."""
    snap = snapshot.set_index("symbol")
    direction = np.sign(snap["change_pct"].fillna(0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        volume_push = direction * np.log(snap["rel_volume"])
        liquidity = np.log(snap["dollar_volume"])
    score = (_zscore(snap["return_21d"]) + 0.5 * _zscore(snap["return_5d"])
             + 0.25 * _zscore(volume_push) + 0.1 * _zscore(liquidity))
    if previous_ratings is not None and len(previous_ratings):
        prior = _zscore(previous_ratings.reindex(score.index))
        known = previous_ratings.reindex(score.index).notna()
        score = score.where(~known, 0.4 * _zscore(score) + 0.6 * prior)
    return score


def prioritize(symbols: Sequence[str], snapshot: pd.DataFrame | None,
               previous_ratings: pd.Series | None = None, *,
               batch_size: int = 50) -> pd.DataFrame:
    """Return ``symbols`` in scan order with priority_score, priority_tier and batch_number.

    Symbols missing from the snapshot (it could not load them) go last, in the
    given order, so their failure is still reported by the scan.
    """
    if batch_size < 1:
        raise ValueError(f"prioritize batch_size must be >= 1, not {batch_size}")
    symbols = list(dict.fromkeys(symbols))
    if snapshot is not None and len(snapshot):
        scores = priority_scores(snapshot, previous_ratings).reindex(symbols)
    else:
        scores = pd.Series(np.nan, index=symbols, dtype=float)
    order = pd.DataFrame({"symbol": symbols, "priority_score": scores.to_numpy()})
    order["_given"] = np.arange(len(order))
    order = order.sort_values(["priority_score", "_given"], ascending=[False, True],
                              na_position="last", kind="stable")
    order = order.drop(columns="_given").reset_index(drop=True)
    position = np.arange(len(order))
    cut_high = int(np.ceil(TIER_SHARES[0] * len(order)))
    cut_medium = cut_high + int(np.ceil(TIER_SHARES[1] * len(order)))
    order["priority_tier"] = np.where(position < cut_high, "high",
                                      np.where(position < cut_medium, "medium", "low"))
    order["batch_number"] = position // batch_size + 1
    return order


def top_k_capture(arrival_order: Sequence[str], final_ratings: pd.Series, *, k: int = 20,
                  fraction: float = 0.2) -> float:
    """Return the share of the final top-``k`` by tech_rating among the first ``fraction``.

    ``arrival_order`` is the symbols in the order their results arrived;
    ``final_ratings`` the tech_rating of every symbol after the full scan.
    """
    top = set(final_ratings.nlargest(k).index)
    early = set(list(arrival_order)[: int(round(fraction * len(arrival_order)))])
    return len(top & early) / len(top)
