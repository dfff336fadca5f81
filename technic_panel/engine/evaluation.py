"""Walk-forward evidence for the signals: what followed each score, with no look-ahead.

:func:`walk_forward` scores a symbol at day ``t`` from ``bars[:t + 1]`` alone (the
indicators of that prefix, as a scan on day ``t`` would have computed them), then
records the return from the close of ``t`` to the close of ``t + h`` for each horizon
``h``. :func:`signal_table` summarises those observations by signal: how many, the mean
forward return, and the hit rate (the share that moved the signal's way: up for the
buy signals, down for the sell signals, up for HOLD). :func:`information_coefficient`
is the mean, over dates, of the rank correlation between a score and what followed it.

Observations of one symbol on nearby dates overlap (a 20-day return every 5 days
shares 15 of its days with the next), so they are not independent draws; the counts
say how much data there is, not how much evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from technic_panel.data.base import Bars, DataError, DataSource
from technic_panel.engine.indicators import YEAR, latest_indicators
from technic_panel.engine.scoring import Strategy
from technic_panel.vocabulary import SIGNALS

HORIZONS = (5, 20)
"""Forward horizons, in trading days, measured by default."""


def prefix(bars: Bars, t: int) -> Bars:
    """Return the bars up to and including day ``t``: what was known on that day."""
    return Bars(*(array[:t + 1] for array in bars))


def score_history(bars: Bars, strategy: Strategy | None = None, *, step: int = 5,
                  start: int = YEAR, horizons: Sequence[int] = HORIZONS,
                  symbol: str = "symbol") -> pd.DataFrame:
    """Score ``bars`` every ``step`` days from day ``start``, each from its prefix alone.

    Returns one row per scored day ``t`` (those with every horizon ahead of them):
    ``t``, ``date``, the score columns and ``fwd_<h>``, the return from ``t`` to ``t + h``.
    Days whose prefix cannot be scored (a DataError) are left out.
    """
    scorer = (strategy or Strategy()).scorer()
    last = len(bars) - 1 - max(horizons)
    close = bars.close
    rows = []
    for t in range(start, last + 1, step):
        try:
            ind = latest_indicators(prefix(bars, t), symbol)
        except DataError:
            continue
        row: dict = {"symbol": symbol, "t": t, "date": bars.dates[t], **scorer.score(ind)}
        row.update({f"fwd_{h}": close[t + h] / close[t] - 1.0 for h in horizons})
        rows.append(row)
    return pd.DataFrame(rows)


def walk_forward(source: DataSource, symbols: Iterable[str], strategy: Strategy | None = None,
                 *, step: int = 5, start: int = YEAR,
                 horizons: Sequence[int] = HORIZONS) -> pd.DataFrame:
    """Return :func:`score_history` of every symbol in one frame; unreadable ones are skipped."""
    frames = []
    for symbol in symbols:
        try:
            bars = source.bars(symbol)
        except DataError:
            continue
        frames.append(score_history(bars, strategy, step=step, start=start, horizons=horizons,
                                    symbol=symbol))
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def signal_table(history: pd.DataFrame, horizons: Sequence[int] = HORIZONS) -> pd.DataFrame:
    """Summarise observations by signal: count, share, mean forward return and hit rate.

    The hit rate counts a move the signal's way: up for STRONG_BUY, BUY and HOLD,
    down for SELL and STRONG_SELL. Signals that never occur have a count of 0.
    """
    table = pd.DataFrame(index=pd.Index(SIGNALS, name="signal"))
    groups = history.groupby("signal")
    table["count"] = groups.size().reindex(SIGNALS, fill_value=0)
    table["share"] = table["count"] / max(len(history), 1)
    sell_side = history["signal"].isin(("SELL", "STRONG_SELL"))
    for h in horizons:
        forward = history[f"fwd_{h}"]
        hit = np.where(sell_side, forward < 0, forward > 0)
        table[f"mean_{h}d"] = groups[f"fwd_{h}"].mean().reindex(SIGNALS)
        table[f"hit_{h}d"] = pd.Series(hit, index=history.index).groupby(
            history["signal"]).mean().reindex(SIGNALS)
    return table


def rank_correlation(a: pd.Series, b: pd.Series) -> float:
    """Return Spearman's rank correlation of two series (the Pearson correlation of ranks)."""
    return float(a.rank().corr(b.rank()))


def information_coefficient(history: pd.DataFrame, score: str, horizon: int) -> float:
    """Return the mean over days of the rank correlation of ``score`` with ``fwd_<horizon>``.

    Days with fewer than 10 symbols are left out (a correlation of a handful is noise).
    """
    daily = [rank_correlation(day[score], day[f"fwd_{horizon}"])
             for _, day in history.groupby("t") if len(day) >= 10]
    return float(np.nanmean(daily)) if daily else float("nan")
