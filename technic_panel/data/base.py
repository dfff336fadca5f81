"""The DataSource protocol every price provider implements, and the bar container.

A scan asks three things of a source: the universe with its metadata, one
cheap snapshot of every symbol's latest bar (for prioritising before the scan)
and one symbol's daily history. The scanner's hot path uses :meth:`bars`, plain
numpy arrays, because building a DataFrame per symbol would cost more than
computing its indicators.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import pandas as pd

UNIVERSE_COLUMNS = ("symbol", "name", "sector", "industry", "market_cap", "avg_dollar_volume")
"""Columns of :meth:`DataSource.universe`, in this order."""

OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")
"""Columns of :meth:`DataSource.history`, indexed by a ``date`` DatetimeIndex."""

SNAPSHOT_COLUMNS = (
    "symbol", "date", "close", "change_pct", "return_5d", "return_21d",
    "rel_volume", "dollar_volume",
)
"""Columns of :meth:`DataSource.snapshot`: the last bar plus what is cheap to know of it."""

PLAN_COLUMNS = UNIVERSE_COLUMNS + SNAPSHOT_COLUMNS[1:]
"""Columns of each part :meth:`PlannableSource.plan_parts` yields: universe and snapshot."""


FIRST_DATE = np.datetime64("1900-01-01")
LAST_DATE = np.datetime64("2100-12-31")
"""A bar's date must be in FIRST_DATE..LAST_DATE (both included)."""

MIN_BARS = 200
"""Fewest bars a symbol needs to be scanned: the indicators' longest look-back (SMA 200)."""

_OHLC_RULES = (
    ("low", "high", "high must be >= low"),
    ("low", "open", "low must be <= open"),
    ("open", "high", "open must be <= high"),
    ("low", "close", "low must be <= close"),
    ("close", "high", "close must be <= high"),
)


class DataError(ValueError):
    """A symbol's data is missing, malformed or too short; it fails that symbol only."""


class TransientDataError(DataError):
    """A retryable failure of a remote provider (throttling, timeout, dropped connection)."""


class Bars(NamedTuple):
    """One symbol's daily bars as float64 numpy arrays of equal length, oldest first."""

    dates: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:  # noqa: D105
        return len(self.close)

    def to_frame(self) -> pd.DataFrame:
        """Return the bars as an OHLCV DataFrame indexed by ``date``."""
        index = pd.DatetimeIndex(self.dates, name="date")
        return pd.DataFrame(
            {"open": self.open, "high": self.high, "low": self.low,
             "close": self.close, "volume": self.volume},
            index=index,
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Bars:
        """Build bars from an OHLCV DataFrame indexed by date (as :meth:`to_frame` gives)."""
        def column(name: str) -> np.ndarray:
            return np.ascontiguousarray(frame[name].to_numpy(dtype="float64"))

        return cls(
            frame.index.to_numpy(dtype="datetime64[ns]"),
            column("open"), column("high"), column("low"), column("close"), column("volume"),
        )


@runtime_checkable
class DataSource(Protocol):
    """What a scan needs of a price provider.

    Implementations must be picklable (process and Dask executors ship them to
    workers) and safe to call from several threads at once. A source that waits
    on a remote provider may say so with an ``io_bound = True`` attribute; the
    thread executor then defaults to many threads instead of one. One whose reads
    overlap with scoring (parsing without the GIL) may name the thread executor's
    default with a ``read_threads`` attribute.
    """

    name: str

    def universe(self) -> pd.DataFrame:
        """Return one row per symbol with :data:`UNIVERSE_COLUMNS`."""
        ...

    def snapshot(self) -> pd.DataFrame:
        """Return the last bar of every symbol in one call, with :data:`SNAPSHOT_COLUMNS`."""
        ...

    def history(self, symbol: str) -> pd.DataFrame:
        """Return ``symbol``'s daily OHLCV bars; raise :class:`DataError` if it has none."""
        ...

    def bars(self, symbol: str) -> Bars:
        """Return ``symbol``'s daily bars as arrays; raise :class:`DataError` if it has none."""
        ...


@runtime_checkable
class PlannableSource(Protocol):
    """A source that can be planned piece by piece, so a scan starts before it is all read.

    The scanner reads :meth:`plan_parts` on a background thread and submits the best
    symbols known so far; sources without this capability are planned in one part,
    :meth:`DataSource.universe` merged with :meth:`DataSource.snapshot`.
    """

    def symbols(self) -> list[str]:
        """Return every symbol, cheaply (file names, a store's index): no bar is read."""
        ...

    def plan_parts(self) -> Iterator[pd.DataFrame]:
        """Yield frames with :data:`PLAN_COLUMNS` covering :meth:`symbols` exactly once.

        A symbol whose data cannot be read has NaN snapshot values and is still
        yielded, so the scan reports its failure. The first part is small (at most
        about 256 rows) and comes fast; later parts may grow.
        """
        ...


def snapshot_from_bars(symbol: str, bars: Bars) -> dict[str, object]:
    """Compute one :data:`SNAPSHOT_COLUMNS` row from a symbol's bars (NaN where too short)."""
    close, volume = bars.close, bars.volume
    n = len(close)

    def ret(days: int) -> float:
        return float(close[-1] / close[-1 - days] - 1.0) if n > days else float("nan")

    window = volume[-21:-1] if n > 1 else volume
    mean_volume = float(window.mean()) if len(window) else float("nan")
    return {
        "symbol": symbol,
        "date": pd.Timestamp(bars.dates[-1]),
        "close": float(close[-1]),
        "change_pct": 100.0 * ret(1),
        "return_5d": ret(5),
        "return_21d": ret(21),
        "rel_volume": float(volume[-1] / mean_volume) if mean_volume > 0 else float("nan"),
        "dollar_volume": float(close[-1] * volume[-1]),
    }


def check_rule(label: str, rows: np.ndarray, bad: np.ndarray, rule: str) -> None:
    """Raise a :class:`DataError` naming the first row where ``bad`` holds, and ``rule``.

    ``rows`` numbers the rows for people (a file's row counted from 1 after its header).
    The message never quotes a value, so it may travel to a remote client:
    ``"FileSource: ACME.csv row 3: high must be >= low (2 of 250 rows)"``.
    """
    if bad.any():
        count = int(bad.sum())
        more = f" ({count} of {len(bad)} rows)" if count > 1 else ""
        raise DataError(f"{label} row {rows[np.flatnonzero(bad)[0]]}: {rule}{more}")


def _rule_breaks(dates: np.ndarray,
                 values: dict[str, np.ndarray]) -> Iterator[tuple[np.ndarray, str]]:
    """Yield, rule by rule in the order :func:`check_bars` checks them, the rows breaking it."""
    for name in OHLCV_COLUMNS[:4]:
        yield values[name] <= 0, f"{name} must be > 0"
    yield values["volume"] < 0, "volume must be >= 0"
    for low, high, rule in _OHLC_RULES:
        yield values[low] > values[high], rule
    yield ((dates < FIRST_DATE) | (dates >= LAST_DATE + np.timedelta64(1, "D")),
           f"date must be in {FIRST_DATE}..{LAST_DATE}")


def rows_breaking_rules(dates: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
    """Return which rows break a rule of :func:`check_bars` other than unique dates.

    For checking many symbols' rows at once (a long table): a symbol none of whose rows
    is marked, with rising dates, passes :func:`check_bars` unchanged.
    """
    return np.logical_or.reduce([bad for bad, _ in _rule_breaks(dates, values)])


def check_bars(label: str, rows: np.ndarray, dates: np.ndarray,
               values: dict[str, np.ndarray]) -> np.ndarray:
    """Check complete bars by the rules every bar keeps; return the order that sorts them by date.

    In the order checked: open, high, low and close are > 0 and volume >= 0; low <=
    high, low <= open <= high and low <= close <= high; the date is in
    :data:`FIRST_DATE`..:data:`LAST_DATE`; no date appears twice. ``dates`` is
    datetime64 in any unit (so a year-9999 date is still seen as one) and ``values``
    maps each of :data:`OHLCV_COLUMNS` to finite float64 values.

    Raises
    ------
    DataError
        For the first rule broken, naming ``label``, the first row breaking it and the rule.
    """
    for bad, rule in _rule_breaks(dates, values):
        check_rule(label, rows, bad, rule)
    order = np.argsort(dates, kind="stable")
    ordered, by_date = dates[order], rows[order]
    repeats = np.flatnonzero(ordered[1:] == ordered[:-1])
    if repeats.size:
        first = repeats[np.argmin(by_date[repeats + 1])]
        more = f" ({repeats.size} rows repeat a date)" if repeats.size > 1 else ""
        raise DataError(f"{label} row {by_date[first + 1]}: date repeats row {by_date[first]} "
                        f"(each date may appear once){more}")
    return order
