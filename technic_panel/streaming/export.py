"""Result rows as CSV for spreadsheets: figures rounded, formula cells neutralised.

The dashboard's download and ``technic-scan --format csv`` write a scan's rows the same
way, through :func:`csv_text`: numbers rounded to the digits a reader uses
(:data:`DIGITS`), text cells that a spreadsheet would run as a formula prefixed by ``'``
(OWASP's advice on CSV injection), rows ended by CRLF (RFC 4180), so a cell holding CR
or LF is quoted rather than split.

>>> import pandas as pd
>>> csv_text(pd.DataFrame({"symbol": ["=CMD()"], "tech_rating": [71.23456]})).splitlines()
['symbol,tech_rating', "'=CMD(),71.23"]
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from technic_panel.vocabulary import INDICATOR_COLUMNS, SCORE_COMPONENTS

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may read as the start of a formula (OWASP CSV injection)."""

DIGITS: dict[str, int] = {
    **dict.fromkeys(INDICATOR_COLUMNS, 2),
    **dict.fromkeys(("bb_pct_b", "range_pos_52w", "obv_slope", "alpha_score"), 4),
    **dict.fromkeys((f"score_{name}" for name in SCORE_COMPONENTS), 4),
    **dict.fromkeys(("price", "entry", "stop", "target", "reward_risk", "tech_rating"), 2),
    **dict.fromkeys(("volume", "avg_dollar_volume_20", "market_cap"), 0),
}
"""Decimals each numeric result column keeps in a CSV; 0 writes a whole number."""


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with text cells that start a formula prefixed by ``'`` (OWASP).

    Only strings change: numbers, negative ones included, stay numbers.
    """
    def cell(value: Any) -> Any:
        return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) \
            else value

    text = [name for name in frame.columns if not pd.api.types.is_numeric_dtype(frame[name])]
    return frame.assign(**{name: frame[name].map(cell) for name in text})


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with the numeric columns of :data:`DIGITS` rounded (others as they are).

    A column rounded to 0 decimals becomes a nullable integer, so it reads ``758618964``
    and not ``758618964.0``; a missing value stays an empty cell.
    """
    numeric = [name for name in frame.columns
               if name in DIGITS and pd.api.types.is_numeric_dtype(frame[name])]
    return frame.assign(**{
        name: frame[name].round(DIGITS[name]).astype("Int64") if DIGITS[name] == 0
        else frame[name].round(DIGITS[name]) for name in numeric})


def csv_text(frame: pd.DataFrame) -> str:
    """Return ``frame`` as CSV text: rounded, formula cells neutralised, CRLF rows, no index."""
    return csv_safe(rounded(frame)).to_csv(index=False, lineterminator="\r\n")
