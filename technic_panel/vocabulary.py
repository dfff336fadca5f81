"""The words every layer shares, defined once: signals, tiers, statuses, reasons, columns.

The engine, the streaming core, the API and the UI import these names from here, so a
signal or a status is spelled in one place; :func:`require` is the one way a constructor
refuses a bad argument, in param's style ("Owner.name must be rule, not value").
"""

from __future__ import annotations

MESSAGE_TYPES = ("result", "update", "progress", "error", "alert", "final")
"""Every ``type`` a message may have."""

ALERT_RULES = ("entered_filter", "left_filter", "signal_changed")
"""Every ``rule`` an ``alert`` may name: a live symbol entered or left the filter, or its
signal class changed, on a closed bar."""

FEED_KINDS = ("synthetic", "replay")
"""Where a live scan's bars come from: the synthetic path continued, or stored bars replayed."""

SIGNALS = ("STRONG_BUY", "BUY", "HOLD", "SELL", "STRONG_SELL")
"""Every ``signal`` a result may have, strongest buy first."""

EXECUTOR_KINDS = ("thread", "process", "dask")
"""Where a scan's symbols can be computed: threads, processes or a Dask cluster."""

PRIORITY_TIERS = ("high", "medium", "low")
"""Every ``priority_tier`` a result may have, first scanned first."""

FINAL_STATUSES = ("completed", "stopped", "terminated", "failed")
"""Every ``status`` the summary of a ``final`` message may have."""

STOP_REASONS = ("max_signals", "max_fraction", "timeout", "manual", "inactive")
"""Every reason a scan can end early; ``manual`` and ``inactive`` make it ``stopped``."""

VIEW_STATUSES = ("idle", "running", "paused", "stopping", "finished", "failed")
"""Every status a dashboard's scan may show."""

ACTIVE_STATUSES = frozenset({"running", "paused", "stopping"})
"""The view statuses of a scan that has not ended."""

INDICATOR_COLUMNS = (
    "close", "change_pct", "volume",
    "rsi_14", "macd", "macd_signal", "macd_hist",
    "sma_20", "sma_50", "sma_200", "ema_20",
    "atr_14", "atr_pct", "adx_14",
    "bb_upper", "bb_middle", "bb_lower", "bb_pct_b",
    "obv_slope", "roc_5", "roc_21", "roc_63", "roc_126",
    "dist_high_20", "dist_high_52w", "range_pos_52w", "high_52w", "low_52w", "stretch_atr",
    "rel_volume", "avg_dollar_volume_20",
)
"""Every indicator ``latest_indicators`` returns; filter expressions may use them all.

``atr_pct``, ``roc_*``, ``dist_high_*`` and ``change_pct`` are percentages;
``bb_pct_b`` and ``range_pos_52w`` are positions in [0, 1] (``bb_pct_b`` may
leave it); ``high_52w`` and ``low_52w`` are prices; ``stretch_atr`` is how many
ATRs the close sits above (negative: below) its 20-day mean; ``obv_slope`` is
the 20-day regression slope of OBV as a fraction of the mean daily volume;
``rel_volume`` is today's volume over the mean of the 20 days before it.
"""

SCORE_COMPONENTS = ("trend", "momentum", "volume", "volatility", "breakout")
"""The parts of a technical rating, each in [0, 1]."""

SCORE_COLUMNS = (
    "tech_rating", "alpha_score", "signal", "side", "entry", "stop", "target", "reward_risk",
    *(f"score_{name}" for name in SCORE_COMPONENTS),
)
"""Columns ``Strategy.score`` returns."""

RESULT_COLUMNS = (
    "symbol", "name", "sector", "industry", "market_cap", "priority_tier", "batch_number",
    *INDICATOR_COLUMNS, *SCORE_COLUMNS,
)
"""Columns of a result row; a filter expression may use any of them."""


class SafeData(dict):
    """A flat dict its producer guarantees JSON-safe: str keys, finite floats, plain values.

    The scanner builds its events' data this way, so the streaming core's ``json_safe``
    copies it without checking each value again. Should a producer break the promise,
    ``to_json`` still refuses NaN, so it can never reach JSON.
    """


def require(owner: str, name: str, value: object, rule: str, ok: bool) -> None:
    """Raise ``ValueError("{owner}.{name} must be {rule}, not {value!r}")`` unless ``ok``.

    Examples
    --------
    >>> require("RateLimiter", "rate", -1, "> 0", -1 > 0)
    Traceback (most recent call last):
    ValueError: RateLimiter.rate must be > 0, not -1
    """
    if not ok:
        raise ValueError(f"{owner}.{name} must be {rule}, not {value!r}")
