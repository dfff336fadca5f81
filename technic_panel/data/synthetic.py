"""The embedded synthetic universe: thousands of plausible symbols, deterministic per seed.

Prices follow a factor model: each symbol's daily log return is a market
factor plus its sector's factor plus idiosyncratic noise whose variance
clusters (GARCH(1, 1)), on top of a drift that switches regime a few times
over the two years. Volume surges on large moves and on random news days.
The whole universe is generated at once with vectorised numpy (about 0.5 s for
5,000 symbols), once per process for the last two (symbols, seed, bars), and
stored as float32, symbol-major, so :meth:`bars` is a slice.
"""

from __future__ import annotations

import functools
import threading
import time
import zlib

import numpy as np
import pandas as pd

from technic_panel.data.base import SNAPSHOT_COLUMNS, UNIVERSE_COLUMNS, Bars, DataError
from technic_panel.vocabulary import require

SECTORS: dict[str, tuple[str, ...]] = {
    "Information Technology": ("Software", "Semiconductors", "IT Services", "Hardware"),
    "Health Care": ("Biotechnology", "Pharmaceuticals", "Medical Devices", "Health Services"),
    "Financials": ("Banks", "Insurance", "Capital Markets", "Consumer Finance"),
    "Consumer Discretionary": ("Retail", "Automobiles", "Hotels & Leisure", "Apparel"),
    "Communication Services": ("Media", "Interactive Media", "Telecom"),
    "Industrials": ("Aerospace & Defense", "Machinery", "Transportation", "Building Products"),
    "Consumer Staples": ("Food Products", "Beverages", "Household Products"),
    "Energy": ("Oil & Gas", "Energy Equipment", "Renewables"),
    "Utilities": ("Electric Utilities", "Gas Utilities", "Water Utilities"),
    "Real Estate": ("REITs", "Real Estate Services"),
    "Materials": ("Chemicals", "Metals & Mining", "Packaging"),
}
"""The 11 GICS sectors and a few industries of each."""

_SUFFIXES = ("Corp", "Inc", "Holdings", "Group", "Technologies", "Systems", "Partners", "Labs")
_END_DATE = "2026-10-30"


class SyntheticSource:
    """A deterministic synthetic universe of ``symbols`` stocks with ``bars`` daily bars each.

    ``latency_ms`` (with +-50% jitter) emulates a remote provider on every
    :meth:`bars` call; ``error_rate`` makes that share of symbols fail with a
    :class:`DataError` (the same symbols for the same seed).
    """

    name = "synthetic"

    def __init__(self, symbols: int = 5000, *, seed: int = 42, bars: int = 504,
                 latency_ms: float = 0.0, error_rate: float = 0.0) -> None:
        require("SyntheticSource", "symbols", symbols, "an integer in [1, 100000]",
                _is_int(symbols) and 1 <= symbols <= 100_000)
        require("SyntheticSource", "bars", bars, "an integer in [30, 5000]",
                _is_int(bars) and 30 <= bars <= 5000)
        require("SyntheticSource", "seed", seed, "an integer in [0, 2**32)",
                _is_int(seed) and 0 <= seed < 2**32)
        require("SyntheticSource", "latency_ms", latency_ms, "a number in [0, 60000]",
                _is_real(latency_ms) and 0 <= latency_ms <= 60_000)
        require("SyntheticSource", "error_rate", error_rate, "a number in [0, 1]",
                _is_real(error_rate) and 0 <= error_rate <= 1)
        self.symbols, self.seed, self.n_bars = int(symbols), int(seed), int(bars)
        self.latency_ms, self.error_rate = float(latency_ms), float(error_rate)
        self._lock = threading.Lock()
        self._data: _Universe | None = None

    @property
    def io_bound(self) -> bool:
        """Whether fetching waits on (emulated) latency, so more threads help."""
        return self.latency_ms > 0

    def __repr__(self) -> str:
        return (f"SyntheticSource(symbols={self.symbols}, seed={self.seed}, bars={self.n_bars}, "
                f"latency_ms={self.latency_ms}, error_rate={self.error_rate})")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"], state["_data"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._data = None

    def _universe_data(self) -> _Universe:
        with self._lock:
            if self._data is None:
                self._data = _generated(self.symbols, self.seed, self.n_bars)
            return self._data

    def universe(self) -> pd.DataFrame:
        """Return the symbols with name, sector, industry, market cap and dollar volume."""
        return self._universe_data().meta.loc[:, list(UNIVERSE_COLUMNS)].copy()

    def snapshot(self) -> pd.DataFrame:
        """Return every symbol's last bar and recent return / relative volume, vectorised."""
        return self._universe_data().snapshot.copy()

    def bars(self, symbol: str) -> Bars:
        """Return ``symbol``'s bars after the emulated latency; fail as ``error_rate`` says."""
        data = self._universe_data()
        row = data.index.get(symbol)
        if row is None:
            raise DataError(f"SyntheticSource has no symbol {symbol!r}")
        draw = _unit_hash(self.seed, symbol)
        if self.latency_ms:
            time.sleep(self.latency_ms * (0.5 + _unit_hash(self.seed + 1, symbol)) / 1000.0)
        if draw < self.error_rate:
            raise DataError(f"synthetic provider failed for {symbol} "
                            f"(injected by error_rate={self.error_rate})")
        return Bars(data.dates, *(np.asarray(a[row], dtype=np.float64) for a in data.ohlcv))

    def history(self, symbol: str) -> pd.DataFrame:
        """Return ``symbol``'s daily OHLCV bars as a DataFrame indexed by date."""
        return self.bars(symbol).to_frame()


_cache_lock = threading.Lock()


@functools.lru_cache(maxsize=2)
def _cached_universe(n: int, seed: int, n_bars: int) -> _Universe:
    return _Universe.generate(n, seed, n_bars)


def _generated(n: int, seed: int, n_bars: int) -> _Universe:
    """Generate a universe once per process: later sources (and workers' copies) share it."""
    with _cache_lock:
        return _cached_universe(n, seed, n_bars)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool)



def _unit_hash(seed: int, symbol: str) -> float:
    """Return a uniform draw in [0, 1) fixed by seed and symbol, independent of scan order."""
    return zlib.crc32(f"{seed}:{symbol}".encode()) / 2**32


class _Universe:
    """The generated arrays and tables of one (symbols, seed, bars) universe."""

    def __init__(self, meta: pd.DataFrame, dates: np.ndarray, ohlcv: np.ndarray) -> None:
        self.meta = meta
        self.dates = dates
        self.ohlcv = ohlcv
        self.index = {s: i for i, s in enumerate(meta["symbol"])}
        self.snapshot = _vector_snapshot(meta["symbol"], dates, ohlcv)

    @classmethod
    def generate(cls, n: int, seed: int, n_bars: int) -> _Universe:
        rng = np.random.default_rng(seed)
        meta = _metadata(rng, n)
        sector_codes = pd.Categorical(meta["sector"], categories=list(SECTORS)).codes
        log_ret = _returns(rng, n, n_bars, sector_codes)
        start = np.exp(rng.normal(np.log(40.0), 0.9, n)).clip(2.0, 1500.0)
        ohlcv = _ohlcv(rng, start, log_ret, meta["market_cap"].to_numpy())
        dates = pd.bdate_range(end=_END_DATE, periods=n_bars).to_numpy(dtype="datetime64[ns]")
        close, volume = ohlcv[3].astype(np.float64), ohlcv[4].astype(np.float64)
        meta["avg_dollar_volume"] = (close[:, -20:] * volume[:, -20:]).mean(axis=1)
        return cls(meta, dates, ohlcv)


def _tickers(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        for length in rng.choice([2, 3, 4, 4, 5], size=n):
            ticker = "".join(rng.choice(letters, size=length))
            if ticker not in seen:
                seen.add(ticker)
                out.append(ticker)
                if len(out) == n:
                    break
    return out


def _metadata(rng: np.random.Generator, n: int) -> pd.DataFrame:
    tickers = _tickers(rng, n)
    sector_names = list(SECTORS)
    weights = np.array([14, 12, 12, 11, 6, 12, 6, 6, 4, 7, 10], dtype=float)
    sectors = rng.choice(sector_names, size=n, p=weights / weights.sum())
    industries = [SECTORS[s][rng.integers(len(SECTORS[s]))] for s in sectors]
    names = [f"{t.title()} {_SUFFIXES[rng.integers(len(_SUFFIXES))]}" for t in tickers]
    market_cap = np.exp(rng.normal(np.log(3e9), 1.6, n)).clip(5e7, 3.5e12)
    return pd.DataFrame({"symbol": tickers, "name": names, "sector": sectors,
                         "industry": industries, "market_cap": market_cap})


def _returns(rng: np.random.Generator, n: int, t: int, sector_codes: np.ndarray) -> np.ndarray:
    """Daily log returns: market + sector factors + GARCH noise + regime-switching drift."""
    market = rng.normal(0.0001, 0.005, t)
    sector = rng.normal(0.0, 0.004, (len(SECTORS), t))
    beta = rng.normal(1.0, 0.35, n).clip(0.2, 2.2)
    base_vol = np.exp(rng.normal(np.log(0.016), 0.4, n))
    omega, alpha, persistence = base_vol**2 * 0.05, 0.10, 0.85
    shocks = rng.standard_normal((t, n))
    noise = np.empty((t, n))
    var = base_vol**2
    for day in range(t):
        noise[day] = np.sqrt(var) * shocks[day]
        var = omega + alpha * noise[day] ** 2 + persistence * var
    drift = _regime_drift(rng, n, t)
    factors = beta[:, None] * market[None, :] + sector[sector_codes]
    return factors + noise.T + drift


def _regime_drift(rng: np.random.Generator, n: int, t: int) -> np.ndarray:
    """Per-symbol drift that jumps to a new level at a few random regime changes."""
    n_regimes = 4
    levels = rng.normal(0.0, 0.0016, (n, n_regimes))
    cuts = np.sort(rng.integers(20, t - 15, (n, n_regimes - 1)), axis=1)
    regime = (np.arange(t)[None, None, :] >= cuts[:, :, None]).sum(axis=1)
    return np.take_along_axis(levels, regime, axis=1)


def _ohlcv(rng: np.random.Generator, start: np.ndarray, log_ret: np.ndarray,
           market_cap: np.ndarray) -> np.ndarray:
    """Bars from log returns, computed in float32 (the storage type) to halve the work."""
    n, t = log_ret.shape
    f32 = np.float32
    out = np.empty((5, n, t), dtype=f32)
    close = out[3]
    close[:] = start[:, None] * np.exp(np.cumsum(log_ret, axis=1))
    day_vol = np.abs(log_ret).mean(axis=1, keepdims=True).astype(f32)
    gap = rng.standard_normal((n, t), dtype=f32) * (f32(0.3) * day_vol)
    out[0, :, 0] = start
    out[0, :, 1:] = close[:, :-1]
    out[0] *= np.exp(gap)
    wick = np.abs(rng.standard_normal((2, n, t), dtype=f32)) * (f32(0.5) * day_vol)
    np.maximum(out[0], close, out=out[1])
    out[1] *= np.exp(wick[0])
    np.minimum(out[0], close, out=out[2])
    out[2] *= np.exp(-wick[1])
    turnover = np.exp(rng.normal(np.log(0.004), 0.5, n)) * market_cap
    surprise = np.abs(log_ret).astype(f32) / (day_vol * f32(1.25))
    news = rng.random((n, t), dtype=f32) < 0.01
    surge = f32(1.0) + f32(0.8) * np.maximum(surprise - f32(1.0), f32(0.0))
    surge += news * rng.uniform(1.0, 4.0, (n, t)).astype(f32)
    noise = np.exp(rng.standard_normal((n, t), dtype=f32) * f32(0.25))
    out[4] = (turnover[:, None].astype(f32) / close) * surge * noise
    np.maximum(out[4], f32(100.0), out=out[4])
    return out


def _vector_snapshot(symbols: pd.Series, dates: np.ndarray, ohlcv: np.ndarray) -> pd.DataFrame:
    close, volume = ohlcv[3].astype(np.float64), ohlcv[4].astype(np.float64)
    last = close[:, -1]
    frame = pd.DataFrame({
        "symbol": symbols.to_numpy(),
        "date": pd.Timestamp(dates[-1]),
        "close": last,
        "change_pct": 100.0 * (last / close[:, -2] - 1.0),
        "return_5d": last / close[:, -6] - 1.0,
        "return_21d": last / close[:, -22] - 1.0,
        "rel_volume": volume[:, -1] / volume[:, -21:-1].mean(axis=1),
        "dollar_volume": last * volume[:, -1],
    })
    return frame.loc[:, list(SNAPSHOT_COLUMNS)]
