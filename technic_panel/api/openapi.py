"""The OpenAPI 3.1 description of the HTTP API (``GET /openapi.json``).

Its schemas are JSON Schema 2020-12: ``Message`` mirrors the contract of
:mod:`technic_panel.streaming.contract`, ``ScanConfig`` is generated from the Parameters of
:class:`~technic_panel.config.ScanConfig` (so the spec cannot drift from the validation),
and ``Error`` is the one envelope every 4xx and 5xx answer carries.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import param

from technic_panel.config import ScanConfig
from technic_panel.vocabulary import (
    ALERT_RULES,
    FINAL_STATUSES,
    MESSAGE_TYPES,
    PRIORITY_TIERS,
    SIGNALS,
)

_REF = "#/components/schemas/"
_COUNT = {"type": "integer", "minimum": 0}
_ERROR_CODES = {
    "400": "Invalid JSON, setting or parameter, or one outside the server policy; "
           "`error.field` names it.",
    "401": "`TECHNIC_API_TOKEN` is set and the request lacks `Authorization: Bearer <token>`.",
    "404": "No such scan (never started, another client's, or cleaned up), or no such path.",
    "405": "The path exists but not for this method.",
    "413": "The body is larger than 64 KiB.",
    "415": "The body is not `Content-Type: application/json`.",
    "429": "The server holds its most scans, all running or watched.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _nullable(schema: dict[str, Any], parameter: param.Parameter) -> dict[str, Any]:
    if parameter.allow_None:
        schema["type"] = [schema["type"], "null"]
    return schema


def _numeric(parameter: param.Number, kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    low, high = parameter.bounds or (None, None)
    low_inclusive, high_inclusive = parameter.inclusive_bounds
    if low is not None:
        schema["minimum" if low_inclusive else "exclusiveMinimum"] = low
    if high is not None:
        schema["maximum" if high_inclusive else "exclusiveMaximum"] = high
    return schema


def parameter_schema(parameter: param.Parameter) -> dict[str, Any]:
    """Return the JSON Schema of one ScanConfig Parameter, with its default and doc.

    Raises
    ------
    TypeError
        For a Parameter type the generator does not know (a new kind of setting).
    """
    if isinstance(parameter, param.ListSelector):
        schema = {"type": "array", "items": {"type": "string", "enum": list(parameter.objects)}}
    elif isinstance(parameter, param.Boolean):
        schema = {"type": "boolean"}
    elif isinstance(parameter, param.Selector):
        schema = {"type": "string", "enum": list(parameter.objects)}
    elif isinstance(parameter, param.Integer):
        schema = _numeric(parameter, "integer")
    elif isinstance(parameter, param.Number):
        schema = _numeric(parameter, "number")
    elif isinstance(parameter, param.String):
        schema = {"type": "string"}
    else:
        raise TypeError(f"openapi: no JSON Schema for {type(parameter).__name__} "
                        f"ScanConfig.{parameter.name}")
    schema = _nullable(schema, parameter)
    schema["default"] = copy.copy(parameter.default)
    schema["description"] = parameter.doc
    return schema


def scan_config_schema() -> dict[str, Any]:
    """Return the JSON Schema of a ``POST /scan/stream`` body, one property per setting."""
    properties = {name: parameter_schema(ScanConfig.param[name])
                  for name in ScanConfig.setting_names()}
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "description": "Scan settings: the technic-scan flags with underscores. Rules that "
                           "span settings (path needs source='files', scheduler needs "
                           "executor='dask', filter must parse) are checked on arrival."}


_TIME = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$"}
_RATING = {"type": "number", "minimum": 0, "maximum": 100}


def _live_properties() -> dict[str, Any]:
    """Return what live results and updates add, and what an update says of the row before."""
    return {
        "bar_time": {**_TIME, "description": "Live: the timestamp of the bar scored."},
        "feed_time": {**_COUNT, "description": "Live: UTC wall clock, ms, when the feed handed "
                                               "the bar over."},
        "in_filter": {"type": "boolean", "description": "Live: whether the row passes the "
                                                        "filter (a row that left it stays)."},
        "changed": {"type": "array", "items": {"type": "string", "minLength": 1},
                    "description": "Update: the fields that changed."},
        "previous_signal": {"enum": list(SIGNALS), "description": "Update: the signal before."}}


def _message_schemas() -> dict[str, Any]:
    result = {"type": "object", "required": ["symbol", "signal", "tech_rating", "alpha_score"],
              "properties": {
                  "symbol": {"type": "string", "minLength": 1},
                  "signal": {"enum": list(SIGNALS)},
                  "tech_rating": _RATING,
                  "alpha_score": {"type": "number", "minimum": 0, "maximum": 1},
                  "priority_tier": {"enum": list(PRIORITY_TIERS)},
                  "position": _COUNT, "total_processed": _COUNT, "total_remaining": _COUNT,
                  **_live_properties()}}
    alert = {"type": "object",
             "required": ["symbol", "rule", "signal", "previous_signal", "tech_rating",
                          "bar_time"],
             "description": "A live symbol entered or left the filter or changed signal class, "
                            "on a closed bar; at most once per symbol per alert_cooldown.",
             "properties": {
                 "symbol": {"type": "string", "minLength": 1}, "rule": {"enum": list(ALERT_RULES)},
                 "signal": {"enum": list(SIGNALS)}, "previous_signal": {"enum": list(SIGNALS)},
                 "tech_rating": _RATING, "bar_time": _TIME, "feed_time": _COUNT}}
    by_type = {
        ("result", "update"): result,
        ("alert",): alert,
        ("progress",): {"type": "object", "required": ["processed", "total"],
                        "properties": {"processed": _COUNT, "total": _COUNT}},
        ("error",): {"type": "object", "required": ["message"],
                     "properties": {"message": {"type": "string"}}},
        ("final",): {"type": "object", "required": ["status"],
                     "properties": {"status": {"enum": list(FINAL_STATUSES)},
                                    "reason": {"type": ["string", "null"]}}},
    }
    metadata = {"type": "object", "required": ["timestamp", "scan_id", "seq", "is_final"],
                "properties": {
                    "timestamp": _TIME,
                    "scan_id": {"type": "string", "minLength": 1},
                    "seq": {"type": "integer", "minimum": 1},
                    "is_final": {"type": "boolean"},
                    "local": {"type": "boolean", "description": "Set on the behind_window "
                                                                "error, built for one reader."},
                    "compacted": {"type": "boolean", "description": "Set on a row a reader "
                                  "behind a live scan's window gets instead of what it "
                                  "missed: a result at its first seq, or its latest update."}}}
    message = {
        "type": "object", "required": ["type", "data", "metadata"],
        "description": "One message of a scan stream; metadata.seq numbers them 1, 2, 3, ...",
        "properties": {"type": {"enum": list(MESSAGE_TYPES)}, "data": {"type": "object"},
                       "metadata": metadata},
        "allOf": [{"if": {"properties": {"type": {"enum": list(types)}}},
                   "then": {"properties": {"data": schema}}} for types, schema in by_type.items()]
        + [{"if": {"properties": {"type": {"const": "final"}}},
            "then": {"properties": {"metadata": {"properties": {"is_final": {"const": True}}}}},
            "else": {"properties": {"metadata": {"properties": {"is_final": {"const": False}}}}}}],
    }
    return {"Message": message}


def _record_schemas() -> dict[str, Any]:
    record = {"type": "object",
              "required": ["scan_id", "status", "config", "progress", "last_seq"],
              "properties": {
                  "scan_id": {"type": "string"},
                  "status": {"enum": ["running", *FINAL_STATUSES]},
                  "reason": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]},
                  "paused": {"type": "boolean"}, "abandoned": {"type": "boolean"},
                  "started_at": {"type": "number", "description": "Seconds since the epoch."},
                  "ended_at": {"type": ["number", "null"]},
                  "config": _ref("ScanConfig"), "progress": {"type": "object"},
                  "last_seq": _COUNT, "subscribers": _COUNT}}
    status = {"allOf": [_ref("ScanRecord"), {
        "type": "object", "required": ["messages", "next_since", "has_more"],
        "properties": {"messages": {"type": "array", "items": _ref("Message")},
                       "next_since": _COUNT, "has_more": {"type": "boolean"}}}]}
    link = {"type": "string", "format": "uri"}
    created = {"type": "object", "required": ["scan_id", "links"],
               "properties": {"scan_id": {"type": "string"}, "links": {
                   "type": "object", "required": ["self", "stop", "events", "websocket"],
                   "properties": dict.fromkeys(("self", "stop", "events", "websocket"), link)}}}
    error = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "integer", "minimum": 400, "maximum": 599},
                       "message": {"type": "string"},
                       "field": {"type": ["string", "null"]}}}}}
    health = {"type": "object", "required": ["status", "scans", "running"],
              "properties": {"status": {"const": "ok"}, "scans": _COUNT, "running": _COUNT}}
    scans = {"type": "object", "required": ["scans"],
             "properties": {"scans": {"type": "array", "items": _ref("ScanRecord")}}}
    return {"ScanRecord": record, "ScanStatus": status, "ScanCreated": created, "Error": error,
            "Health": health, "ScanList": scans}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json("Error", _ERROR_CODES[code]) for code in ("401", *codes, "405")}


def _responses(ok: str, schema: str, description: str, *errors: str) -> dict[str, Any]:
    return {ok: _json(schema, description), **_errors(*errors)}


def _query(name: str, description: str, schema: dict[str, Any], *, required: bool = False,
           where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": schema}


_SCAN_ID = _query("scan_id", "A scan id from POST /scan/stream.", {"type": "string"},
                  required=True, where="path")
_SINCE = _query("since", "Only messages after this seq (default 0: all).", _COUNT)
_TOKEN = _query("token", "The API token, for clients that cannot set a header.",
                {"type": "string"})


def _stream_paths() -> dict[str, Any]:
    scan_id = {**_SCAN_ID, "in": "query"}
    events = {"get": {
        "summary": "Server-Sent Events: the scan's messages, one event each, then close",
        "description": "`id:` is the seq, `event:` the type, `data:` the message. Resumes "
                       "after the `Last-Event-ID` header (or `since`). Sends `retry:` first and "
                       "a `: keep-alive` comment after each quiet heartbeat interval.",
        "parameters": [scan_id, _SINCE, _TOKEN, _query("Last-Event-ID", "Resume after this seq.",
                                                       _COUNT, where="header")],
        "responses": {"200": {"description": "The event stream, ending after the final.",
                              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                      **_errors("400", "404")}}}
    websocket = {"get": {
        "summary": "WebSocket: the scan's messages, one JSON message per text frame",
        "description": "Send `{\"action\": \"subscribe\", \"scan_id\": ..., \"since\": ...}` "
                       "or `{\"action\": \"stop\"}`; bad requests get an Error envelope over "
                       "the socket. Browsers must connect from the same host.",
        "parameters": [{**scan_id, "required": False}, _SINCE, _TOKEN],
        "responses": {"101": {"description": "Switching protocols."},
                      **_errors("400", "404"),
                      "403": _json("Error", "A browser connected from a foreign Origin.")}}}
    return {"/events/results": events, "/ws/results": websocket}


@functools.cache
def _spec() -> dict[str, Any]:
    paths = {
        "/scan/stream": {"post": {
            "summary": "Start a scan", "requestBody": {"required": False, "content": {
                "application/json": {"schema": _ref("ScanConfig")}}},
            "responses": _responses("201", "ScanCreated", "Started; links to watch and stop it.",
                                    "400", "413", "415", "429")}},
        "/scan/stream/{scan_id}": {"get": {
            "summary": "Status, progress and a page of messages",
            "parameters": [_SCAN_ID, _SINCE, _query(
                "limit", "Page size, 1 to 10000 (default 1000).",
                {"type": "integer", "minimum": 1, "maximum": 10_000})],
            "responses": _responses("200", "ScanStatus", "Continue with since=next_since.",
                                    "400", "404")}},
        "/scan/stop/{scan_id}": {"post": {
            "summary": "Stop a scan (idempotent)", "parameters": [_SCAN_ID],
            "responses": _responses("200", "ScanRecord", "The scan, stopping or ended.", "404",
                                    "415")}},
        "/scans": {"get": {"summary": "Active and recent scans, newest first",
                           "responses": _responses("200", "ScanList", "Every scan held.")}},
        "/health": {"get": {"summary": "Liveness and scan counts (no token needed)",
                            "responses": {"200": _json("Health", "The server is up.")}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {
            "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}},
            "401": _json("Error", _ERROR_CODES["401"])}}},
        **_stream_paths(),
    }
    schemas = {"ScanConfig": scan_config_schema(), **_message_schemas(), **_record_schemas()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "technic-panel scan API", "version": "1",
                 "description": "Start, watch and stop streaming stock scans. See docs/api.md."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "Needed when TECHNIC_API_TOKEN is set."}}},
        "security": [{}, {"bearer": []}],
    }


def openapi_spec() -> dict[str, Any]:
    """Return the OpenAPI 3.1 description of the API (a fresh copy: callers may edit it)."""
    return copy.deepcopy(_spec())
