"""Order a universe so the likely best symbols are scanned first.

The order uses only what is known *before* the scan: the source's cheap
``snapshot()`` (recent returns, relative volume, dollar volume) and, when there
is one, the previous scan's tech_ratings. It never looks at the results of the
scan it orders. Each symbol gets a ``priority_score``, a ``priority_tier``
(``high`` for the first 10%, ``medium`` for the next 30%, ``low`` for the rest)
and a ``batch_number`` (1-based, ``batch_size`` symbols each).

The score is :func:`~technic_panel.data.priority.priority_scores` (the data layer's,
so a bar store keeps its plan in the same order at write time); how much it helps is
measured by :func:`top_k_capture` in ``benchmarks/bench_engine.py``.

A scan ranks progressively (:mod:`~technic_panel.engine.planner`): each time a part of
the plan arrives it calls :func:`prioritize` on the symbols known so far, with the
snapshot rows seen so far, so a symbol's tier is its rank among what is known when it
is submitted; once every part is in, the ranking is the one of the whole universe.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from technic_panel.data.priority import priority_scores, snapshot_scores

__all__ = ["TIER_SHARES", "priority_scores", "prioritize", "top_k_capture"]

TIER_SHARES = (0.10, 0.30)
"""Shares of the ordered universe in the ``high`` and ``medium`` tiers; the rest is ``low``."""


def prioritize(symbols: Sequence[str], snapshot: pd.DataFrame | None,
               previous_ratings: pd.Series | None = None, *,
               batch_size: int = 50) -> pd.DataFrame:
    """Return ``symbols`` in scan order with priority_score, priority_tier and batch_number.

    Symbols missing from the snapshot (it could not load them) go last, in the
    given order, so their failure is still reported by the scan. Ties keep the
    given order too.
    """
    if batch_size < 1:
        raise ValueError(f"prioritize batch_size must be >= 1, not {batch_size}")
    symbols = list(dict.fromkeys(symbols))
    scores = np.full(len(symbols), np.nan)
    if snapshot is not None and len(snapshot):
        rows = pd.Index(snapshot["symbol"]).get_indexer(symbols)
        scores = np.where(rows >= 0, snapshot_scores(snapshot, previous_ratings)[rows], np.nan)
    order = np.lexsort((np.arange(len(symbols)), np.where(np.isnan(scores), np.inf, -scores)))
    position = np.arange(len(order))
    cut_high = int(np.ceil(TIER_SHARES[0] * len(order)))
    cut_medium = cut_high + int(np.ceil(TIER_SHARES[1] * len(order)))
    return pd.DataFrame({
        "symbol": np.asarray(symbols, dtype=object)[order] if symbols else [],
        "priority_score": scores[order],
        "priority_tier": np.where(position < cut_high, "high",
                                  np.where(position < cut_medium, "medium", "low")),
        "batch_number": position // batch_size + 1,
    })


def top_k_capture(arrival_order: Sequence[str], final_ratings: pd.Series, *, k: int = 20,
                  fraction: float = 0.2) -> float:
    """Return the share of the final top-``k`` by tech_rating among the first ``fraction``.

    ``arrival_order`` is the symbols in the order their results arrived;
    ``final_ratings`` the tech_rating of every symbol after the full scan.
    """
    top = set(final_ratings.nlargest(k).index)
    early = set(list(arrival_order)[: int(round(fraction * len(arrival_order)))])
    return len(top & early) / len(top)
