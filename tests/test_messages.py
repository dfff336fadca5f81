"""Tests for the message contract and its JSON: building, JSON safety, validation, round trips."""

from __future__ import annotations

import copy
import json
import math
import re
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_panel.streaming.contract import (
    MESSAGE_TYPES,
    SIGNALS,
    MessageError,
    validate_data,
    validate_message,
)
from technic_panel.streaming.jsonsafe import (
    from_json,
    json_safe,
    make_message,
    to_json,
    utc_timestamp,
)
from technic_panel.vocabulary import SafeData

TS = "2024-01-15T10:30:45.123Z"
RESULT = {
    "symbol": "AAPL", "signal": "BUY", "tech_rating": 85.2, "alpha_score": 0.78,
    "priority_tier": "high", "batch_number": 1, "position": 3,
    "total_processed": 15, "total_remaining": 85,
}
LIVE = {"bar_time": "2026-11-02T14:30:01.000Z", "feed_time": 1793630401000, "in_filter": True}
ALERT = {"symbol": "AAPL", "rule": "signal_changed", "signal": "BUY", "previous_signal": "HOLD",
         "tech_rating": 61.5, "bar_time": "2026-11-02T14:30:01.000Z"}
DATA = {
    "result": {**RESULT, **LIVE},
    "update": {**RESULT, **LIVE, "changed": ["tech_rating", "signal"], "previous_signal": "HOLD"},
    "alert": ALERT,
    "progress": {"processed": 3, "total": 10},
    "error": {"symbol": "MSFT", "message": "no data"},
    "final": {"status": "completed", "reason": None, "count": 3, "elapsed": 1.5},
}


def good(type_: str = "result", **data_changes) -> dict:
    data = {**DATA[type_], **data_changes}
    return make_message(type_, data, scan_id="scan_1", seq=7, timestamp=TS)


def without(mapping: dict, key: str) -> dict:
    return {name: value for name, value in mapping.items() if name != key}


# --- constants and timestamps -------------------------------------------------------------

def test_constants():
    assert MESSAGE_TYPES == ("result", "update", "progress", "error", "alert", "final")
    assert SIGNALS == ("STRONG_BUY", "BUY", "HOLD", "SELL", "STRONG_SELL")


def test_utc_timestamp_formats_milliseconds_and_z():
    assert utc_timestamp(datetime(2024, 1, 15, 10, 30, 45, 123999)) == TS
    assert utc_timestamp(datetime(2024, 1, 15, 10, 30, 45)) == "2024-01-15T10:30:45.000Z"


def test_utc_timestamp_converts_aware_times_to_utc():
    paris = timezone(timedelta(hours=1))
    assert utc_timestamp(datetime(2024, 1, 15, 11, 30, 45, 123000, tzinfo=paris)) == TS


def test_utc_timestamp_defaults_to_now():
    before = datetime.now(timezone.utc).replace(microsecond=0)
    stamp = utc_timestamp()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert before <= parsed <= datetime.now(timezone.utc)


def test_cached_timestamp_text_follows_the_clock_across_milliseconds_and_seconds(monkeypatch):
    import technic_panel.streaming.jsonsafe as messages_module

    clock = iter([1700000000.9991, 1700000000.9994, 1700000000.9996, 1700000001.0002])
    monkeypatch.setattr(messages_module.time, "time", lambda: next(clock))
    stamps = [utc_timestamp() for _ in range(4)]
    assert stamps == ["2023-11-14T22:13:20.999Z", "2023-11-14T22:13:20.999Z",
                      "2023-11-14T22:13:20.999Z", "2023-11-14T22:13:21.000Z"]


# --- building --------------------------------------------------------------------------------

@pytest.mark.parametrize("type_", MESSAGE_TYPES)
def test_make_message_makes_valid_messages_of_every_type(type_):
    msg = make_message(type_, DATA[type_], scan_id="scan_1", seq=3, timestamp=TS)
    assert msg == {
        "type": type_,
        "data": DATA[type_],
        "metadata": {"timestamp": TS, "scan_id": "scan_1", "seq": 3,
                     "is_final": type_ == "final"},
    }
    assert validate_message(msg) is msg


def test_make_message_stamps_now_by_default():
    msg = make_message("progress", {"processed": 0, "total": 1}, scan_id="s", seq=1)
    assert validate_message(msg)["metadata"]["timestamp"].endswith("Z")


def test_make_message_copies_data():
    data = {"symbol": "A", "nested": {"x": [1, 2]}}
    msg = make_message("error", {**data, "message": "m"}, scan_id="s", seq=1)
    msg["data"]["nested"]["x"].append(3)
    assert data["nested"]["x"] == [1, 2]


def test_make_message_rejects_unknown_type():
    with pytest.raises(MessageError, match=r"^message\.type must be one of result, update, "
                                           r"progress, error, alert, final, not 'bogus'$"):
        make_message("bogus", {}, scan_id="s", seq=1)


# --- JSON safety ------------------------------------------------------------------------------

def test_make_message_makes_numpy_and_nan_json_safe():
    data = {
        **RESULT,
        "tech_rating": np.float64(85.5), "position": np.int64(3), "flag": np.bool_(True),
        "name": np.str_("Apple"), "rsi": float("nan"), "macd": np.float32("nan"),
        "high": float("inf"), "low": -np.inf,
        "nested": {"values": [np.float64(1.5), float("nan"), (np.int32(2), float("-inf"))],
                   7: {"deep": np.nan}},
        "array": np.array([1.0, np.nan, 3.0]),
    }
    msg = make_message("result", data, scan_id="s", seq=1, timestamp=TS)
    got = msg["data"]
    assert got["tech_rating"] == 85.5 and type(got["tech_rating"]) is float
    assert got["position"] == 3 and type(got["position"]) is int
    assert got["flag"] is True
    assert got["name"] == "Apple" and type(got["name"]) is str
    assert got["rsi"] is None and got["macd"] is None
    assert got["high"] is None and got["low"] is None
    assert got["nested"] == {"values": [1.5, None, [2, None]], "7": {"deep": None}}
    assert got["array"] == [1.0, None, 3.0]
    assert json.loads(to_json(msg)) == msg
    validate_message(msg)


def test_json_safe_keeps_plain_values():
    value = {"a": [1, "x", None, True, 2.5], "b": OrderedDict(c=1)}
    assert json_safe(value) == {"a": [1, "x", None, True, 2.5], "b": {"c": 1}}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": 1.5, "b": "x", "c": None, "d": 3, "e": False}, None),
        ({"a": 1e308, "b": 1e308}, None),
        ({"a": 1e308, "b": float("inf")}, {"a": 1e308, "b": None}),
        ({"a": float("nan"), "b": "x"}, {"a": None, "b": "x"}),
        ({"a": float("inf"), "b": float("-inf")}, {"a": None, "b": None}),
        ({1: 2.5}, {"1": 2.5}),
    ],
)
def test_json_safe_flat_mappings_fast_path_and_fallback(value, expected):
    got = json_safe(value)
    assert got == (value if expected is None else expected)
    assert got is not value
    assert json.loads(json.dumps(got, allow_nan=False)) == got


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"when": datetime(2024, 1, 1)}, "message.data.when"),
        ({"outer": {"tags": {"a", "b"}}}, "message.data.outer.tags"),
        ({"values": [1, object()]}, "message.data.values[1]"),
        ({"day": np.datetime64("2024-01-01", "D")}, "message.data.day"),
    ],
)
def test_json_safe_names_the_path_of_unsupported_values(value, path):
    with pytest.raises(MessageError, match=rf"^{re.escape(path)} must be JSON data"):
        make_message("error", {"message": "m", **value}, scan_id="s", seq=1)


@settings(deadline=None, max_examples=200)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
))
def test_json_safe_output_round_trips_through_strict_json(value):
    safe = json_safe(value)
    assert json.loads(json.dumps(safe, allow_nan=False)) == safe


# --- validation -----------------------------------------------------------------------------

BAD_FIELDS = [
    # (type, path within the message, bad value or MISSING, expected words)
    ("result", "type", "bogus", "one of result, update, progress, error, alert, final"),
    ("result", "type", None, "one of result"),
    ("result", "data", [1, 2], "an object"),
    ("result", "metadata", "meta", "an object"),
    ("result", "metadata.seq", 0, "an integer >= 1"),
    ("result", "metadata.seq", -3, "an integer >= 1"),
    ("result", "metadata.seq", 1.0, "an integer >= 1"),
    ("result", "metadata.seq", True, "an integer >= 1"),
    ("result", "metadata.seq", "7", "an integer >= 1"),
    ("result", "metadata.scan_id", "", "a non-empty string"),
    ("result", "metadata.scan_id", 12, "a non-empty string"),
    ("result", "metadata.timestamp", "2024-01-15 10:30:45Z", "an ISO-8601 UTC time"),
    ("result", "metadata.timestamp", "2024-01-15T10:30:45.123", "an ISO-8601 UTC time"),
    ("result", "metadata.timestamp", "2024-01-15T10:30:45.12Z", "an ISO-8601 UTC time"),
    ("result", "metadata.timestamp", "2024-13-15T10:30:45.123Z", "an ISO-8601 UTC time"),
    ("result", "metadata.timestamp", "2024-01-15T10:30:45+00:00", "an ISO-8601 UTC time"),
    ("result", "metadata.timestamp", 1705314645, "an ISO-8601 UTC time"),
    ("result", "metadata.is_final", 0, "a boolean"),
    ("result", "metadata.is_final", "false", "a boolean"),
    ("result", "data.symbol", "", "a non-empty string"),
    ("result", "data.symbol", None, "a non-empty string"),
    ("result", "data.signal", "buy", "one of STRONG_BUY, BUY, HOLD, SELL, STRONG_SELL"),
    ("result", "data.signal", ["BUY"], "one of STRONG_BUY"),
    ("result", "data.tech_rating", 120.5, "a number in [0, 100]"),
    ("result", "data.tech_rating", -0.1, "a number in [0, 100]"),
    ("result", "data.tech_rating", None, "a number in [0, 100]"),
    ("result", "data.tech_rating", "85", "a number in [0, 100]"),
    ("result", "data.tech_rating", True, "a number in [0, 100]"),
    ("result", "data.tech_rating", float("nan"), "a number in [0, 100]"),
    ("result", "data.alpha_score", 1.5, "a number in [0, 1]"),
    ("result", "data.alpha_score", float("inf"), "a number in [0, 1]"),
    ("update", "data.alpha_score", -1, "a number in [0, 1]"),
    ("update", "data.priority_tier", "urgent", "one of high, medium, low"),
    ("update", "data.priority_tier", None, "one of high, medium, low"),
    ("result", "data.position", -1, "an integer >= 0"),
    ("result", "data.total_processed", 1.5, "an integer >= 0"),
    ("result", "data.total_remaining", "3", "an integer >= 0"),
    ("error", "data.message", None, "a string"),
    ("error", "data.message", 404, "a string"),
    ("final", "data.status", "done", "one of completed, stopped, terminated, failed"),
    ("final", "data.reason", 3, "a string or None"),
    ("progress", "data.processed", -1, "an integer >= 0"),
    ("progress", "data.total", 2.0, "an integer >= 0"),
    ("result", "data.bar_time", "2026-11-02 14:30", "an ISO-8601 UTC time"),
    ("update", "data.bar_time", None, "an ISO-8601 UTC time"),
    ("result", "data.feed_time", -5, "an integer >= 0"),
    ("update", "data.feed_time", 1.5, "an integer >= 0"),
    ("result", "data.in_filter", 1, "a boolean"),
    ("update", "data.changed", "tech_rating", "a list (or tuple) of field names"),
    ("update", "data.changed", ["tech_rating", ""], "a list (or tuple) of field names"),
    ("update", "data.previous_signal", "buy", "one of STRONG_BUY"),
    ("alert", "data.rule", "crossed", "one of entered_filter, left_filter, signal_changed"),
    ("alert", "data.signal", None, "one of STRONG_BUY"),
    ("alert", "data.previous_signal", "HODL", "one of STRONG_BUY"),
    ("alert", "data.tech_rating", 101, "a number in [0, 100]"),
    ("alert", "data.bar_time", "2026-13-02T14:30:01Z", "an ISO-8601 UTC time"),
    ("alert", "data.symbol", "", "a non-empty string"),
]


def replace_at(msg: dict, path: str, value) -> dict:
    msg = copy.deepcopy(msg)
    *parents, key = path.split(".")
    target = msg
    for parent in parents:
        target = target[parent]
    target[key] = value
    return msg


def delete_at(msg: dict, path: str) -> dict:
    msg = copy.deepcopy(msg)
    *parents, key = path.split(".")
    target = msg
    for parent in parents:
        target = target[parent]
    del target[key]
    return msg


@pytest.mark.parametrize(("type_", "path", "value", "expected"), BAD_FIELDS)
def test_validate_names_the_bad_field(type_, path, value, expected):
    msg = replace_at(good(type_), path, value)
    with pytest.raises(MessageError) as info:
        validate_message(msg)
    text = str(info.value)
    assert text.startswith(f"message.{path} must be {expected}")
    assert text.endswith(f", not {value!r}")


REQUIRED = [
    ("result", "type"), ("result", "data"), ("result", "metadata"),
    ("result", "metadata.seq"), ("result", "metadata.scan_id"),
    ("result", "metadata.timestamp"), ("result", "metadata.is_final"),
    ("result", "data.symbol"), ("result", "data.signal"), ("update", "data.tech_rating"),
    ("update", "data.alpha_score"), ("error", "data.message"), ("final", "data.status"),
    ("progress", "data.processed"), ("progress", "data.total"),
    *(("alert", f"data.{key}") for key in ALERT),
]


@pytest.mark.parametrize(("type_", "path"), REQUIRED)
def test_validate_names_missing_fields(type_, path):
    with pytest.raises(MessageError, match=rf"^message\.{re.escape(path)} is missing; it must be"):
        validate_message(delete_at(good(type_), path))


@pytest.mark.parametrize("path", ["data.priority_tier", "data.position", "data.total_processed",
                                  "data.total_remaining", "data.batch_number",
                                  *(f"data.{key}" for key in LIVE)])
def test_optional_result_fields_may_be_absent(path):
    validate_message(delete_at(good("result"), path))


@pytest.mark.parametrize("path", ["data.changed", "data.previous_signal"])
def test_what_an_update_says_of_the_row_before_is_optional(path):
    validate_message(delete_at(good("update"), path))


def test_final_reason_may_be_absent_none_or_text():
    validate_message(delete_at(good("final"), "data.reason"))
    validate_message(good("final", reason="max_signals reached"))
    validate_message(good("final", reason=None))


@pytest.mark.parametrize(("type_", "is_final"), [("final", False), ("result", True),
                                                  ("error", True)])
def test_is_final_must_match_the_type(type_, is_final):
    msg = replace_at(good(type_), "metadata.is_final", is_final)
    with pytest.raises(MessageError, match=rf"^message\.metadata\.is_final must be "
                                           rf"{not is_final} for a '{type_}' message, "
                                           rf"not {is_final}$"):
        validate_message(msg)


def test_validate_accepts_the_design_example_and_extra_keys():
    msg = {
        "type": "result",
        "data": {**RESULT, "sector": "Technology", "entry": 190.1},
        "metadata": {"timestamp": "2024-01-15T10:30:45Z", "scan_id": "scan_123",
                     "seq": 15, "is_final": False, "local": True},
    }
    assert validate_message(msg) is msg


def test_validate_accepts_boundaries_and_integers():
    validate_message(good(tech_rating=0, alpha_score=1))
    validate_message(good(tech_rating=100.0, alpha_score=0.0, position=0))


def test_validate_returns_a_dict_for_other_mappings():
    msg = good()
    result = validate_message(MappingProxyType(msg))
    assert type(result) is dict and result == msg


@pytest.mark.parametrize("value", [None, [1], "text", 3])
def test_validate_rejects_non_objects(value):
    expected = f"message must be an object, not {value!r}"
    with pytest.raises(MessageError, match=f"^{re.escape(expected)}$"):
        validate_message(value)


def test_validate_data_checks_type_and_object():
    validate_data("progress", {"processed": 1, "total": 2})
    with pytest.raises(MessageError, match=r"^message\.type must be one of"):
        validate_data("nope", {})
    with pytest.raises(MessageError, match=r"^message\.data must be an object, not \[\]$"):
        validate_data("error", [])
    with pytest.raises(MessageError, match=r"^row\.message is missing"):
        validate_data("error", {}, path="row")


# --- JSON ------------------------------------------------------------------------------------

@pytest.mark.parametrize("type_", MESSAGE_TYPES)
def test_json_round_trip(type_):
    msg = good(type_)
    text = to_json(msg)
    assert ": " not in text and ", " not in text
    assert from_json(text) == msg
    assert from_json(text.encode()) == msg


@pytest.mark.parametrize("value", [math.nan, math.inf, [1.0, -math.inf], {"a": (math.nan,)},
                                   [1e308, 1e308, math.nan], (-math.inf, math.inf)])
def test_to_json_refuses_nan_and_infinity_at_any_depth(value):
    with pytest.raises(MessageError, match="NaN or infinity is not a JSON number"):
        to_json(replace_at(good(), "data.rsi", value))


def _holds_non_finite(value) -> bool:
    """The rule itself, walked value by value: any float NaN or infinity, at any depth."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_holds_non_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_non_finite(item) for item in value)
    return False


_JSON_LEAVES = (st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)  # orjson's range
                | st.text(max_size=3) | st.floats())
_JSON_VALUES = st.recursive(
    _JSON_LEAVES | st.sampled_from([1e308, -1e308, math.inf, -math.inf]),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=3), inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=4), _JSON_VALUES, max_size=8))
def test_to_json_refuses_exactly_the_payloads_holding_nan_or_infinity(data):
    # A null, so the values are looked at; its key is longer than any key of ``data``.
    msg = {**good(), "data": {"unknown": None, **data}}
    if _holds_non_finite(data):
        with pytest.raises(MessageError, match="NaN or infinity is not a JSON number"):
            to_json(msg)
    else:
        assert json.loads(to_json(msg))["data"]["unknown"] is None


def test_to_json_refuses_objects_and_writes_none_as_null():
    with pytest.raises(MessageError, match="cannot be written as JSON: .*object"):
        to_json(replace_at(good(), "data.rsi", object()))
    assert '"rsi":null' in to_json(replace_at(good(), "data.rsi", None))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "message is not valid JSON: Expecting value: line 1 column 1"),
        ('{"type": "result",', "message is not valid JSON: Expecting property name"),
        ("{'type': 1}", "message is not valid JSON: Expecting property name enclosed"),
        ('{"a": NaN}', "message is not valid JSON: NaN is not a JSON number"),
        ('{"a": -Infinity}', "message is not valid JSON: -Infinity is not a JSON number"),
        (b"\xff\xfe{", "message is not valid JSON"),
        ("[1, 2]", "message must be an object, not [1, 2]"),
        ('{"type": "result"}', "message.data is missing"),
    ],
)
def test_from_json_rejects_bad_text(text, words):
    with pytest.raises(MessageError) as info:
        from_json(text)
    assert str(info.value).startswith(words)


def test_from_json_validates_fields():
    text = to_json(good()).replace('"tech_rating":85.2', '"tech_rating":120.5')
    with pytest.raises(MessageError, match=r"^message\.data\.tech_rating must be a number in "
                                           r"\[0, 100\], not 120\.5$"):
        from_json(text)



_field_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=True),
    st.sampled_from(["", "AAPL", "BUY", "STRONG_SELL", "high", "low", "nope"]),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["symbol", "signal", "tech_rating", "alpha_score", "priority_tier",
                     "position", "total_processed", "total_remaining", "extra"]),
    _field_values))
def test_fast_result_check_agrees_with_the_field_rules(data):
    from technic_panel.streaming.contract import _DATA_RULES, _check_fields, _plainly_valid_result

    try:
        _check_fields(data, _DATA_RULES["result"], "message.data")
        valid = True
    except MessageError:
        valid = False
    if _plainly_valid_result(data):
        assert valid
    assert valid == validate_data_ok(data) == validate_data_ok(SafeData(data))


def validate_data_ok(data) -> bool:
    from technic_panel.streaming.contract import validate_data

    try:
        validate_data("result", data)
    except MessageError:
        return False
    return True


def test_safe_data_is_copied_unchecked_and_to_json_still_refuses_nan():
    trusted = SafeData(symbol="AAPL", value=1.5)
    copied = json_safe(trusted)
    assert copied == trusted and type(copied) is dict and copied is not trusted
    lying = SafeData(symbol="AAPL", value=float("nan"))
    msg = make_message("progress", {"processed": 1, "total": 2, "inner": lying},
                       scan_id="s", seq=1)
    with pytest.raises(MessageError, match="cannot be written as JSON"):
        to_json(msg)


_ROW_KEYS = st.sampled_from(["symbol", "close", "rsi_14", "signal", "bar_time", "feed_time",
                             "position", "changed", "extra"])
_ROW_VALUES = st.one_of(st.none(), st.floats(allow_nan=True), st.sampled_from(["BUY", "HOLD"]))


@settings(max_examples=300, deadline=None)
@given(previous=st.dictionaries(_ROW_KEYS, _ROW_VALUES), edits=st.dictionaries(_ROW_KEYS,
                                                                               _ROW_VALUES),
       reorder=st.booleans(), after_update=st.booleans())
def test_changed_fields_are_those_whose_value_differs_bookkeeping_aside(previous, edits, reorder,
                                                                       after_update):
    from technic_panel.streaming.contract import BOOKKEEPING_KEYS, changed_fields

    content = {**previous, **edits}  # the same fields in the same order, some edited ...
    if reorder:  # ... or a row of other fields, in another order
        content = dict(reversed(list(edits.items())))
    if after_update:  # the row before was an update: it ends with what that update said
        previous = {**previous, "changed": ("close",), "previous_signal": "HOLD"}
    expected = [name for name in content if name not in previous or previous[name] !=
                content[name]] + [name for name in previous if name not in content]
    changed = changed_fields(previous, content)
    assert changed == tuple(name for name in expected if name not in BOOKKEEPING_KEYS)
    assert changed_fields(dict(previous), dict(content)) is changed  # one tuple per answer


def test_changed_fields_shares_a_bounded_number_of_answers_the_newest(monkeypatch):
    from technic_panel.streaming import contract

    monkeypatch.setattr(contract, "_field_sets", {})
    monkeypatch.setattr(contract, "SHARED_FIELD_SETS", 1)
    first = contract.changed_fields({"a": 1.0}, {"a": 2.0})
    assert contract.changed_fields({"a": 1.0}, {"a": 3.0}) is first
    other = contract.changed_fields({"b": 1.0}, {"b": 2.0})  # the table was full: started afresh
    assert other == ("b",) and contract.changed_fields({"b": 1.0}, {"b": 3.0}) is other
    assert list(contract._field_sets) == [("b",)]


@pytest.mark.parametrize(("text", "valid"), [
    (TS, True), ("2024-02-29T00:00:00Z", True), ("2023-02-29T00:00:00Z", False),
    ("2024-01-15 10:30:45Z", False), ("2024-01-15T10:30:45.123", False)])
def test_a_bar_time_is_judged_alike_the_first_time_and_when_it_repeats(text, valid):
    for _ in range(2):  # the second check of a text is answered from a cache
        if valid:
            validate_data("result", {**RESULT, "bar_time": text})
        else:
            with pytest.raises(MessageError, match="bar_time must be an ISO-8601 UTC time"):
                validate_data("result", {**RESULT, "bar_time": text})
