"""Price data sources: the embedded synthetic universe, files on disk, real sample prices."""

from technic_panel.data.base import (
    OHLCV_COLUMNS,
    SNAPSHOT_COLUMNS,
    UNIVERSE_COLUMNS,
    Bars,
    DataError,
    DataSource,
    TransientDataError,
)

__all__ = [
    "OHLCV_COLUMNS", "SNAPSHOT_COLUMNS", "UNIVERSE_COLUMNS",
    "Bars", "DataError", "DataSource", "TransientDataError",
]
