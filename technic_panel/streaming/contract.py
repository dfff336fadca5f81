"""The message contract of a scan stream: the types, the rules of each field, validation.

Every message is one JSON object::

    {"type": "result",
     "data": {"symbol": "AAPL", "signal": "BUY", "tech_rating": 85.2, "alpha_score": 0.78},
     "metadata": {"timestamp": "2024-01-15T10:30:45.123Z", "scan_id": "scan_123",
                  "seq": 15, "is_final": false}}

``type`` is one of :data:`MESSAGE_TYPES`. ``update`` carries a later, different result
for a symbol already sent: it replaces that row, and names the fields that ``changed`` and
the ``previous_signal``. A live scan's results and updates also carry ``bar_time`` (the
bar's timestamp) and ``feed_time`` (UTC wall clock, ms, when the feed handed the bar over);
an ``alert`` says a live symbol entered or left the filter or changed signal class.
Each field's rule is one ``_Rule(key, expected, test)`` of a table, so
:func:`validate_message` raises :class:`MessageError` naming the dotted path of the first
bad field, the rule and the value:

>>> validate_data("result", {"symbol": "AAPL", "signal": "BUY",
...                          "tech_rating": 85.2, "alpha_score": 1.5})
Traceback (most recent call last):
...
MessageError: message.data.alpha_score must be a number in [0, 1], not 1.5

Building messages and converting them to and from JSON (where NaN never gets through)
is :mod:`technic_panel.streaming.jsonsafe`'s part.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any, NamedTuple

from technic_panel.vocabulary import (
    ALERT_RULES,
    FINAL_STATUSES,
    MESSAGE_TYPES,
    PRIORITY_TIERS,
    SIGNALS,
    SafeData,
)

_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2})T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|6[01])"
                        r"(\.\d{3})?Z")


class MessageError(ValueError):
    """A message, or the data for one, breaks the contract; the text names the field."""


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
    return isinstance(value, str) and _is_timestamp_text(value)


@functools.lru_cache(maxsize=4096)
def _is_timestamp_text(text: str) -> bool:
    """Whether ``text`` is a UTC timestamp of a calendar date.

    Cached: a live tick's bars share their ``bar_time``, a busy stream's messages their
    millisecond.
    """
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return False
    try:
        date.fromisoformat(match[1])
    except ValueError:
        return False
    return True


def _is_names(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(_is_text(name) for name in value)


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
_SYMBOL_RULE = _Rule("symbol", "a non-empty string", _is_text)
_RATING_RULE = _Rule("tech_rating", "a number in [0, 100]", lambda value: _is_number(value, 0, 100))
_BAR_TIME_RULE = _Rule("bar_time", "an ISO-8601 UTC time like 2024-01-15T10:30:45.123Z",
                       _is_timestamp)
_LIVE_RULES = (
    _Rule("bar_time", _BAR_TIME_RULE.expected, _is_timestamp, required=False),
    _count("feed_time", required=False),
    _Rule("in_filter", "a boolean", lambda value: isinstance(value, bool), required=False),
    _Rule("changed", "a list (or tuple) of field names", _is_names, required=False),
    _choice("previous_signal", SIGNALS, required=False),
)
LIVE_KEYS = frozenset(rule.key for rule in _LIVE_RULES)
"""Result keys a live scan adds; the typical result's fast check leaves them to the rules."""
_RESULT_RULES = (
    _SYMBOL_RULE,
    _choice("signal", SIGNALS),
    _RATING_RULE,
    _Rule("alpha_score", "a number in [0, 1]", lambda value: _is_number(value, 0, 1)),
    _choice("priority_tier", PRIORITY_TIERS, required=False),
    _count("position", required=False),
    _count("total_processed", required=False),
    _count("total_remaining", required=False),
    *_LIVE_RULES,
)
_DATA_RULES = {
    "result": _RESULT_RULES,
    "update": _RESULT_RULES,
    "alert": (_SYMBOL_RULE, _choice("rule", ALERT_RULES), _choice("signal", SIGNALS),
              _choice("previous_signal", SIGNALS), _RATING_RULE, _BAR_TIME_RULE),
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


def check_type(type_: Any) -> None:
    """Raise :class:`MessageError` unless ``type_`` is one of :data:`MESSAGE_TYPES`."""
    _check(type_, _TYPE_RULE, "message")


def validate_data(type_: str, data: Any, path: str = "message.data") -> None:
    """Check the payload ``data`` of a ``type_`` message against the contract.

    Extra keys are allowed. A ``final`` summary needs ``status``; its ``reason`` may be
    absent, ``None`` or a string.

    Raises
    ------
    MessageError
        Naming ``path`` plus the bad field, the rule and the value.
    """
    if type_ in _RESULT_TYPES and type(data) in _DICTS and _plainly_valid_result(data):
        if not LIVE_KEYS.isdisjoint(data):
            _check_fields(data, _LIVE_RULES, path)
        return
    check_type(type_)
    if not isinstance(data, Mapping):
        raise MessageError(f"{path} must be an object, not {data!r}")
    _check_fields(data, _DATA_RULES[type_], path)


_RESULT_TYPES = frozenset({"result", "update"})
_DICTS = frozenset({dict, SafeData})
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


BOOKKEEPING_KEYS = frozenset({"position", "total_processed", "total_remaining", "bar_time",
                              "feed_time", "changed", "previous_signal"})
"""Result keys ignored when deciding whether a repeated result is a change: where the scan
or the feed stood, and what an update says about the row before it."""


def changed_fields(previous: Mapping, content: Mapping) -> tuple[str, ...]:
    """Return the fields two results of a symbol differ in, :data:`BOOKKEEPING_KEYS` aside.

    In ``content``'s order, then those only ``previous`` has; ``()`` means the same row.
    Equal answers are one tuple (of the last :data:`SHARED_FIELD_SETS`): the collector
    untracks a tuple of strings once it has seen it, so an update holding a shared one
    stays untracked too, and its floats are not walked by every young collection (at a
    live scan's 5,000 updates a second the collector ran 6.8% of the time, 1.9% with this).
    """
    names, before = list(content), list(previous)
    if before[:len(names)] == names and BOOKKEEPING_KEYS.issuperset(before[len(names):]):
        # The same fields in the same order, as a symbol's rows are (the previous one an
        # update, ending with what the update said about the row before it).
        found = [name for name, value, old  # zip stops where content does
                 in zip(names, content.values(), previous.values(), strict=False)
                 if old != value]
    else:
        get = previous.get
        found = [name for name, value in content.items() if get(name, _ABSENT) != value]
        found.extend(name for name in previous if name not in content)
    changed = tuple(found if BOOKKEEPING_KEYS.isdisjoint(found)
                    else [name for name in found if name not in BOOKKEEPING_KEYS])
    shared = _field_sets.get(changed)
    if shared is not None:
        return shared
    if len(_field_sets) >= SHARED_FIELD_SETS:
        _field_sets.clear()  # start afresh: the answers of the scans running now are shared
    _field_sets[changed] = changed
    return changed


SHARED_FIELD_SETS = 4096
"""Most distinct answers of :func:`changed_fields` kept to be shared (under 1 KB each)."""
_field_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
_ABSENT = object()
