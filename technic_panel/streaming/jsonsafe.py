"""JSON for the message contract: safe copies, UTC timestamps, envelopes, text and back.

:func:`json_safe` copies a payload into values JSON holds exactly (numpy scalars become
Python numbers, NaN and infinities become ``None``), so NaN never reaches JSON;
:func:`make_message` and :func:`envelope` wrap a payload in the message's ``type``,
``data`` and ``metadata``; :func:`to_json` and :func:`from_json` turn a message into
compact text and back. The rules a message must keep live in
:mod:`technic_panel.streaming.contract`:

>>> msg = make_message("progress", {"processed": 1, "total": float("nan")},
...                    scan_id="scan_1", seq=1, timestamp="2024-01-15T10:30:45.123Z")
>>> to_json(msg)
'{"type":"progress","data":{"processed":1,"total":null},"metadata":\
{"timestamp":"2024-01-15T10:30:45.123Z","scan_id":"scan_1","seq":1,"is_final":false}}'
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Collection, Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson

from technic_panel.streaming.contract import (
    MessageError,
    check_type,
    validate_data,
    validate_message,
)
from technic_panel.vocabulary import SafeData


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


def _floats_finite(items: Collection[Any]) -> bool:
    """Whether every float among ``items`` is finite, their sum taken at C speed.

    A NaN or infinity makes the sum so (infinities of both signs raise); finite values
    whose sum overflows are looked at one by one.
    """
    try:
        return math.isfinite(math.fsum(filter(_is_float, items)))
    except ValueError:  # inf + -inf
        return False
    except OverflowError:
        return all(math.isfinite(item) for item in items if _is_float(item))


def _is_flat_and_finite(mapping: Mapping) -> bool:
    """Whether ``mapping`` has str keys and finite plain values only, checked at C speed."""
    values = mapping.values()
    return (_PLAIN_TYPES.issuperset(map(type, values))
            and _STR_TYPE.issuperset(map(type, mapping)) and _floats_finite(values))


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
        One of :data:`~technic_panel.vocabulary.MESSAGE_TYPES`.
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
        Only ``type_`` is checked here;
        :func:`~technic_panel.streaming.contract.validate_message` checks the rest.
    """
    check_type(type_)
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


def to_json(msg: Mapping) -> str:
    """Return ``msg`` as compact JSON; NaN or infinity is refused, never written.

    Raises
    ------
    MessageError
        If ``msg`` holds a value JSON cannot (NaN, infinity, an arbitrary object).
    """
    try:
        text = orjson.dumps(msg).decode()  # ~15x json.dumps: every live message goes out
    except TypeError as exc:
        raise MessageError(f"message cannot be written as JSON: {exc}") from exc
    if "null" in text and _non_finite(msg):  # orjson writes NaN as null: refuse it instead
        raise MessageError("message cannot be written as JSON: NaN or infinity is not a JSON "
                           "number (make the payload JSON-safe first: json_safe)")
    return text


def _non_finite(value: Mapping | list | tuple) -> bool:
    """Whether the container ``value`` holds a float NaN or infinity, at any depth.

    Its floats are checked at C speed (:func:`_floats_finite`) and only the containers in it
    are walked: every message holding a ``null`` (a store's unknown market cap) comes here.
    """
    items: Collection[Any] = value.values() if isinstance(value, Mapping) else value
    return not _floats_finite(items) or any(
        _non_finite(item) for item in items if isinstance(item, Mapping | list | tuple))


def _refuse_constant(name: str) -> None:
    raise MessageError(f"message is not valid JSON: {name} is not a JSON number")


def from_json(text: str | bytes) -> dict:
    """Parse one JSON message and validate it.

    Raises
    ------
    MessageError
        If ``text`` is not JSON (the text says where parsing failed), holds ``NaN`` or
        ``Infinity``, or breaks the contract (see
        :func:`~technic_panel.streaming.contract.validate_message`).
    """
    try:
        msg = json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MessageError(f"message is not valid JSON: {exc}") from exc
    return validate_message(msg)


def checked_content(type_: str, data: Mapping) -> dict:
    """Return ``data`` made JSON-safe, after checking it as the data of a ``type_`` message."""
    content = json_safe(data)
    validate_data(type_, content)
    return content
