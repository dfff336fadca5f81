"""The synthetic universe's price model: tickers, factors and bars, symbol by symbol.

Each symbol ``i`` draws everything of its own from ``np.random.default_rng([seed, i])``
(its metadata first, so that does not depend on the number of bars), and shares only
the market and sector factors, drawn once per ``(seed, bars)``. Tickers are a
bijection of the symbol's index, unique by construction. So the universe of N
symbols is the first N of any larger one with the same seed, and any symbol can be
generated alone: :func:`generate_bars` gives the same arrays for a symbol whether it
is asked for one row or a chunk of them (every step works row by row).

The model: a daily log return is beta times a market factor, plus the sector's
factor, plus idiosyncratic noise whose variance clusters (GARCH(1, 1)), on top of a
drift that switches regime a few times. Volume surges on large moves and on random
news days. Bars are stored as float32 to halve the memory.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

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

_SECTOR_WEIGHTS = np.array([14, 12, 12, 11, 6, 12, 6, 6, 4, 7, 10], dtype=float)
_SUFFIXES = ("Corp", "Inc", "Holdings", "Group", "Technologies", "Systems", "Partners", "Labs")
_END_DATE = "2026-10-30"
_TICKER_LENGTHS = np.array([2, 3, 4, 5])
_TICKER_SHARES = np.array([0.05, 0.30, 0.45, 0.20])
"""Share of tickers drawn at each length; a length whose names run out passes to the next."""
_BASE26 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789abcdefghijklmnop")
"""Letters to base-26 digits, so ``int(ticker.translate(_BASE26), 26)`` is its code."""
_FACTOR_TAG = 0xFAC7
"""Third entropy word of the factors' stream: never that of a symbol's ``[seed, i]``."""
_GARCH_ALPHA, _GARCH_PERSISTENCE, _GARCH_BLOCK = 0.10, 0.85, 256
_REGIMES = 4
_F32 = np.float32


class Draws(NamedTuple):
    """Every random number of a block of symbols, one row per symbol."""

    unit: np.ndarray
    """(n, 6) uniforms: sector, industry, name suffix, three regime changes."""
    normal: np.ndarray
    """(n, 9) normals: market cap, start price, beta, volatility, turnover, 4 drift levels."""
    shocks: np.ndarray
    """(n, bars) normals (drawn as float32) driving the GARCH noise, as float64."""
    noise: np.ndarray
    """(n, 4, bars) float32 normals: opening gap, upper wick, lower wick, volume noise."""
    uniform: np.ndarray
    """(n, 2, bars) float32 uniforms: news day, size of a news day's surge."""


class Factors(NamedTuple):
    """What every symbol of a ``(seed, bars)`` universe shares."""

    dates: np.ndarray
    market: np.ndarray
    sector: np.ndarray


class Block(NamedTuple):
    """The generated bars of symbols ``start..stop`` and the numbers their metadata needs."""

    ohlcv: np.ndarray
    """(5, n, bars) float32: open, high, low, close, volume."""
    draws: Draws
    market_cap: np.ndarray
    sector: np.ndarray
    """Sector codes, indices into :data:`SECTORS`."""


def _mix(values: np.ndarray) -> np.ndarray:
    """Return the splitmix64 finaliser of ``values`` (uint64): a cheap vectorised hash."""
    x = values + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hashes(seed: int, index: np.ndarray, salt: int) -> np.ndarray:
    keys = (np.uint64(seed) << np.uint64(32)) | index.astype(np.uint64)
    return _mix(_mix(keys) ^ np.uint64(salt))


def _ticker_ranks(seed: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the ticker length of the first ``stop`` symbols and their rank in that length.

    A symbol's length is drawn from a hash of (seed, index); once the names of a length
    run out, later symbols drawn there take the next length. Only earlier symbols
    decide a symbol's rank, so the result for ``stop`` is a prefix of any larger one.
    """
    draw = (_hashes(seed, np.arange(stop), salt=1) >> np.uint64(11)) * 2.0**-53
    cut = np.searchsorted(np.cumsum(_TICKER_SHARES), draw, side="right")
    lengths = _TICKER_LENGTHS[np.minimum(cut, len(_TICKER_LENGTHS) - 1)]
    ranks = np.zeros(stop, dtype=np.int64)
    for length in _TICKER_LENGTHS:
        mine = lengths == length
        rank = np.cumsum(mine) - 1
        full = mine & (rank >= 26**length)
        if full.any():
            lengths[full] = length + 1
            mine &= ~full
        ranks[mine] = rank[mine]
    return lengths, ranks


@functools.lru_cache(maxsize=64)
def _affine_pair(seed: int, length: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Return two seeded affine maps ``(a, b)`` of [0, 26**length), ``a`` coprime with 26."""
    size = 26**length
    params = [int(p) for p in _hashes(seed, np.arange(4) + 8 * length, salt=2) % np.uint64(size)]
    odd = [params[k] | 1 for k in (0, 2)]
    first, second = ((a + 2) % size if a % 13 == 0 else a for a in odd)
    return (first, params[1]), (second, params[3])


def _reversed_digits(x: Any, length: int) -> Any:
    """Return ``x`` (an integer or integer array) with its ``length`` base-26 digits reversed."""
    out = 0
    for _ in range(length):
        x, digit = divmod(x, 26)
        out = out * 26 + digit
    return out


def _permuted(seed: int, length: int, ranks: np.ndarray) -> np.ndarray:
    """Map ranks through a seeded bijection of [0, 26**length): affine, reversed digits, affine."""
    size = 26**length
    (a, b), (c, d) = _affine_pair(seed, length)
    return (c * _reversed_digits((a * ranks + b) % size, length) + d) % size


@functools.lru_cache(maxsize=64)
def _inverse_pair(seed: int, length: int) -> tuple[int, int]:
    size = 26**length
    (a, _), (c, _) = _affine_pair(seed, length)
    return pow(a, -1, size), pow(c, -1, size)


def _unpermuted(seed: int, length: int, code: int) -> int:
    """Return the rank :func:`_permuted` maps to ``code`` (its inverse)."""
    size = 26**length
    (_, b), (_, d) = _affine_pair(seed, length)
    a_inverse, c_inverse = _inverse_pair(seed, length)
    return a_inverse * (_reversed_digits(c_inverse * (code - d) % size, length) - b) % size


def tickers(seed: int, start: int, stop: int) -> list[str]:
    """Return the tickers of symbols ``start..stop``: 2 to 5 capital letters, all distinct."""
    lengths, ranks = _ticker_ranks(seed, stop)
    lengths, ranks = lengths[start:], ranks[start:]
    codes = np.empty(stop - start, dtype=np.int64)
    for length in range(2, 6):
        mine = lengths == length
        codes[mine] = _permuted(seed, length, ranks[mine])
    letters = np.full((stop - start, 6), ord(" "), dtype=np.uint8)  # right-aligned, blank-led
    for k in range(5):  # the k-th letter from the right
        codes, digit = np.divmod(codes, 26)
        letters[:, 4 - k] = np.where(k < lengths, digit + ord("A"), ord(" "))
    return letters.tobytes().decode("ascii").split()


@functools.lru_cache(maxsize=4)
def _positions(seed: int, size: int) -> dict[int, np.ndarray]:
    lengths, _ = _ticker_ranks(seed, size)
    return {int(length): np.flatnonzero(lengths == length) for length in _TICKER_LENGTHS}


def ticker_position(seed: int, size: int, symbol: str) -> int | None:
    """Return the index of ``symbol`` in the universe of ``size`` symbols (None: not in it).

    Inverts :func:`tickers` arithmetically, so no table of every ticker is built.
    """
    length = len(symbol)
    if not (2 <= length <= 5 and symbol.isascii() and symbol.isalpha() and symbol.isupper()):
        return None
    rank = _unpermuted(seed, length, int(symbol.translate(_BASE26), 26))
    positions = _positions(seed, size)[length]
    return int(positions[rank]) if rank < len(positions) else None


@functools.lru_cache(maxsize=8)
def factors(seed: int, n_bars: int) -> Factors:
    """Return the dates and the market and sector factors of a ``(seed, bars)`` universe."""
    rng = np.random.default_rng([seed, n_bars, _FACTOR_TAG])
    dates = pd.bdate_range(end=_END_DATE, periods=n_bars).to_numpy(dtype="datetime64[ns]")
    dates.flags.writeable = False
    return Factors(dates, rng.normal(0.0001, 0.005, n_bars),
                   rng.normal(0.0, 0.004, (len(SECTORS), n_bars)))


def draw(seed: int, n_bars: int, start: int, stop: int) -> Draws:
    """Draw the random numbers of symbols ``start..stop``, each from its own stream.

    Three calls per stream (uniforms of the metadata first, so it does not depend on the
    number of bars; then every normal; then the other uniforms): each call releases
    the GIL, which costs while a scan computes beside the planning thread.
    """
    n = stop - start
    unit, uniform = np.empty((n, 6)), np.empty((n, 2, n_bars), dtype=_F32)
    normal = np.empty((n, 9 + 5 * n_bars), dtype=_F32)
    for row, index in enumerate(range(start, stop)):
        rng = np.random.default_rng([seed, index])
        rng.random(out=unit[row])
        rng.standard_normal(out=normal[row], dtype=_F32)
        rng.random(out=uniform[row], dtype=_F32)
    return Draws(unit, normal[:, :9].astype(np.float64), normal[:, 9:9 + n_bars].astype(np.float64),
                 normal[:, 9 + n_bars:].reshape(n, 4, n_bars), uniform)


def sector_codes(draws: Draws) -> np.ndarray:
    """Return each symbol's sector, an index into :data:`SECTORS`, weighted like a market."""
    cumulative = np.cumsum(_SECTOR_WEIGHTS / _SECTOR_WEIGHTS.sum())
    return np.minimum(np.searchsorted(cumulative, draws.unit[:, 0], side="right"),
                      len(SECTORS) - 1)


def generate_bars(seed: int, n_bars: int, start: int, stop: int) -> Block:
    """Generate the bars of symbols ``start..stop`` (any range: each row is computed alone)."""
    draws = draw(seed, n_bars, start, stop)
    shared = factors(seed, n_bars)
    z = draws.normal
    market_cap = np.exp(np.log(3e9) + 1.6 * z[:, 0]).clip(5e7, 3.5e12)
    start_price = np.exp(np.log(40.0) + 0.9 * z[:, 1]).clip(2.0, 1500.0)
    beta = (1.0 + 0.35 * z[:, 2]).clip(0.2, 2.2)
    base_vol = np.exp(np.log(0.016) + 0.4 * z[:, 3])
    sector = sector_codes(draws)
    variance = _garch_variance(draws.shocks, base_vol**2)
    noise = np.sqrt(variance) * draws.shocks
    drift = _regime_drift(0.0016 * z[:, 5:9], draws.unit[:, 3:6], n_bars)
    log_ret = beta[:, None] * shared.market[None, :] + shared.sector[sector] + noise + drift
    turnover = np.exp(np.log(0.004) + 0.5 * z[:, 4]) * market_cap
    return Block(_ohlcv(draws, start_price, log_ret, turnover), draws, market_cap, sector)


def _garch_variance(shocks: np.ndarray, base_var: np.ndarray) -> np.ndarray:
    """Return GARCH(1, 1) variances: ``var[d+1] = omega + (alpha shock[d]**2 + beta) var[d]``.

    The linear recursion is solved in closed form a block of days at a time
    (``var = Q (var0 + omega cumsum(1 / Q))`` with ``Q`` the running product of the
    coefficients), so there is no Python loop over days; each coefficient is at
    least 0.85 and at most a few units, so a block of 256 days stays inside float64's range.
    """
    coefficient = _GARCH_ALPHA * shocks**2 + _GARCH_PERSISTENCE
    omega = (0.05 * base_var)[:, None]
    variance = np.empty_like(shocks)
    variance[:, 0] = base_var
    day, n_bars = 1, shocks.shape[1]
    while day < n_bars:
        end = min(day + _GARCH_BLOCK, n_bars)
        product = np.cumprod(coefficient[:, day - 1:end - 1], axis=1)
        growth = variance[:, day - 1:day] + omega * np.cumsum(1.0 / product, axis=1)
        variance[:, day:end] = product * growth
        day = end
    return variance


def _regime_drift(levels: np.ndarray, changes: np.ndarray, n_bars: int) -> np.ndarray:
    """Per-symbol drift that jumps to a new level at a few random regime changes."""
    low, high = (20, n_bars - 15) if n_bars > 40 else (n_bars // 4, n_bars - n_bars // 4)
    cuts = np.sort(low + np.floor(changes * (high - low)).astype(np.int64), axis=1)
    regime = (np.arange(n_bars)[None, None, :] >= cuts[:, :, None]).sum(axis=1)
    return levels[np.arange(len(levels))[:, None], regime]


def _ohlcv(draws: Draws, start: np.ndarray, log_ret: np.ndarray,
           turnover: np.ndarray) -> np.ndarray:
    """Bars from log returns, computed in float32 (the storage type) to halve the work."""
    n, t = log_ret.shape
    out = np.empty((5, n, t), dtype=_F32)
    close = out[3]
    close[:] = start[:, None] * np.exp(np.cumsum(log_ret, axis=1))
    day_vol = np.abs(log_ret).mean(axis=1, keepdims=True).astype(_F32)
    gap = draws.noise[:, 0] * (_F32(0.3) * day_vol)
    out[0, :, 0] = start
    out[0, :, 1:] = close[:, :-1]
    out[0] *= np.exp(gap)
    np.maximum(out[0], close, out=out[1])
    out[1] *= np.exp(np.abs(draws.noise[:, 1]) * (_F32(0.5) * day_vol))
    np.minimum(out[0], close, out=out[2])
    out[2] *= np.exp(-np.abs(draws.noise[:, 2]) * (_F32(0.5) * day_vol))
    surprise = np.abs(log_ret).astype(_F32) / (day_vol * _F32(1.25))
    news = draws.uniform[:, 0] < _F32(0.01)
    surge = _F32(1.0) + _F32(0.8) * np.maximum(surprise - _F32(1.0), _F32(0.0))
    surge += news * (_F32(1.0) + _F32(3.0) * draws.uniform[:, 1])
    noise = np.exp(draws.noise[:, 3] * _F32(0.25))
    out[4] = (turnover[:, None].astype(_F32) / close) * surge * noise
    np.maximum(out[4], _F32(100.0), out=out[4])
    return out


def metadata(seed: int, start: int, block: Block) -> dict[str, object]:
    """Return the universe columns of a block: symbol, name, sector, industry, market cap."""
    names = list(SECTORS)
    symbols = tickers(seed, start, start + len(block.sector))
    unit = block.draws.unit
    sectors = [names[code] for code in block.sector]
    industries = [SECTORS[s][int(u * len(SECTORS[s]))] for s, u in zip(sectors, unit[:, 1],
                                                                         strict=True)]
    suffixes = (unit[:, 2] * len(_SUFFIXES)).astype(int)
    return {
        "symbol": symbols,
        "name": [f"{t.title()} {_SUFFIXES[k]}" for t, k in zip(symbols, suffixes, strict=True)],
        "sector": sectors, "industry": industries, "market_cap": block.market_cap,
    }
