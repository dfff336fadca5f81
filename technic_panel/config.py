"""ScanConfig: the one set of scan settings behind every door.

The ``technic-scan`` flags (``--max-signals``), the ScanController's params,
the JSON body of ``POST /scan/stream`` and the dashboard's query string
(``max_signals``) all name the same Parameters below, and all are checked by
:meth:`ScanConfig.from_mapping` / :meth:`ScanConfig.validate`, so a bad value is
refused the same way, naming the field, the rule and the value, before any
scan starts. :func:`source_for` opens the data source the settings name.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import param

from technic_panel.data import DataSource, FileSource, SampleSource, SyntheticSource
from technic_panel.data.store import StoreSource
from technic_panel.data.synthetic import SECTORS
from technic_panel.engine.scoring import STRATEGY_SETTINGS, Strategy, StrategyError
from technic_panel.policy import PolicyError, ServerPolicy
from technic_panel.vocabulary import EXECUTOR_KINDS, FEED_KINDS, RESULT_COLUMNS, SIGNALS

_PATH_SOURCES = {"files": "a folder of CSV or Parquet files",
                 "store": "a bar store's DuckDB file, made by `technic-data ingest`"}
"""Sources read from ``path``, and what it must name."""
_UNIVERSE_SOURCES = ("files",)
"""Sources that read ``universe_path``."""


class ConfigError(ValueError):
    """An invalid scan setting; ``field`` names it (None for an unparsable whole)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _coerce_number(parameter: param.Parameter, value: Any) -> Any:
    """JSON has one number type: accept 5 for a Number and 5.0 for an Integer."""
    if isinstance(parameter, param.Integer):
        return int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(parameter, param.Number) and isinstance(value, int):
        return float(value)
    return value


def _strategy_setting(name: str) -> param.Number:
    """Return a copy of the Strategy Parameter ``name``: defined once, a scan setting too."""
    strategy = Strategy.param[name]
    return param.Number(strategy.default, bounds=strategy.bounds,
                        softbounds=strategy.softbounds, step=strategy.step,
                        label=strategy.label, doc=strategy.doc)


class ScanConfig(param.Parameterized):
    """Every setting of one scan, with its documentation and bounds."""

    source: param.Selector[str] = param.Selector(
        default="synthetic", objects=["synthetic", "sample", "files", "store"],
        doc="Price data: the embedded synthetic universe, the real sample "
            "prices bokeh-sampledata ships, a folder of files (path) or a bar store "
            "(path: its DuckDB file).")
    path = param.String(default=None, allow_None=True,
                        doc="Folder (or file) of CSV/Parquet prices for source='files'; the "
                            "bar store's DuckDB file for source='store'.")
    symbols = param.Integer(default=5000, bounds=(1, 100_000),
                            doc="Universe size of the synthetic source.")
    seed = param.Integer(default=42, bounds=(0, 2**31 - 1),
                         doc="Seed of the synthetic universe: same seed, same prices.")
    universe_path = param.String(default=None, allow_None=True,
                                 doc="CSV/Parquet file of symbol metadata for source='files': a "
                                     "symbol column and any of name, sector, industry, "
                                     "market_cap (default: sector 'Unknown').")
    sectors = param.ListSelector(default=[], objects=list(SECTORS),
                                 doc="Scan only these sectors (synthetic sector names); empty: "
                                     "all.")
    min_price = param.Number(default=0.0, bounds=(0, None),
                             doc="Skip symbols whose last close is below this.")
    min_dollar_volume = param.Number(default=0.0, bounds=(0, None),
                                     doc="Skip symbols whose 20-day average dollar volume is "
                                         "below this.")
    executor: param.Selector[str] = param.Selector(
        default="thread", objects=list(EXECUTOR_KINDS),
        doc="Where symbols are computed: threads, processes or Dask.")
    workers = param.Integer(default=None, allow_None=True, bounds=(1, 256),
                            doc="Worker count (default: 1 thread, 32 when the source waits "
                                "on latency, or one process or Dask worker per core).")
    scheduler = param.String(default=None, allow_None=True,
                             doc="Dask scheduler address (tcp://host:8786); none starts a "
                                 "LocalCluster.")
    latency_ms = param.Number(default=0.0, bounds=(0, 60_000),
                              doc="Emulated provider latency per symbol, in ms (synthetic).")
    error_rate = param.Number(default=0.0, bounds=(0, 1),
                              doc="Share of symbols whose data fetch fails (synthetic).")
    max_signals = param.Integer(default=None, allow_None=True, bounds=(1, None),
                                doc="Stop after this many high-quality signals.")
    min_rating = param.Number(default=0.0, bounds=(0, 100),
                              doc="Least tech_rating for a signal to count as high-quality.")
    quality_signals = param.ListSelector(default=["STRONG_BUY"], objects=list(SIGNALS),
                                         doc="Signals that count towards max_signals.")
    max_fraction = param.Number(default=None, allow_None=True, bounds=(0, 1),
                                inclusive_bounds=(False, True),
                                doc="Stop after this share of the universe is processed.")
    timeout = param.Number(default=None, allow_None=True, bounds=(0, 86_400),
                           inclusive_bounds=(False, True),
                           doc="Stop after this many seconds, even if no result arrives.")
    filter = param.String(default=None, allow_None=True,
                          doc="Only results passing this expression are sent, e.g. "
                              "'rsi_14 < 30 and close > sma_200'.")
    weight_trend = _strategy_setting("weight_trend")
    weight_momentum = _strategy_setting("weight_momentum")
    weight_volume = _strategy_setting("weight_volume")
    weight_volatility = _strategy_setting("weight_volatility")
    weight_breakout = _strategy_setting("weight_breakout")
    strong_buy_threshold = _strategy_setting("strong_buy_threshold")
    buy_threshold = _strategy_setting("buy_threshold")
    sell_threshold = _strategy_setting("sell_threshold")
    strong_sell_threshold = _strategy_setting("strong_sell_threshold")
    overbought_rsi = _strategy_setting("overbought_rsi")
    max_stretch_atr = _strategy_setting("max_stretch_atr")
    stop_atr = _strategy_setting("stop_atr")
    target_atr = _strategy_setting("target_atr")
    max_target_atr = _strategy_setting("max_target_atr")
    live = param.Boolean(default=False,
                         doc="Keep the scan going after its first pass: re-score each symbol "
                             "on every bar of the feed, send changed rows and alerts, until "
                             "Stop or timeout (max_signals and max_fraction end the first "
                             "pass only).")
    feed: param.Selector[str] = param.Selector(
        default="synthetic", objects=list(FEED_KINDS),
        doc="Bars of a live scan: the synthetic path continued, or the data's own bars "
            "replayed from replay_from.")
    bar_interval = param.Number(default=1.0, bounds=(0.05, 3600),
                                doc="Seconds of wall time per bar of the synthetic feed.")
    speed = param.Number(default=1.0, bounds=(0, 10_000_000), inclusive_bounds=(False, True),
                         doc="Replay speed, as a multiple of real time (86400: a day a second).")
    replay_from = param.String(default=None, allow_None=True,
                               doc="First date replayed (feed='replay'), e.g. 2026-03-02; the "
                                   "first pass scores the bars before it.")
    alert_cooldown = param.Number(default=60.0, bounds=(0, 86_400),
                                  doc="Least seconds (wall time) between two alerts of a "
                                      "symbol.")

    @classmethod
    def setting_names(cls) -> list[str]:
        """Return the names of every scan setting, in declaration order."""
        return [name for name in cls.param if name != "name"]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any],
                     policy: ServerPolicy | None = None) -> ScanConfig:
        """Build a validated config from a mapping (JSON body, CLI, query string).

        ``policy`` is the server's, for remote requests (see :meth:`validate`).
        Raises :class:`ConfigError` naming the unknown key or the bad field.
        """
        known = set(cls.setting_names())
        config = cls()
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"ScanConfig has no setting {key!r}; valid settings: "
                                  f"{', '.join(sorted(known))}", field=key)
            if isinstance(value, bool) and not isinstance(cls.param[key], param.Boolean):
                raise ConfigError(f"ScanConfig.{key} must not be a boolean, not {value!r}",
                                  field=key)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"ScanConfig.{key} must be a finite number, not {value!r}",
                                  field=key)
            value = _coerce_number(cls.param[key], value)
            try:
                setattr(config, key, value)
            except (ValueError, TypeError) as exc:
                message = str(exc) if repr(value) in str(exc) else f"{exc} Got {value!r}."
                raise ConfigError(message, field=key) from exc
        return config.validate(policy)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as plain JSON-able values."""
        return {name: getattr(self, name) for name in self.setting_names()}

    def validate(self, policy: ServerPolicy | None = None) -> ScanConfig:
        """Check the rules that span settings or need the file system; return self.

        With the server's ``policy`` (remote requests), settings naming server resources
        must stay inside it, and ``path`` is replaced by its resolved form; without one
        (notebook, CLI), any path and scheduler the user names is allowed.
        """
        from technic_panel.engine.expressions import FilterExpression

        if self.source in _PATH_SOURCES:
            if not self.path:
                raise ConfigError(f"ScanConfig.path is required when source={self.source!r} "
                                  f"({_PATH_SOURCES[self.source]})", field="path")
            if policy is None and not os.path.exists(self.path):
                raise ConfigError(f"ScanConfig.path must exist, not {self.path!r}", field="path")
        if self.universe_path:
            self._check_universe_path(policy)
        if policy is not None:
            self._check_policy(policy)
        if not self.quality_signals:
            raise ConfigError("ScanConfig.quality_signals must name at least one signal "
                              "(e.g. ['STRONG_BUY']), not []", field="quality_signals")
        if self.executor != "dask" and self.scheduler:
            raise ConfigError("ScanConfig.scheduler needs executor='dask', "
                              f"not executor={self.executor!r}", field="scheduler")
        if self.filter:
            try:
                FilterExpression(self.filter, RESULT_COLUMNS)
            except ValueError as exc:
                raise ConfigError(f"ScanConfig.filter: {exc}", field="filter") from exc
        try:
            strategy_for(self).validate()
        except StrategyError as exc:
            raise ConfigError(f"ScanConfig.{exc.field}: {exc}", field=exc.field) from exc
        self._check_live()
        return self

    def _check_live(self) -> None:
        """Check the live settings: a replay needs live=True and a replay_from date."""
        if self.feed == "replay" and not self.live:
            raise ConfigError("ScanConfig.feed='replay' needs live=True", field="feed")
        if self.replay_from is not None and self.feed != "replay":
            raise ConfigError("ScanConfig.replay_from needs feed='replay', "
                              f"not feed={self.feed!r}", field="replay_from")
        if self.feed == "replay":
            import pandas as pd

            try:
                valid = self.replay_from is not None and pd.Timestamp(self.replay_from) \
                    is not pd.NaT
            except (TypeError, ValueError):
                valid = False
            if not valid:
                raise ConfigError("ScanConfig.replay_from must be an ISO date like 2026-03-02 "
                                  f"when feed='replay', not {self.replay_from!r}",
                                  field="replay_from")

    def _check_universe_path(self, policy: ServerPolicy | None) -> None:
        """Check that a source reads universe_path and, for the user, that the file exists."""
        if self.source not in _UNIVERSE_SOURCES:
            needs = " or ".join(f"source={name!r}" for name in _UNIVERSE_SOURCES)
            raise ConfigError(f"ScanConfig.universe_path needs {needs}, "
                              f"not source={self.source!r}", field="universe_path")
        if policy is None and not os.path.isfile(str(self.universe_path)):
            raise ConfigError("ScanConfig.universe_path must be an existing file, not "
                              f"{self.universe_path!r}", field="universe_path")

    def _check_policy(self, policy: ServerPolicy) -> None:
        try:
            policy.check_executor(self.executor, self.workers, self.scheduler)
            if self.source == "synthetic":
                policy.check_symbols(self.symbols)
            if self.source in _PATH_SOURCES and self.path:  # validate() has required one
                self.path = str(policy.data_path(self.path))
            if self.universe_path:
                self.universe_path = _allowed_path(policy, "universe_path", self.universe_path)
        except PolicyError as exc:
            raise ConfigError(str(exc), field=exc.field) from exc


def _allowed_path(policy: ServerPolicy, field: str, path: str) -> str:
    """Return ``path`` resolved inside the operator's folders; PolicyError naming ``field``."""
    try:
        return str(policy.data_path(path))
    except PolicyError as exc:
        message = str(exc).replace("ScanConfig.path", f"ScanConfig.{field}", 1)
        raise PolicyError(message, field=field) from exc


def source_for(config: ScanConfig, *, emulate_provider: bool = True,
               policy: ServerPolicy | None = None) -> DataSource:
    """Return the data source ``config`` names.

    ``emulate_provider=False`` leaves out the synthetic latency and injected
    failures: the same prices, for charts that must not wait or fail. ``policy``
    bounds the size of the files read.
    """
    if config.source == "files":
        if not config.path:  # validate() refuses this; an unvalidated config may hold it
            raise ConfigError("ScanConfig.path is required when source='files'", field="path")
        limit = policy.max_file_bytes if policy is not None else None
        return FileSource(config.path, universe_path=config.universe_path or None,
                          max_file_bytes=limit)
    if config.source == "store":
        if not config.path:  # validate() refuses this; an unvalidated config may hold it
            raise ConfigError("ScanConfig.path is required when source='store'", field="path")
        return StoreSource(config.path)
    if config.source == "sample":
        return SampleSource()
    if not emulate_provider:
        return SyntheticSource(config.symbols, seed=config.seed)
    return SyntheticSource(config.symbols, seed=config.seed, latency_ms=config.latency_ms,
                           error_rate=config.error_rate)


def strategy_for(config: ScanConfig) -> Strategy:
    """Return the scoring :class:`~technic_panel.engine.scoring.Strategy` ``config`` names."""
    return Strategy(**{name: getattr(config, name) for name in STRATEGY_SETTINGS})
