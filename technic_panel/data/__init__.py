"""Price data sources: the embedded synthetic universe, files on disk, a bar store, real samples."""

from technic_panel.data.base import (
    OHLCV_COLUMNS,
    PLAN_COLUMNS,
    SNAPSHOT_COLUMNS,
    UNIVERSE_COLUMNS,
    Bars,
    DataError,
    DataSource,
    PlannableSource,
    TransientDataError,
)
from technic_panel.data.files import FileSource
from technic_panel.data.sample import SampleSource
from technic_panel.data.store import BarStore, StoreError, StoreInfo, StoreSource, WriteReport
from technic_panel.data.synthetic import SyntheticSource
from technic_panel.data.throttle import RateLimiter, ThrottledSource

__all__ = [
    "OHLCV_COLUMNS", "PLAN_COLUMNS", "SNAPSHOT_COLUMNS", "UNIVERSE_COLUMNS",
    "Bars", "DataError", "DataSource", "PlannableSource", "TransientDataError",
    "FileSource", "RateLimiter", "SampleSource", "SyntheticSource", "ThrottledSource",
    "BarStore", "StoreError", "StoreInfo", "StoreSource", "WriteReport",
]
