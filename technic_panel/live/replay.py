"""Replaying stored bars as if live: the history before a date, and the bars from it on.

:class:`HistoryBefore` shows a data source as it stood before ``replay_from``, so the
initial scan of a replayed session scores what was known then; :class:`ReplayFeed` then
delivers the bars from ``replay_from`` on, every symbol's merged in time order, at
``speed`` times real time (a gap of a day between two bars takes a day over ``speed``
seconds). Any :class:`~technic_panel.data.base.DataSource` works: files, the sample
prices, a store, the synthetic universe. Replayed bars are closed bars.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from technic_panel.data.base import (
    SNAPSHOT_COLUMNS,
    Bars,
    DataError,
    DataSource,
    snapshot_from_bars,
)
from technic_panel.live.feeds import Bar, FeedThread, OnBar, wall_ms
from technic_panel.vocabulary import require

log = logging.getLogger(__name__)


def replay_start(text: str) -> np.datetime64:
    """Parse ``replay_from`` (an ISO date or time, e.g. ``2026-03-02``) as ``datetime64[ns]``.

    Raises
    ------
    ValueError
        If ``text`` is not a date, naming it and the form expected.
    """
    try:
        stamp = pd.Timestamp(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"replay_from must be an ISO date like 2026-03-02, not {text!r}") from exc
    if stamp is pd.NaT:
        raise ValueError(f"replay_from must be an ISO date like 2026-03-02, not {text!r}")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.as_unit("ns").to_datetime64()


class HistoryBefore:
    """``source`` as it stood before ``until``: each symbol's bars dated before it.

    Its universe is the source's; its snapshot is computed from the cut bars (a symbol
    without bars before ``until`` has NaN values there and fails in the scan).
    """

    def __init__(self, source: DataSource, until: np.datetime64) -> None:
        self.source, self.until = source, until
        self.name = f"{source.name} before {np.datetime_as_string(self.until, unit='D')}"
        self.io_bound = getattr(source, "io_bound", False)

    def __repr__(self) -> str:
        return f"HistoryBefore({self.source!r}, until={self.until})"

    def universe(self) -> pd.DataFrame:
        """Return the source's universe."""
        return self.source.universe()

    def snapshot(self) -> pd.DataFrame:
        """Return every symbol's last bar before ``until`` (NaN where it has none)."""
        rows: list[dict[str, Any]] = []
        for symbol in self.universe()["symbol"]:
            try:
                rows.append(snapshot_from_bars(symbol, self.bars(symbol)))
            except DataError:
                rows.append({"symbol": symbol})
        return pd.DataFrame(rows).reindex(columns=list(SNAPSHOT_COLUMNS))

    def bars(self, symbol: str) -> Bars:
        """Return ``symbol``'s bars dated before ``until``; raise DataError if it has none."""
        bars = self.source.bars(symbol)
        count = int(np.searchsorted(bars.dates.astype("datetime64[ns]"), self.until))
        if count == 0:
            raise DataError(f"{symbol} has no bars before {self.until} to start a replay from")
        return Bars(*(column[:count] for column in bars))

    def history(self, symbol: str) -> pd.DataFrame:
        """Return ``symbol``'s bars before ``until`` as a DataFrame indexed by date."""
        return self.bars(symbol).to_frame()


class ReplayFeed(FeedThread):
    """Deliver ``source``'s bars from ``replay_from`` on at ``speed`` x real time, then end.

    Bars of the same time go out together, symbols in the order given; a symbol whose bars
    cannot be read is left out (the scan reports it).
    """

    name = "replay"

    def __init__(self, source: DataSource, symbols: Sequence[str], *,
                 replay_from: np.datetime64, speed: float = 1.0) -> None:
        require("ReplayFeed", "speed", speed, "a number > 0",
                isinstance(speed, int | float) and speed > 0)
        super().__init__()
        self.source, self.symbols = source, list(symbols)
        self.replay_from, self.speed = replay_from, float(speed)

    def __repr__(self) -> str:
        return (f"ReplayFeed(symbols={len(self.symbols)}, replay_from={self.replay_from}, "
                f"speed={self.speed}, running={self.running})")

    def schedule(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Return the bars to replay in delivery order: symbols, times (ns) and OHLCV rows."""
        symbols: list[str] = []
        times, rows = [], []
        for symbol in self.symbols:
            try:
                bars = self.source.bars(symbol)
            except DataError as exc:
                log.debug("ReplayFeed leaves out %s: %s", symbol, exc)
                continue
            dates = bars.dates.astype("datetime64[ns]")
            keep = dates >= self.replay_from
            symbols.extend([symbol] * int(keep.sum()))
            times.append(dates[keep].astype(np.int64))
            rows.append(np.column_stack([column[keep] for column in bars[1:]]))
        if not symbols:
            return [], np.empty(0, dtype=np.int64), np.empty((0, 5))
        all_times = np.concatenate(times)
        order = np.argsort(all_times, kind="stable")
        return [symbols[i] for i in order], all_times[order], np.concatenate(rows)[order]

    def _run(self, on_bar: OnBar) -> None:
        symbols, times, rows = self.schedule()
        if not symbols:
            return
        started, first = time.monotonic(), int(times[0])
        offsets = (times - first) / 1e9 / self.speed
        values, stamps = rows.tolist(), times.tolist()
        index = 0
        while index < len(symbols):
            due = int(np.searchsorted(offsets, time.monotonic() - started, side="right"))
            for i in range(index, due):
                open_, high, low, close, volume = values[i]
                on_bar(Bar(symbols[i], stamps[i], open_, high, low, close, volume, True,
                           wall_ms()))
            index = max(index, due)
            if index < len(symbols) and not self._sleep_until(started + offsets[index]):
                return
