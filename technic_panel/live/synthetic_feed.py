"""SyntheticFeed: each symbol's synthetic path continued with bars, one per ``bar_interval``.

The model is the daily model's (:mod:`technic_panel.data.synthetic`), scaled to the share
of a trading day one bar stands for, ``day_fraction``: each tick's log return is the
symbol's beta times a market factor, plus its sector's factor, plus noise whose variance
clusters (GARCH(1, 1), updated on each closed bar); volume surges on large moves;
volatility scales with the square root of ``day_fraction`` and volume with it. Each symbol
starts at its last stored bar (its last close, its volatility over the last quarter, its
mean volume over the last month).

By default a bar stands for a trading day (``day_fraction=1``), so the path goes on at one
day per ``bar_interval`` seconds and the indicators, which look back hundreds of daily
bars, keep their character; bars are then stamped with the following business days. With
``day_fraction=bar_interval / 23400`` the bars are real intraday bars of a 6.5-hour
session, stamped from 09:30 New York on; but then a daily indicator's window fills with
bars of a second's volatility, and within some hundred bars every symbol rates HOLD
(measured on 300 symbols: no signal changed after bar 100), so it is not the default.

A bar is built from ``updates`` ticks: the first ``updates - 1`` deliver it forming (its
high, low, close and volume so far), the last closes it. Every draw comes from a generator
seeded by (seed, bar, tick, what), and symbol ``i`` takes the ``i``-th draw, so the bars
are the same whatever the timing, and a symbol's path the same in any longer list that
starts with the same symbols. Symbols are staggered across the tick so the feed delivers
an even flow rather than a burst per tick.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import zlib
from collections.abc import Iterator, Sequence

import numpy as np

from technic_panel.data.base import DataError, DataSource
from technic_panel.data.synthetic import SECTORS
from technic_panel.live.feeds import Bar, FeedThread, OnBar, wall_ms
from technic_panel.vocabulary import require

log = logging.getLogger(__name__)

SESSION_SECONDS = 6.5 * 3600
"""A trading session, New York 09:30 to 16:00."""
SESSION_OPEN = np.timedelta64(14 * 3600 + 30 * 60, "s")
"""09:30 New York (EST) in UTC: the first live bar's time, on the day after the last stored."""
_GARCH = (0.05, 0.10, 0.85)
"""The daily model's GARCH(1, 1): omega (as a share of the base variance), alpha, beta."""
_MARKET_SD, _SECTOR_SD = 0.005, 0.004
"""The daily model's factor volatilities."""


class _Paths:
    """Every symbol's path, advanced one tick at a time, vectorised over the symbols."""

    def __init__(self, source: DataSource, symbols: list[str], seed: int, updates: int,
                 day_fraction: float) -> None:
        self.symbols, self.seed, self.updates = symbols, seed, updates
        self.frac = day_fraction
        n = len(symbols)
        close, daily_sd, volume = np.ones(n), np.full(n, 0.016), np.full(n, 1e5)
        days = np.full(n, np.datetime64("2000-01-03", "D"))
        self.live = np.zeros(n, dtype=bool)
        for i, symbol in enumerate(symbols):
            start = _start(source, symbol)
            if start is not None:
                self.live[i] = True
                close[i], daily_sd[i], volume[i], days[i] = start
        sectors = source.universe().drop_duplicates("symbol").set_index("symbol")["sector"]
        code = {name: index for index, name in enumerate(SECTORS)}
        self.codes = np.array([code.get(str(sectors.get(s)), len(code)) for s in symbols],
                              dtype=np.int64)
        self.beta = np.array([_beta(seed, symbol) for symbol in symbols])
        self.base_var = (daily_sd ** 2) * day_fraction
        self.var = self.base_var.copy()
        self.bar_volume = volume * day_fraction
        self.last_days = days
        self._times: tuple[int, list[int]] = (-1, [])
        self.close = close
        self.open, self.high, self.low = close.copy(), close.copy(), close.copy()
        self.volume, self.idio = np.zeros(n), np.zeros(n)

    def tick(self, step: int) -> tuple[list, ...]:
        """Advance every symbol by tick ``step``; return the bars' fields as lists."""
        bar, tick = divmod(step, self.updates)
        n, updates = len(self.symbols), self.updates
        if tick == 0:
            self.open[:] = self.high[:] = self.low[:] = self.close
            self.volume[:] = self.idio[:] = 0.0
        draw = [np.random.default_rng([self.seed, bar, tick, what]) for what in range(4)]
        shock, noise = draw[0].standard_normal(n), draw[1].standard_normal(n)
        market = draw[2].standard_normal() * _MARKET_SD * math.sqrt(self.frac / updates)
        sector = draw[3].standard_normal(len(SECTORS) + 1) * _SECTOR_SD * math.sqrt(
            self.frac / updates)
        sd = np.sqrt(self.var / updates)
        idio = sd * shock
        step_return = self.beta * market + sector[self.codes] + idio
        self.close = self.close * np.exp(step_return)
        np.maximum(self.high, self.close, out=self.high)
        np.minimum(self.low, self.close, out=self.low)
        self.idio += idio
        surge = 1.0 + 0.8 * np.maximum(np.abs(step_return) / (1.25 * sd) - 1.0, 0.0)
        self.volume += self.bar_volume / updates * surge * np.exp(0.25 * noise - 0.03125)
        if tick == updates - 1:
            omega, alpha, persistence = _GARCH
            self.var = omega * self.base_var + alpha * self.idio ** 2 + persistence * self.var
        return (self.times(bar), self.open.tolist(), self.high.tolist(), self.low.tolist(),
                self.close.tolist(), self.volume.tolist())

    def times(self, bar: int) -> list[int]:
        """Return bar ``bar``'s time (ns) of each symbol: a business day on, or into a session."""
        if self._times[0] != bar:
            session_ns = int(SESSION_SECONDS * 1e9)
            day, within = divmod(round(bar * self.frac * session_ns), session_ns)
            days = np.busday_offset(self.last_days, 1 + day, roll="forward")
            times = days.astype("datetime64[ns]")
            if self.frac < 1:
                times = times + SESSION_OPEN + np.timedelta64(within, "ns")
            self._times = (bar, times.astype(np.int64).tolist())
        return self._times[1]


def _start(source: DataSource, symbol: str) -> tuple[float, float, float, np.datetime64] | None:
    """Return a symbol's last close, daily volatility, mean volume and last stored day."""
    try:
        bars = source.bars(symbol)
    except DataError as exc:
        log.debug("SyntheticFeed leaves out %s: %s", symbol, exc)
        return None
    close = bars.close[-64:]
    if len(close) < 2 or not np.all(close > 0):
        return None
    daily_sd = float(np.std(np.diff(np.log(close))))
    volume = float(np.mean(bars.volume[-20:]))
    return (float(close[-1]), daily_sd if math.isfinite(daily_sd) and daily_sd > 0 else 0.016,
            volume if math.isfinite(volume) and volume > 0 else 1e5,
            np.datetime64(bars.dates[-1], "D"))


def _beta(seed: int, symbol: str) -> float:
    """Return a symbol's market beta, from its own seeded stream, spread as the daily model's."""
    draw = np.random.default_rng([seed, zlib.crc32(symbol.encode())]).normal(1.0, 0.35)
    return float(np.clip(draw, 0.2, 2.2))


_BarFields = tuple[str, int, float, float, float, float, float, bool]
"""A bar's fields but its ``feed_time``, as :meth:`SyntheticFeed._tick` returns them."""


class SyntheticFeed(FeedThread):
    """Continue each symbol's synthetic path with bars, ``updates`` ticks a bar; see the module.

    Parameters
    ----------
    source
        Where each symbol starts (its last stored bar) and its sector.
    symbols
        The symbols to deliver, in this order (a symbol without bars is left out).
    bar_interval
        Wall-clock seconds per bar.
    updates
        Deliveries per bar: ``updates - 1`` forming, then the closed one (>= 1).
    seed
        Seed of every draw: the same seed, symbols and settings give the same bars.
    day_fraction
        The share of a trading day one bar stands for (default 1: a day a bar); volatility
        scales with its square root, volume with it, and the bars' times follow it.
    """

    name = "synthetic"

    def __init__(self, source: DataSource, symbols: Sequence[str], *, bar_interval: float = 1.0,
                 updates: int = 4, seed: int = 42, day_fraction: float = 1.0) -> None:
        owner = "SyntheticFeed"
        require(owner, "bar_interval", bar_interval, "a number in (0, 86400]",
                isinstance(bar_interval, int | float) and 0 < bar_interval <= 86_400)
        require(owner, "updates", updates, "an integer in [1, 100]",
                isinstance(updates, int) and 1 <= updates <= 100)
        require(owner, "day_fraction", day_fraction, "a number in (0, 1]",
                isinstance(day_fraction, int | float) and 0 < day_fraction <= 1)
        super().__init__()
        self.source, self.symbols = source, list(symbols)
        self.bar_interval, self.updates, self.seed = float(bar_interval), updates, seed
        self.day_fraction = float(day_fraction)

    def __repr__(self) -> str:
        return (f"SyntheticFeed(symbols={len(self.symbols)}, bar_interval={self.bar_interval}, "
                f"updates={self.updates}, seed={self.seed}, running={self.running})")

    def ticks(self) -> Iterator[list[Bar]]:
        """Yield each tick's bars of every symbol, in delivery order, without waiting.

        ``feed_time`` is 0 here; the running feed stamps each bar as it delivers it.
        """
        paths = self._paths()
        for step in itertools.count():
            yield [Bar(*fields, 0) for fields in self._tick(paths, step)]

    def _paths(self) -> _Paths:
        return _Paths(self.source, self.symbols, self.seed, self.updates, self.day_fraction)

    def _tick(self, paths: _Paths, step: int) -> list[_BarFields]:
        """Return the fields of tick ``step``'s bars but ``feed_time``, in delivery order.

        One zip over the columns: a generator per symbol cost 5,000 bars a second a
        tenth of the live scan's CPU.
        """
        closed = step % self.updates == self.updates - 1
        times, opens, highs, lows, closes, volumes = paths.tick(step)
        return [(symbol, time_, open_, high, low, close, volume, closed)
                for symbol, live, time_, open_, high, low, close, volume
                in zip(self.symbols, paths.live, times, opens, highs, lows, closes, volumes,
                       strict=True) if live]

    def _run(self, on_bar: OnBar) -> None:
        paths = self._paths()
        period = self.bar_interval / self.updates
        started = time.monotonic()
        for step in itertools.count():
            tick_start = started + step * period
            if not self._sleep_until(tick_start):
                return
            bars = self._tick(paths, step)
            count, sent = len(bars), 0
            while sent < count:
                due = min(count, int((time.monotonic() - tick_start) / period * count) + 1)
                for fields in bars[sent:due]:
                    on_bar(Bar(*fields, wall_ms()))
                sent = max(sent, due)
                if sent < count and not self._sleep_until(tick_start + sent * period / count):
                    return

