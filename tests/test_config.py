"""ScanConfig.from_mapping: every bad setting is refused naming the field and the value."""

from __future__ import annotations

import json

import pytest

from technic_panel.config import ConfigError, ScanConfig, strategy_for
from technic_panel.data.synthetic import SECTORS
from technic_panel.engine.scoring import STRATEGY_SETTINGS, Strategy
from technic_panel.vocabulary import (
    INDICATOR_COLUMNS,
    RESULT_COLUMNS,
    SCORE_COLUMNS,
    SCORE_COMPONENTS,
)


def refused(values: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        ScanConfig.from_mapping(values)
    assert isinstance(info.value, ValueError)
    return info.value


def test_defaults_are_valid():
    config = ScanConfig.from_mapping({})
    assert config.source == "synthetic" and config.symbols == 5000 and config.seed == 42
    assert config.executor == "thread" and config.filter is None


def test_unknown_key_names_it_and_lists_the_valid_settings():
    error = refused({"symbols": 10, "max_signal": 5})
    assert error.field == "max_signal"
    message = str(error)
    assert "'max_signal'" in message
    for name in ScanConfig.setting_names():
        assert name in message


@pytest.mark.parametrize(("field", "value", "shown"), [
    ("max_fraction", 1.5, "1.5"),
    ("max_fraction", 0, "0"),
    ("max_fraction", -0.2, "-0.2"),
    ("symbols", 0, "0"),
    ("symbols", 100_001, "100001"),
    ("symbols", 1e20, "100000000000000000000"),
    ("seed", -1, "-1"),
    ("timeout", 0, "0"),
    ("timeout", -3, "-3"),
    ("error_rate", 2, "2"),
    ("latency_ms", -5, "-5"),
    ("min_price", -1, "-1"),
    ("min_dollar_volume", -1e6, "-1000000"),
    ("min_rating", 101, "101"),
    ("min_rating", float("nan"), "nan"),
    ("workers", 0, "0"),
    ("max_signals", 0, "0"),
    ("executor", "gpu", "gpu"),
    ("source", "yahoo", "yahoo"),
    ("sectors", ["Foo"], "Foo"),
    ("sectors", ["Energy", "Crypto"], "Crypto"),
    ("sectors", "Energy", "Energy"),
    ("quality_signals", ["MAYBE"], "MAYBE"),
    ("filter", "foo > 1", "foo"),
    ("filter", "close >", "close >"),
    ("filter", "abs(close) > 1", "Call"),
    ("max_signals", True, "True"),
    ("seed", False, "False"),
    ("min_price", True, "True"),
    ("max_fraction", False, "False"),
])
def test_bad_value_names_field_and_value(field: str, value, shown: str):
    error = refused({field: value})
    assert error.field == field
    message = str(error)
    assert field in message
    assert shown in message


@pytest.mark.parametrize(("value", "shown"), [
    (2.5, "2.5"),
    ("x", "'x'"),
])
def test_wrong_type_for_integer_shows_the_value(value, shown: str):
    error = refused({"symbols": value})
    assert error.field == "symbols"
    assert "symbols" in str(error)
    assert shown in str(error)


@pytest.mark.parametrize("value", [2.5, "x", None, [5]])
def test_wrong_type_for_integer_is_refused(value):
    error = refused({"symbols": value})
    assert error.field == "symbols" and "symbols" in str(error)


def test_files_source_needs_a_path():
    error = refused({"source": "files"})
    assert error.field == "path"
    assert "path" in str(error) and "files" in str(error)


def test_path_must_exist(tmp_path):
    missing = str(tmp_path / "nowhere")
    error = refused({"source": "files", "path": missing})
    assert error.field == "path"
    assert "path" in str(error) and missing in str(error)
    config = ScanConfig.from_mapping({"source": "files", "path": str(tmp_path)})
    assert config.path == str(tmp_path)


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_scheduler_needs_the_dask_executor(executor: str):
    error = refused({"executor": executor, "scheduler": "tcp://127.0.0.1:8786"})
    assert error.field == "scheduler"
    assert "scheduler" in str(error) and executor in str(error) and "dask" in str(error)
    config = ScanConfig.from_mapping({"executor": "dask", "scheduler": "tcp://127.0.0.1:8786"})
    assert config.scheduler == "tcp://127.0.0.1:8786"


def test_filter_error_lists_result_columns():
    error = refused({"filter": "close > sma_300"})
    assert error.field == "filter"
    assert "sma_300" in str(error) and "tech_rating" in str(error)
    assert isinstance(error.__cause__, ValueError)


@pytest.mark.parametrize("text", [
    "rsi_14 < 30 and close > sma_200", "signal == 'STRONG_BUY'", "tech_rating >= 70",
    "sector == 'Energy' and priority_tier == 'high'", "reward_risk > 2 or score_trend > 0.8",
])
def test_filters_over_result_columns_are_accepted(text: str):
    assert ScanConfig.from_mapping({"filter": text}).filter == text


def test_result_columns_cover_indicators_and_scores():
    assert set(INDICATOR_COLUMNS) <= set(RESULT_COLUMNS)
    assert set(SCORE_COLUMNS) <= set(RESULT_COLUMNS)
    assert len(set(RESULT_COLUMNS)) == len(RESULT_COLUMNS)


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("min_price", 5, 5.0), ("timeout", 3, 3.0), ("max_fraction", 1, 1.0),
    ("error_rate", 0, 0.0), ("min_rating", 70, 70.0), ("latency_ms", 20, 20.0),
])
def test_ints_are_accepted_for_number_fields(field: str, value: int, expected: float):
    config = ScanConfig.from_mapping({field: value})
    assert getattr(config, field) == expected
    assert isinstance(getattr(config, field), float)


@pytest.mark.parametrize(("field", "value"), [
    ("symbols", 100.0), ("seed", 7.0), ("workers", 4.0), ("max_signals", 25.0),
])
def test_integral_floats_are_accepted_for_integer_fields(field: str, value: float):
    config = ScanConfig.from_mapping({field: value})
    assert getattr(config, field) == int(value)
    assert type(getattr(config, field)) is int


def test_none_is_accepted_where_allowed():
    values = {"workers": None, "max_signals": None, "max_fraction": None, "timeout": None,
              "filter": None, "scheduler": None, "path": None}
    config = ScanConfig.from_mapping(values)
    assert all(getattr(config, name) is None for name in values)


def test_to_dict_round_trips_through_from_mapping(tmp_path):
    values = {
        "source": "files", "path": str(tmp_path), "symbols": 750, "seed": 9,
        "sectors": ["Energy", "Utilities"], "min_price": 5.0, "min_dollar_volume": 1e6,
        "executor": "process", "workers": 3, "latency_ms": 2.5, "error_rate": 0.05,
        "max_signals": 20, "min_rating": 65.0, "quality_signals": ["STRONG_BUY", "BUY"],
        "max_fraction": 0.5, "timeout": 30.0, "filter": "rsi_14 < 30",
    }
    config = ScanConfig.from_mapping(values)
    as_dict = config.to_dict()
    assert as_dict == {**ScanConfig().to_dict(), **values}
    assert json.loads(json.dumps(as_dict)) == as_dict  # JSON-able
    again = ScanConfig.from_mapping(json.loads(json.dumps(as_dict)))
    assert again.to_dict() == as_dict
    assert ScanConfig.from_mapping(ScanConfig().to_dict()).to_dict() == ScanConfig().to_dict()


def test_setting_names_are_every_parameter_but_name():
    names = ScanConfig.setting_names()
    assert "name" not in names
    assert set(names) == set(ScanConfig.param) - {"name"}
    assert names[:3] == ["source", "path", "symbols"]  # declaration order
    assert list(ScanConfig().to_dict()) == names


def test_configs_do_not_share_list_settings():
    first = ScanConfig.from_mapping({"sectors": ["Energy"]})
    second = ScanConfig.from_mapping({})
    assert second.sectors == [] and first.sectors == ["Energy"]
    assert set(first.sectors) <= set(SECTORS)


# --- Strategy settings ------------------------------------------------------------------------


def test_strategy_settings_are_scan_settings_defined_by_the_strategy():
    names = ScanConfig.setting_names()
    for name in STRATEGY_SETTINGS:
        assert name in names
        ours, theirs = ScanConfig.param[name], Strategy.param[name]
        for attribute in ("default", "bounds", "softbounds", "step", "label", "doc",
                          "inclusive_bounds"):
            assert getattr(ours, attribute) == getattr(theirs, attribute), (name, attribute)


def test_strategy_for_builds_the_configured_strategy():
    config = ScanConfig.from_mapping({"weight_trend": 2, "strong_buy_threshold": 90,
                                      "stop_atr": 1.5})
    strategy = strategy_for(config)
    assert isinstance(strategy, Strategy)
    assert (strategy.weight_trend, strategy.strong_buy_threshold, strategy.stop_atr) == \
        (2.0, 90.0, 1.5)
    assert strategy.buy_threshold == Strategy.param["buy_threshold"].default
    assert strategy_for(ScanConfig()).param.values() | {"name": None} == \
        Strategy().param.values() | {"name": None}


@pytest.mark.parametrize(("values", "field", "shown"), [
    ({"weight_trend": -1}, "weight_trend", "-1"),
    ({"weight_breakout": 11}, "weight_breakout", "11"),
    ({"buy_threshold": 101}, "buy_threshold", "101"),
    ({"stop_atr": 0}, "stop_atr", "0"),
    ({"overbought_rsi": 40}, "overbought_rsi", "40"),
    ({"max_stretch_atr": "wide"}, "max_stretch_atr", "wide"),
    ({"buy_threshold": 90}, "buy_threshold", "90.0"),  # above strong_buy_threshold (80)
    ({"strong_sell_threshold": 30}, "strong_sell_threshold", "30.0"),  # above sell (28)
    ({"target_atr": 9}, "target_atr", "9.0"),  # beyond max_target_atr (8)
    ({"max_target_atr": 2}, "max_target_atr", "2.0"),  # below target_atr (3)
    ({f"weight_{name}": 0 for name in SCORE_COMPONENTS}, "weight_trend", "must not all be 0"),
])
def test_bad_strategy_settings_are_refused_naming_the_field(values, field, shown):
    error = refused(values)
    assert error.field == field
    assert field in str(error) and shown in str(error)


def test_the_cross_field_rules_are_checked_on_the_config_itself():
    config = ScanConfig(sell_threshold=75.0)  # each value within its bounds, together not
    with pytest.raises(ConfigError, match="sell_threshold < buy_threshold") as info:
        config.validate()
    assert info.value.field == "sell_threshold"


# --- universe_path: symbol metadata for source='files' ----------------------------------------


def write_folder(tmp_path):
    """A data folder with one price file (ACME.csv, 60 bars) and a universe file."""
    import pandas as pd

    from technic_panel.data import SyntheticSource

    data = tmp_path / "data"
    (data / "prices").mkdir(parents=True)
    source = SyntheticSource(1)
    bars = source.bars(source.universe()["symbol"].iloc[0])
    bars.to_frame().tail(60).to_csv(data / "prices" / "ACME.csv")
    pd.DataFrame({"symbol": ["ACME"], "sector": ["Energy"], "name": ["Acme Corp"]}).to_csv(
        data / "universe.csv", index=False)
    return data


def test_universe_path_is_a_setting_read_by_the_files_source(tmp_path):
    from technic_panel.config import source_for

    data = write_folder(tmp_path)
    config = ScanConfig.from_mapping({"source": "files", "path": str(data / "prices"),
                                      "universe_path": str(data / "universe.csv")})
    assert config.to_dict()["universe_path"] == str(data / "universe.csv")
    universe = source_for(config).universe()
    assert universe[["symbol", "name", "sector"]].values.tolist() == [
        ["ACME", "Acme Corp", "Energy"]]
    unset = source_for(ScanConfig.from_mapping({"source": "files", "path": str(data / "prices")}))
    assert unset.universe()["sector"].tolist() == ["Unknown"]


def test_universe_path_needs_the_files_source_and_an_existing_file(tmp_path):
    error = refused({"universe_path": str(tmp_path / "universe.csv")})
    assert error.field == "universe_path"
    assert str(error) == ("ScanConfig.universe_path needs source='files', "
                          "not source='synthetic'")
    missing = str(tmp_path / "nowhere.csv")
    error = refused({"source": "files", "path": str(tmp_path), "universe_path": missing})
    assert error.field == "universe_path"
    assert str(error) == f"ScanConfig.universe_path must be an existing file, not {missing!r}"


def test_a_remote_universe_path_must_lie_inside_the_operators_folders(tmp_path):
    from technic_panel.policy import ServerPolicy

    data = write_folder(tmp_path)
    outside = tmp_path / "secret.csv"
    outside.write_text("symbol,sector\nACME,Energy\n")
    policy = ServerPolicy(data_dirs=(data,))
    request = {"source": "files", "path": str(data / "prices")}
    config = ScanConfig.from_mapping(
        {**request, "universe_path": str(data / "prices" / ".." / "universe.csv")}, policy)
    assert config.universe_path == str((data / "universe.csv").resolve())
    messages = set()
    for path in (outside, tmp_path / "absent.csv", data / ".." / "secret.csv"):
        with pytest.raises(ConfigError) as info:
            ScanConfig.from_mapping({**request, "universe_path": str(path)}, policy)
        assert info.value.field == "universe_path"
        messages.add(str(info.value))
    assert messages == {"ScanConfig.universe_path must lie inside a folder the server's "
                        "operator allows (TECHNIC_DATA_DIRS)"}  # the same, whether it exists
    with pytest.raises(ConfigError) as info:
        ScanConfig.from_mapping({**request, "universe_path": str(data / "nothing.csv")}, policy)
    assert str(info.value) == "ScanConfig.universe_path names nothing inside the allowed folders"


# --- source='store' --------------------------------------------------------------------------

def make_store(folder):
    """A bar store with one symbol (250 bars) in ``folder``; returns its DuckDB file."""
    from helpers import daily_bars

    from technic_panel.data import BarStore

    folder.mkdir(parents=True, exist_ok=True)
    with BarStore(folder / "bars.duckdb", create=True) as store:
        store.write({"ACME": daily_bars(250)})
    return folder / "bars.duckdb"


def test_the_store_source_needs_an_existing_path_and_opens_a_store_source(tmp_path):
    from technic_panel.config import source_for
    from technic_panel.data import StoreSource

    error = refused({"source": "store"})
    assert (error.field, str(error)) == ("path", "ScanConfig.path is required when "
                                                 "source='store' (a bar store's DuckDB file, "
                                                 "made by `technic-data ingest`)")
    missing = str(tmp_path / "none.duckdb")
    assert str(refused({"source": "store", "path": missing})) == (
        f"ScanConfig.path must exist, not {missing!r}")
    config = ScanConfig.from_mapping({"source": "store", "path": str(make_store(tmp_path))})
    source = source_for(config)
    assert isinstance(source, StoreSource) and source.symbols() == ["ACME"]


def test_a_remote_store_path_must_lie_inside_the_operators_folders(tmp_path):
    from technic_panel.policy import ServerPolicy

    inside, outside = make_store(tmp_path / "data"), make_store(tmp_path / "private")
    policy = ServerPolicy(data_dirs=(tmp_path / "data",))
    config = ScanConfig.from_mapping({"source": "store", "path": str(inside)}, policy)
    assert config.path == str(inside.resolve())
    messages = set()
    for path in (outside, tmp_path / "data" / ".." / "private" / "bars.duckdb",
                 tmp_path / "absent.duckdb"):
        with pytest.raises(ConfigError) as info:
            ScanConfig.from_mapping({"source": "store", "path": str(path)}, policy)
        assert info.value.field == "path"
        messages.add(str(info.value))
    assert messages == {"ScanConfig.path must lie inside a folder the server's operator allows "
                        "(TECHNIC_DATA_DIRS)"}
