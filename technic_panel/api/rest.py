"""The HTTP API: start, watch and stop scans over REST, Server-Sent Events and WebSocket.

Mount it beside the dashboard with ``panel serve app.py --plugins technic_panel.api.serve``:
Panel adds :data:`ROUTES`, whose handlers share the process-wide
:func:`~technic_panel.streaming.manager.default_manager` with the dashboard sessions. Or run it
alone (tests, notebooks) with :func:`make_app`. ``docs/api.md`` describes the endpoints
for people, ``GET /openapi.json`` (:mod:`technic_panel.api.openapi`) for machines.

This module holds the REST handlers and the routes; :mod:`technic_panel.api.base` the
shape every handler shares (options, token, error envelope) and
:mod:`technic_panel.api.streams` the SSE and WebSocket handlers and how they deliver.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tornado.web import Application

from technic_panel.api import auth
from technic_panel.api.base import (
    API_TOKEN_ENV,
    HEARTBEAT_INTERVAL,
    MAX_BODY_BYTES,
    RETRY_MS,
    WRITE_TIMEOUT,
    APIError,
    APIHandler,
    APIOptions,
    NotFoundHandler,
    error_envelope,
)
from technic_panel.api.openapi import openapi_spec
from technic_panel.api.streams import EventsHandler, ResultsSocket
from technic_panel.config import ConfigError
from technic_panel.policy import ServerPolicy
from technic_panel.streaming.manager import StreamManager, TooManyScans, UnknownScan

__all__ = ["API_TOKEN_ENV", "ROUTES", "APIError", "APIOptions", "error_envelope", "make_app",
           "routes"]

DEFAULT_PAGE, MAX_PAGE = 1000, 10_000
"""Default and largest ``limit`` of ``GET /scan/stream/{id}``."""


class ScanStartHandler(APIHandler):
    """``POST /scan/stream``: validate the body as ScanConfig settings and start the scan.

    The settings are checked against the server's policy; the scan belongs to the
    client's token.
    """

    json_required = True

    def post(self) -> None:
        """Start the scan; 201 with its id and links (400 bad setting, 429 at the cap)."""
        body = self.json_body()
        if not isinstance(body, dict):
            raise APIError(400, "the body must be a JSON object of scan settings, not "
                                f"{type(body).__name__}")
        try:
            scan_id = self.manager.start_stream(body, policy=self.policy, owner=self.owner)
        except ConfigError as exc:
            raise APIError(400, str(exc), exc.field) from exc
        except TooManyScans as exc:
            raise APIError(429, str(exc)) from exc
        links = self._links(scan_id)
        self.set_header("Location", links["self"])
        self.send_json({"scan_id": scan_id, "links": links}, 201)

    def _links(self, scan_id: str) -> dict[str, str]:
        """Return absolute links, keeping any prefix the server mounts the API under."""
        request = self.request
        base = request.path[: -len("/scan/stream")]
        http = f"{request.protocol}://{request.host}{base}"
        ws = f"{'wss' if request.protocol == 'https' else 'ws'}://{request.host}{base}"
        quoted = quote(scan_id, safe="")
        return {"self": f"{http}/scan/stream/{quoted}", "stop": f"{http}/scan/stop/{quoted}",
                "events": f"{http}/events/results?scan_id={quoted}",
                "websocket": f"{ws}/ws/results?scan_id={quoted}"}


class ScanStatusHandler(APIHandler):
    """``GET /scan/stream/{id}``: status, progress and a page of messages after ``since``."""

    def get(self, scan_id: str) -> None:
        """Answer with the record plus ``messages``, ``next_since`` and ``has_more``."""
        since = self.int_argument("since", 0, 0)
        limit = self.int_argument("limit", DEFAULT_PAGE, 1, MAX_PAGE)
        record = self.scan_record(scan_id)
        try:
            messages = record.streamer.messages_since(since, limit)
        except ValueError as exc:
            raise APIError(400, f"since must be at most the scan's last seq: {exc}",
                           "since") from exc
        next_since = messages[-1]["metadata"]["seq"] if messages else since
        body = self.describe(record)
        body.update(messages=messages, next_since=next_since,
                    has_more=record.streamer.last_seq > next_since)
        self.send_json(body)


class ScanStopHandler(APIHandler):
    """``POST /scan/stop/{id}``: stop the scan; idempotent, 404 for an unknown id."""

    def post(self, scan_id: str) -> None:
        """Stop the scan and answer with its record (its final follows on the streams)."""
        try:
            record = self.manager.stop_stream(scan_id, self.owner)
        except UnknownScan as exc:
            raise APIError(404, str(exc), "scan_id") from exc
        self.send_json(self.describe(record))


class ScansHandler(APIHandler):
    """``GET /scans``: the client's scans still held, running and recent, newest first."""

    def get(self) -> None:
        """Answer ``{"scans": [record, ...]}``."""
        self.send_json({"scans": self.manager.list(self.owner)})


class HealthHandler(APIHandler):
    """``GET /health``: liveness and scan counts; needs no token."""

    public = True

    def get(self) -> None:
        """Answer ``{"status": "ok", "scans": n, "running": m}``."""
        scans = self.manager.list()
        running = sum(scan["status"] == "running" for scan in scans)
        self.send_json({"status": "ok", "scans": len(scans), "running": running})


class OpenAPIHandler(APIHandler):
    """``GET /openapi.json``: the OpenAPI 3.1 description of this API."""

    def get(self) -> None:
        """Answer with :func:`~technic_panel.api.openapi.openapi_spec`."""
        self.send_json(openapi_spec())


_HANDLERS = [(r"/scan/stream", ScanStartHandler), (r"/scan/stream/([^/]+)", ScanStatusHandler),
             (r"/scan/stop/([^/]+)", ScanStopHandler), (r"/scans", ScansHandler),
             (r"/health", HealthHandler), (r"/openapi.json", OpenAPIHandler),
             (r"/events/results", EventsHandler), (r"/ws/results", ResultsSocket),
             *[(rf"{prefix}/.*", NotFoundHandler)
               for prefix in ("/scan", "/scans", "/events", "/ws")]]


def routes(options: APIOptions | None = None) -> list[tuple[str, type, dict[str, Any]]]:
    """Return the API's ``(pattern, handler, kwargs)`` triples, the catch-all 404s last.

    Parameters
    ----------
    options
        What the handlers share; default: :class:`APIOptions` on the default manager.
    """
    kwargs = {"options": options if options is not None else APIOptions()}
    return [(pattern, handler, kwargs) for pattern, handler in _HANDLERS]


ROUTES = routes()
"""The routes ``panel serve --plugins technic_panel.api.serve`` mounts, on the default manager."""
auth.install()  # the access log never shows a ?token=, for the API as for the dashboard


def make_app(manager: StreamManager | None = None, token: str | None = None, *,
             heartbeat: float = HEARTBEAT_INTERVAL, retry_ms: int = RETRY_MS,
             max_body: int = MAX_BODY_BYTES, policy: ServerPolicy | None = None,
             write_timeout: float = WRITE_TIMEOUT) -> Application:
    """Return a Tornado application serving the API alone; every other path is a JSON 404.

    Parameters
    ----------
    manager
        The scans' manager; default :func:`~technic_panel.streaming.manager.default_manager`.
    token
        The bearer token requests must carry; default ``TECHNIC_API_TOKEN``, read at
        request time (unset or empty: no token needed).
    heartbeat
        Most seconds an SSE stream stays silent before a ``: keep-alive`` comment.
    retry_ms
        The ``retry:`` hint sent to SSE clients.
    max_body
        Most bytes of a request body (413 beyond).
    policy
        What remote clients may ask; default :meth:`ServerPolicy.from_env`, read at
        request time.
    write_timeout
        Most seconds a stream waits for a stalled client before disconnecting it.

    Examples
    --------
    >>> app = make_app(StreamManager(), token="s3cret")
    >>> server = app.listen(0, "127.0.0.1")  # doctest: +SKIP
    """
    options = APIOptions(manager, token, heartbeat, retry_ms, max_body, policy, write_timeout)
    return Application(routes(options), default_handler_class=NotFoundHandler,
                       default_handler_args={"options": options})
