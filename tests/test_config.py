"""ScanConfig.from_mapping: every bad setting is refused naming the field and the value."""

from __future__ import annotations

import json

import pytest

from technic_panel.config import ConfigError, ScanConfig
from technic_panel.data.synthetic import SECTORS
from technic_panel.vocabulary import INDICATOR_COLUMNS, RESULT_COLUMNS, SCORE_COLUMNS


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
