"""The priority score of a snapshot row: how soon a scan should reach its symbol.

priority_score = z(return_21d) + 0.5 z(return_5d) + 0.25 z(sign(change) log rel_volume)
+ 0.1 z(log dollar_volume); with previous ratings, 0.6 of it comes from their z-score.

Pure numpy on the snapshot's columns, so both the bar store (which keeps its plan in this
order at write time) and the engine's planner (:mod:`~technic_panel.engine.prioritize`)
use it without the data layer depending on the engine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def zscore(values: np.ndarray) -> np.ndarray:
    """Return z-scores of ``values``: 0 where unknown or infinite, all 0 if they do not vary."""
    values = np.where(np.isfinite(values), values, np.nan)
    if np.count_nonzero(~np.isnan(values)) < 2:
        return np.zeros(len(values))
    spread = np.nanstd(values, ddof=1)
    if not spread:
        return np.zeros(len(values))
    return np.nan_to_num((values - np.nanmean(values)) / spread, nan=0.0)


def snapshot_scores(snapshot: pd.DataFrame,
                    previous_ratings: pd.Series | None = None) -> np.ndarray:
    """Return the priority score of each snapshot row, in row order (numpy: the hot path)."""
    def column(name: str) -> np.ndarray:
        return snapshot[name].to_numpy(dtype=float, na_value=np.nan)

    direction = np.sign(np.nan_to_num(column("change_pct")))
    with np.errstate(divide="ignore", invalid="ignore"):
        volume_push = direction * np.log(column("rel_volume"))
        liquidity = np.log(column("dollar_volume"))
    score = (zscore(column("return_21d")) + 0.5 * zscore(column("return_5d"))
             + 0.25 * zscore(volume_push) + 0.1 * zscore(liquidity))
    if previous_ratings is not None and len(previous_ratings):
        prior = previous_ratings.reindex(snapshot["symbol"]).to_numpy(dtype=float,
                                                                     na_value=np.nan)
        score = np.where(np.isnan(prior), score, 0.4 * zscore(score) + 0.6 * zscore(prior))
    return score


def priority_scores(snapshot: pd.DataFrame,
                    previous_ratings: pd.Series | None = None) -> pd.Series:
    """Return a priority score per symbol (higher: scan sooner), indexed by symbol."""
    return pd.Series(snapshot_scores(snapshot, previous_ratings),
                     index=pd.Index(snapshot["symbol"], name="symbol"))
