"""Validation of what is written to a bar store: symbols, bars, universe rows.

Bars keep the rules every source keeps (:func:`~technic_panel.data.base.check_bars`:
positive prices, low <= open, close <= high, volume >= 0, dates in 1900-2100, each date
once), every cell is a finite number or a date, and a symbol holds at least
:data:`~technic_panel.data.base.MIN_BARS` bars. Rows are counted from 1 in the order
given; messages name the label (symbol or file), the row and the rule.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from technic_panel.data.base import (
    MIN_BARS,
    OHLCV_COLUMNS,
    UNIVERSE_COLUMNS,
    Bars,
    DataError,
    check_bars,
    check_rule,
)

_SYMBOL = re.compile(r"[^\s/\\.\x00-\x1f\x7f][^\s/\\\x00-\x1f\x7f]{0,63}")
"""A symbol: 1-64 characters, no whitespace, slash, backslash or control character, no leading
dot (it names an exported file)."""
META_TEXT = ("name", "sector", "industry")
RESERVED = {"shard", "start", "length", "priority_score", "first_date", "bars", "date", "close",
            "change_pct", "return_5d", "return_21d", "rel_volume", "dollar_volume",
            "avg_dollar_volume"}
"""Column names of the store itself, refused as extra universe columns."""


def checked_symbol(symbol: object) -> str:
    """Return ``symbol`` stripped and upper-cased, as FileSource names them; DataError if bad."""
    text = symbol.strip().upper() if isinstance(symbol, str) else ""
    if not _SYMBOL.fullmatch(text):
        raise DataError(f"BarStore: symbol {symbol!r} must be 1-64 characters without spaces, "
                        "slashes or control characters, not starting with '.'")
    return text


def checked_bars(label: str, value: object, after: np.datetime64 | None = None) -> Bars:
    """Return ``value`` (an OHLCV frame indexed by date, or :class:`Bars`) as sorted bars.

    With ``after``, only the rows dated after it are checked and returned (an append
    writes nothing else); the result may then be empty.

    Raises
    ------
    DataError
        Naming ``label``, the first bad row (from 1) and the rule it breaks.
    """
    raw_dates, raw = _columns(label, value)
    count = len(np.asarray(raw["close"]))
    if count == 0:
        raise DataError(f"{label}: no bars")
    rows = np.arange(1, count + 1)
    dates = _dates(label, rows, raw_dates)
    kept = slice(None) if after is None else np.flatnonzero(dates > after)
    rows, dates = rows[kept], dates[kept]
    values = {name: _numbers(label, rows, name, np.asarray(column)[kept])
              for name, column in raw.items()}
    order = check_bars(label, rows, dates, values)
    return Bars(dates[order].astype("datetime64[ns]"),
                *(np.ascontiguousarray(values[name][order]) for name in OHLCV_COLUMNS))


def check_length(label: str, count: int) -> None:
    """Raise a DataError unless ``count`` bars are enough to scan a symbol."""
    if count < MIN_BARS:
        raise DataError(f"{label}: {count} bars; a symbol needs at least {MIN_BARS} "
                        "(the indicators' longest look-back)")


def _columns(label: str, value: object) -> tuple[object, dict[str, object]]:
    """Return the date column (or index) and the OHLCV columns of a frame or of Bars."""
    if isinstance(value, Bars):
        return value.dates, {name: getattr(value, name) for name in OHLCV_COLUMNS}
    if not isinstance(value, pd.DataFrame):
        raise DataError(f"{label} must be a DataFrame of {', '.join(OHLCV_COLUMNS)} indexed by "
                        f"date, or Bars, not {type(value).__name__}")
    names = {str(column).strip().lower(): column for column in value.columns}
    lacking = [name for name in OHLCV_COLUMNS if name not in names]
    if lacking:
        raise DataError(f"{label} lacks the column{'s' if len(lacking) > 1 else ''} "
                        f"{', '.join(lacking)} (needs {', '.join(OHLCV_COLUMNS)}, indexed by "
                        "date or with a date column)")
    dates = value[names["date"]] if "date" in names else value.index
    return dates, {name: value[names[name]] for name in OHLCV_COLUMNS}


def _numbers(label: str, rows: np.ndarray, name: str, column: object) -> np.ndarray:
    """Return a column as float64: numbers as they are, text parsed; every cell finite."""
    array = column.to_numpy() if isinstance(column, pd.Series) else np.asarray(column)
    if array.dtype.kind in "fiu":
        values = array.astype(np.float64, copy=False)
    else:
        series = pd.Series(array, dtype=object)
        parsed = pd.to_numeric(series, errors="coerce")
        check_rule(label, rows, (parsed.isna() & series.notna()).to_numpy(),
                   f"{name} is not a number")
        values = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
    check_rule(label, rows, np.isnan(values), f"{name} is empty")
    check_rule(label, rows, np.isinf(values), f"{name} is not a finite number")
    return values


def _dates(label: str, rows: np.ndarray, raw: object) -> np.ndarray:
    """Return dates as datetime64 of their own unit (time zones dropped); every cell a date."""
    if isinstance(raw, pd.DatetimeIndex | pd.Series) and pd.api.types.is_datetime64_any_dtype(raw):
        local = pd.DatetimeIndex(raw).tz_localize(None) if getattr(raw.dtype, "tz", None) else raw
        array = local.to_numpy()
    elif isinstance(raw, np.ndarray) and raw.dtype.kind == "M":
        array = raw
    else:
        text = pd.Series(np.asarray(raw, dtype=object))
        check_rule(label, rows, text.isna().to_numpy(), "date is empty")
        parsed = pd.to_datetime(text.astype("string"), errors="coerce", format="mixed")
        check_rule(label, rows, parsed.isna().to_numpy(), "date is not a date like 2024-01-31")
        return _dates(label, rows, parsed)
    check_rule(label, rows, np.isnat(array), "date is empty")
    return array


def checked_universe(frame: pd.DataFrame) -> pd.DataFrame:
    """Return universe rows with a checked ``symbol``, lower-case names, numeric market_cap.

    Any column besides ``symbol``, name, sector, industry and market_cap is kept as an
    extra column; one named like a snapshot or location column is refused.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"BarStore.set_universe needs a DataFrame, not {type(frame).__name__}")
    columns = [str(column).strip().lower() for column in frame.columns]
    if len(set(columns)) < len(columns) or "" in columns:
        raise ValueError("BarStore.set_universe needs distinct, non-empty column names "
                         "(compared case-insensitively)")
    if "symbol" not in columns:
        raise ValueError("BarStore.set_universe needs a symbol column; it may have "
                         f"{', '.join(UNIVERSE_COLUMNS[1:5])} and extra columns")
    reserved = sorted(set(columns) & RESERVED)
    if reserved:
        raise ValueError(f"BarStore.set_universe: the column names {', '.join(reserved)} are the "
                         "store's own (snapshot and location columns); rename them")
    frame = frame.set_axis(columns, axis=1).reset_index(drop=True)
    frame["symbol"] = [_universe_symbol(i, s) for i, s in enumerate(frame["symbol"], 1)]
    for name in META_TEXT:
        if name in frame:
            frame[name] = frame[name].astype("string").astype(object).where(frame[name].notna(),
                                                                            None)
    if "market_cap" in frame:
        frame["market_cap"] = _market_caps(frame["market_cap"])
    return frame.drop_duplicates("symbol", keep="last")


def _universe_symbol(row: int, symbol: object) -> str:
    try:
        return checked_symbol(symbol)
    except DataError as exc:
        raise ValueError(f"BarStore.set_universe row {row}: {exc}") from exc


def _market_caps(column: pd.Series) -> np.ndarray:
    parsed = pd.to_numeric(column, errors="coerce")
    values = parsed.to_numpy(dtype="float64", na_value=np.nan)
    bad = (parsed.isna() & column.notna()).to_numpy() | np.isinf(values)
    if bad.any():
        raise ValueError(f"BarStore.set_universe row {np.flatnonzero(bad)[0] + 1}: market_cap "
                         "must be a finite number or empty")
    return values
