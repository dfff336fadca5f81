"""The message contract of a scan stream: build, validate, and convert to and from JSON.

Every message is one JSON object::

    {"type": "result",
     "data": {"symbol": "AAPL", "signal": "BUY", "tech_rating": 85.2, "alpha_score": 0.78},
     "metadata": {"timestamp": "2024-01-15T10:30:45.123Z", "scan_id": "scan_123",
                  "seq": 15, "is_final": false}}

``type`` is one of :data:`MESSAGE_TYPES`. Besides the four of the design, ``update``
carries a later, different result for a symbol already sent; it replaces that row.
Builders make data JSON-safe (numpy scalars become Python numbers, NaN and infinities
become ``None``), so NaN never reaches JSON. :func:`validate_message` raises
:class:`MessageError` naming the dotted path of the first bad field, the rule and the value:

>>> validate_data("result", {"symbol": "AAPL", "signal": "BUY",
...                          "tech_rating": 85.2, "alpha_score": 1.5})
Traceback (most recent call last):
...
MessageError: message.data.alpha_score must be a number in [0, 1], not 1.5
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

import numpy as np

from technic_panel.vocabulary import (
    FINAL_STATUSES,
    MESSAGE_TYPES,
    PRIORITY_TIERS,
    SIGNALS,
    SafeData,
)

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z")


class MessageError(ValueError):
    """A message, or the data for one, breaks the contract; the text names the field."""


def utc_timestamp(now: datetime | None = None) -> str:
    """Return ``now`` (default: the current time) as ISO-8601 UTC with milliseconds and ``Z``.

    A naive ``now`` is taken to be UTC already; an aware one is converted.

    >>> utc_timestamp(datetime(2024, 1, 15, 10, 30, 45, 123456))
    '2024-01-15T10:30:45.123Z'
    """
    if now is None:
        return _now_timestamp()
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    now = now.astimezone(timezone.utc)
    return f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond // 1000:03d}Z"


_second_text: tuple[int, str] = (-1, "")
_millisecond_text: tuple[int, str] = (-1, "")


def _now_timestamp() -> str:
    """Format the current time, reusing the text of the same millisecond and second.

    Called once per message: a burst of messages within a millisecond formats it once.
    """
    global _second_text, _millisecond_text
    millisecond = int(time.time() * 1000)
    cached = _millisecond_text  # one read: another thread may replace it meanwhile
    if cached[0] != millisecond:
        second, fraction = divmod(millisecond, 1000)
        seconds = _second_text
        if seconds[0] != second:
            seconds = _second_text = (
                second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        cached = _millisecond_text = (millisecond, f"{seconds[1]}.{fraction:03d}Z")
    return cached[1]


def json_safe(value: Any, path: str = "message.data") -> Any:
    """Return a copy of ``value`` that JSON can hold exactly.

    numpy scalars and arrays become Python numbers and lists, NaN and infinities
    become ``None``, tuples become lists and mapping keys become strings, at any depth.
    Plain values are handled inline, since every result of a scan passes through here.

    Raises
    ------
    MessageError
        If some value is of another type (a ``datetime``, a ``set``, ...); the text names
        its ``path``.
    """
    kind = type(value)
    if kind is SafeData:
        return dict(value)
    if kind is float:
        return value if value - value == 0.0 else None
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return _safe_dict(value, path)
    if isinstance(value, np.generic | np.ndarray):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, Mapping):
        return _safe_dict(value, path)
    if isinstance(value, list | tuple):
        return [json_safe(item, f"{path}[{index}]") for index, item in enumerate(value)]
    raise MessageError(
        f"{path} must be JSON data (str, number, bool, None, list or mapping), not {value!r}"
    )


_PLAIN_TYPES = frozenset({float, int, str, bool, type(None)})
_STR_TYPE = frozenset({str})
_is_float = float.__instancecheck__


def _is_flat_and_finite(mapping: Mapping) -> bool:
    """Whether ``mapping`` has str keys and finite plain values only, checked at C speed."""
    values = mapping.values()
    if not (_PLAIN_TYPES.issuperset(map(type, values))
            and _STR_TYPE.issuperset(map(type, mapping))):
        return False
    try:
        return math.isfinite(math.fsum(filter(_is_float, values)))
    except OverflowError:  # finite values whose sum overflows: check them one by one
        return False


def _safe_dict(mapping: Mapping, path: str) -> dict:
    if _is_flat_and_finite(mapping):
        return dict(mapping)  # the common case: every result of a scan
    out = {}
    for key, item in mapping.items():
        kind = type(item)
        if kind is float:
            out[key if type(key) is str else str(key)] = item if item - item == 0.0 else None
        elif kind is str or kind is int or item is None:
            out[key if type(key) is str else str(key)] = item
        else:
            out[str(key)] = json_safe(item, f"{path}.{key}")
    return out


def make_message(
    type_: str, data: Mapping, *, scan_id: str, seq: int, timestamp: str | None = None
) -> dict:
    """Build one message of the contract; ``is_final`` is true exactly for ``final``.

    Parameters
    ----------
    type_ : str
        One of :data:`MESSAGE_TYPES`.
    data : Mapping
        The payload; it is copied through :func:`json_safe`.
    scan_id : str
        The scan the message belongs to.
    seq : int
        The message's number in its scan, from 1.
    timestamp : str, optional
        An ISO-8601 UTC timestamp; default :func:`utc_timestamp` of now.

    Returns
    -------
    dict
        ``{"type": ..., "data": ..., "metadata": {"timestamp", "scan_id", "seq", "is_final"}}``.
        Only ``type_`` is checked here; :func:`validate_message` checks the rest.
    """
    _check(type_, _TYPE_RULE, "message")
    return envelope(type_, json_safe(data), scan_id=scan_id, seq=seq, timestamp=timestamp)


def envelope(type_: str, safe_data: dict, *, scan_id: str, seq: int,
             timestamp: str | None = None) -> dict:
    """Wrap data that is already JSON-safe (from :func:`json_safe`) in a message, unchecked.

    The streamer's fast path: it has made the data safe and validated it once.
    """
    return {
        "type": type_,
        "data": safe_data,
        "metadata": {
            "timestamp": _now_timestamp() if timestamp is None else timestamp,
            "scan_id": scan_id,
            "seq": seq,
            "is_final": type_ == "final",
        },
    }


def result_message(data: Mapping, *, scan_id: str, seq: int, timestamp: str | None = None) -> dict:
    """Build a ``result``: the first result of a symbol; see :func:`make_message`."""
    return make_message("result", data, scan_id=scan_id, seq=seq, timestamp=timestamp)


def update_message(data: Mapping, *, scan_id: str, seq: int, timestamp: str | None = None) -> dict:
    """Build an ``update``: a symbol's changed result, replacing its row."""
    return make_message("update", data, scan_id=scan_id, seq=seq, timestamp=timestamp)


def progress_message(
    data: Mapping, *, scan_id: str, seq: int, timestamp: str | None = None
) -> dict:
    """Build a ``progress`` message: ``processed`` of ``total`` symbols are done."""
    return make_message("progress", data, scan_id=scan_id, seq=seq, timestamp=timestamp)


def error_message(data: Mapping, *, scan_id: str, seq: int, timestamp: str | None = None) -> dict:
    """Build an ``error`` message: one symbol (or the stream) failed; ``data.message`` says how."""
    return make_message("error", data, scan_id=scan_id, seq=seq, timestamp=timestamp)


def final_message(data: Mapping, *, scan_id: str, seq: int, timestamp: str | None = None) -> dict:
    """Build the ``final`` message that ends a stream; ``data`` is the scan's summary."""
    return make_message("final", data, scan_id=scan_id, seq=seq, timestamp=timestamp)


class _Rule(NamedTuple):
    """One field's rule: its key, what it must be (in words) and the test of it."""

    key: str
    expected: str
    test: Callable[[Any], bool]
    required: bool = True


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value: Any, low: float, high: float) -> bool:
    is_real = isinstance(value, int | float) and not isinstance(value, bool)
    return is_real and low <= value <= high


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_timestamp(value: Any) -> bool:
    if not (isinstance(value, str) and _TIMESTAMP.fullmatch(value)):
        return False
    try:
        datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return False
    return True


def _choice(key: str, choices: tuple[str, ...], required: bool = True) -> _Rule:
    expected = "one of " + ", ".join(choices)
    return _Rule(key, expected, lambda value: isinstance(value, str) and value in choices, required)


def _count(key: str, required: bool = True) -> _Rule:
    return _Rule(key, "an integer >= 0", lambda value: _is_int(value, 0), required)


_TYPE_RULE = _choice("type", MESSAGE_TYPES)
_ENVELOPE_RULES = (
    _TYPE_RULE,
    _Rule("data", "an object", lambda value: isinstance(value, Mapping)),
    _Rule("metadata", "an object", lambda value: isinstance(value, Mapping)),
)
_METADATA_RULES = (
    _Rule("seq", "an integer >= 1", lambda value: _is_int(value, 1)),
    _Rule("scan_id", "a non-empty string", _is_text),
    _Rule("timestamp", "an ISO-8601 UTC time like 2024-01-15T10:30:45.123Z", _is_timestamp),
    _Rule("is_final", "a boolean", lambda value: isinstance(value, bool)),
)
_RESULT_RULES = (
    _Rule("symbol", "a non-empty string", _is_text),
    _choice("signal", SIGNALS),
    _Rule("tech_rating", "a number in [0, 100]", lambda value: _is_number(value, 0, 100)),
    _Rule("alpha_score", "a number in [0, 1]", lambda value: _is_number(value, 0, 1)),
    _choice("priority_tier", PRIORITY_TIERS, required=False),
    _count("position", required=False),
    _count("total_processed", required=False),
    _count("total_remaining", required=False),
)
_DATA_RULES = {
    "result": _RESULT_RULES,
    "update": _RESULT_RULES,
    "progress": (_count("processed"), _count("total")),
    "error": (_Rule("message", "a string", lambda value: isinstance(value, str)),),
    "final": (
        _choice("status", FINAL_STATUSES),
        _Rule("reason", "a string or None", lambda value: value is None or isinstance(value, str),
              required=False),
    ),
}


def _check(value: Any, rule: _Rule, path: str) -> None:
    if not rule.test(value):
        raise MessageError(f"{path}.{rule.key} must be {rule.expected}, not {value!r}")


def _check_fields(obj: Mapping, rules: tuple[_Rule, ...], path: str) -> None:
    for rule in rules:
        if rule.key in obj:
            _check(obj[rule.key], rule, path)
        elif rule.required:
            raise MessageError(f"{path}.{rule.key} is missing; it must be {rule.expected}")


def validate_data(type_: str, data: Any, path: str = "message.data") -> None:
    """Check the payload ``data`` of a ``type_`` message against the contract.

    Extra keys are allowed. A ``final`` summary needs ``status``; its ``reason`` may be
    absent, ``None`` or a string.

    Raises
    ------
    MessageError
        Naming ``path`` plus the bad field, the rule and the value.
    """
    if type_ in _RESULT_TYPES and type(data) is dict and _plainly_valid_result(data):
        return
    _check(type_, _TYPE_RULE, "message")
    if not isinstance(data, Mapping):
        raise MessageError(f"{path} must be an object, not {data!r}")
    _check_fields(data, _DATA_RULES[type_], path)


_RESULT_TYPES = frozenset({"result", "update"})
_SIGNAL_SET = frozenset(SIGNALS)
_TIER_SET = frozenset(PRIORITY_TIERS)


def _plainly_valid_result(data: dict) -> bool:
    """Check a typical result in one expression: the scan's hot path.

    False means "look closer": the field-by-field rules then name what is wrong.
    """
    symbol, signal = data.get("symbol"), data.get("signal")
    rating, alpha = data.get("tech_rating"), data.get("alpha_score")
    tier = data.get("priority_tier", "high")
    position, processed = data.get("position", 0), data.get("total_processed", 0)
    remaining = data.get("total_remaining", 0)
    return (type(symbol) is str and symbol != "" and type(signal) is str
            and signal in _SIGNAL_SET and type(rating) is float and 0.0 <= rating <= 100.0
            and type(alpha) is float and 0.0 <= alpha <= 1.0
            and type(tier) is str and tier in _TIER_SET
            and type(position) is int and position >= 0
            and type(processed) is int and processed >= 0
            and type(remaining) is int and remaining >= 0)


def validate_message(msg: Mapping) -> dict:
    """Return ``msg`` (as a dict; the same object if it is one) if it keeps the contract.

    The timestamp may omit the milliseconds (``2024-01-15T10:30:45Z``, as in the design's
    example). Extra keys are allowed everywhere, such as ``metadata.local``.

    Raises
    ------
    MessageError
        For the first field that breaks the contract, e.g.
        ``message.data.tech_rating must be a number in [0, 100], not 120.5``.
    """
    if not isinstance(msg, Mapping):
        raise MessageError(f"message must be an object, not {msg!r}")
    _check_fields(msg, _ENVELOPE_RULES, "message")
    metadata = msg["metadata"]
    _check_fields(metadata, _METADATA_RULES, "message.metadata")
    is_final = msg["type"] == "final"
    if metadata["is_final"] is not is_final:
        raise MessageError(
            f"message.metadata.is_final must be {is_final} for a {msg['type']!r} message, "
            f"not {metadata['is_final']!r}"
        )
    validate_data(msg["type"], msg["data"])
    return msg if isinstance(msg, dict) else dict(msg)


def to_json(msg: Mapping) -> str:
    """Return ``msg`` as compact JSON; NaN or infinity is refused, never written.

    Raises
    ------
    MessageError
        If ``msg`` holds a value JSON cannot (NaN, infinity, an arbitrary object).
    """
    try:
        return json.dumps(msg, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"message cannot be written as JSON: {exc}") from exc


def _refuse_constant(name: str) -> None:
    raise MessageError(f"message is not valid JSON: {name} is not a JSON number")


def from_json(text: str | bytes) -> dict:
    """Parse one JSON message and validate it.

    Raises
    ------
    MessageError
        If ``text`` is not JSON (the text says where parsing failed), holds ``NaN`` or
        ``Infinity``, or breaks the contract (see :func:`validate_message`).
    """
    try:
        msg = json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MessageError(f"message is not valid JSON: {exc}") from exc
    return validate_message(msg)
