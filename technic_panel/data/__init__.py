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
from technic_panel.data.files import FileSource
from technic_panel.data.sample import SampleSource
from technic_panel.data.synthetic import SyntheticSource
from technic_panel.data.throttle import RateLimiter, ThrottledSource

__all__ = [
    "OHLCV_COLUMNS", "SNAPSHOT_COLUMNS", "UNIVERSE_COLUMNS",
    "Bars", "DataError", "DataSource", "TransientDataError",
    "FileSource", "RateLimiter", "SampleSource", "SyntheticSource", "ThrottledSource",
]
