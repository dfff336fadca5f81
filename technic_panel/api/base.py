"""The shape every API handler shares: injected options, the token check, one error envelope.

Dependencies come through ``initialize(options)`` (an :class:`APIOptions`), errors are
raised as :class:`APIError` (an ``HTTPError``) chained ``from`` their cause, and one
``write_error`` answers every error, 404, 405 and 500 included, with
``{"error": {"code": <status>, "message": ..., "field": <the bad input, or null>}}``.
Handlers are not thread-safe: Tornado runs them on its IOLoop.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tornado import httputil
from tornado.web import HTTPError, MissingArgumentError, RequestHandler, stream_request_body

from technic_panel.policy import ServerPolicy
from technic_panel.streaming.jsonsafe import to_json
from technic_panel.streaming.manager import ScanRecord, StreamManager, UnknownScan, default_manager
from technic_panel.streaming.streamer import Subscription

if TYPE_CHECKING:
    from technic_panel.api.fanout import FanOut

API_TOKEN_ENV = "TECHNIC_API_TOKEN"
"""Environment variable holding the bearer token, read at request time; unset: no auth."""
MAX_BODY_BYTES = 64 * 1024
"""Default most bytes of a request body (413 beyond)."""
HEARTBEAT_INTERVAL = 15.0
"""Default most seconds an SSE stream stays silent before a ``: keep-alive`` comment."""
RETRY_MS = 2000
"""Default ``retry:`` hint sent to SSE clients, in ms."""
WRITE_TIMEOUT = 30.0
"""Default most seconds a stream waits for a client to take its writes before closing it."""
DIGITS = re.compile(r"[0-9]{1,18}")
"""A seq or count as text: ASCII digits only (no sign, spaces, underscores or other scripts)."""
_ENCODED_CACHE = 8192


def error_envelope(code: int, message: str, field: str | None = None) -> dict[str, Any]:
    """Return the JSON body of every error answer: ``{"error": {code, message, field}}``."""
    return {"error": {"code": code, "message": message, "field": field}}


class APIError(HTTPError):
    """An HTTP error whose ``message`` and ``field`` (the bad input, if any) go to the envelope."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(status, "%s", message)
        self.message, self.field = message, field


@dataclass
class APIOptions:
    """What every handler of one application shares (see :func:`technic_panel.api.rest.make_app`).

    Not thread-safe (the :meth:`encode` cache): use it on the application's IOLoop only.
    """

    manager: StreamManager | None = None
    token: str | None = None
    heartbeat: float = HEARTBEAT_INTERVAL
    retry_ms: int = RETRY_MS
    max_body: int = MAX_BODY_BYTES
    policy: ServerPolicy | None = None
    write_timeout: float = WRITE_TIMEOUT
    _encoded: dict[tuple, str] = field(default_factory=dict, init=False, repr=False)
    fanouts: dict[str, FanOut] = field(default_factory=dict, init=False, repr=False)
    """The running fan-out of each scan streamed on this application's loop, by scan id."""

    def scans(self) -> StreamManager:
        """Return the injected manager, else the process-wide one."""
        return self.manager if self.manager is not None else default_manager()

    def server_policy(self) -> ServerPolicy:
        """Return the injected policy, else the environment's (read at request time).

        An injected ``token`` replaces the policy's.
        """
        policy = self.policy if self.policy is not None else ServerPolicy.from_env()
        if self.token is not None and self.token != policy.token:
            policy = ServerPolicy(**{**policy.__dict__, "token": self.token or None})
        return policy

    def encode(self, message: dict) -> str:
        """Return ``message`` as JSON, serialised once however many clients receive it.

        Keyed by scan id, seq and the local flag, which together name one message.
        """
        meta = message["metadata"]
        key = (meta["scan_id"], meta["seq"], meta.get("local", False))
        text = self._encoded.get(key)
        if text is None:
            if len(self._encoded) >= _ENCODED_CACHE:
                self._encoded.clear()
            text = self._encoded[key] = to_json(message)
        return text


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes | bytearray, what: str) -> Any:
    """Parse JSON (refusing NaN and Infinity); 400 naming ``what`` if it is not valid."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise APIError(400, f"{what} is not valid JSON: {exc}") from exc


def _describe(exc: BaseException | None, status: int) -> tuple[str, str | None]:
    """Return the envelope's message and field for an error raised in a handler."""
    if isinstance(exc, APIError):
        return exc.message, exc.field
    if isinstance(exc, MissingArgumentError):
        return f"the query parameter {exc.arg_name!r} is required", exc.arg_name
    if isinstance(exc, HTTPError) and exc.log_message:
        return (exc.log_message % exc.args if exc.args else exc.log_message), None
    if status >= 500:
        return "internal server error; the server log has the details", None
    return httputil.responses.get(status, "error"), None


class APIMixin:
    """Shared by every handler: injected options, the token check and the error envelope."""

    public = False
    """Whether no token is needed (``GET /health``, for liveness probes)."""
    query_token = False
    """Whether ``?token=`` is accepted besides the header (SSE and WebSocket)."""
    owner: str | None = None
    """The identity of the request's token (None when the server needs no token)."""

    def initialize(self, options: APIOptions) -> None:
        """Take the application's shared options (Tornado passes the route's kwargs)."""
        self.shared = options

    @property
    def manager(self) -> StreamManager:
        """The scans' manager."""
        return self.shared.scans()

    def authorize(self) -> None:
        """Raise 401 unless the request carries a valid token (when one is required).

        Sets :attr:`owner`, the identity whose scans this request may see and stop.
        """
        self.policy = self.shared.server_policy()
        if self.public or not self.policy.tokens:
            return
        self.owner = self.policy.owner_of(self._given_token())
        if self.owner is None:
            where = " or ?token=" if self.query_token else ""
            raise APIError(401, f"a valid token is required: send 'Authorization: Bearer "
                                f"<token>'{where} (the server's {API_TOKEN_ENV})")

    def _given_token(self) -> str | None:
        scheme, _, value = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return self.get_query_argument("token", None) if self.query_token else None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Answer every error with the JSON envelope (also 404, 405 and 500)."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message, field_name = _describe(exc, status_code)
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="technic-panel"')
        if status_code == 405:
            allowed = ", ".join(self.allowed_methods())
            self.set_header("Allow", allowed)
            message = f"{self.request.method} is not allowed on {self.request.path}; use {allowed}"
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(error_envelope(status_code, message, field_name)))

    def allowed_methods(self) -> list[str]:
        """Return the methods this handler answers (``OPTIONS`` always, ``HEAD`` with GET)."""
        methods = [method for method in ("GET", "POST")
                   if getattr(type(self), method.lower()) is not getattr(RequestHandler,
                                                                         method.lower())]
        return [*methods, *(["HEAD"] if "GET" in methods and self.head_allowed else []),
                "OPTIONS"]

    head_allowed = True
    """Whether ``HEAD`` answers a GET's status and headers (not for streams)."""

    def options(self, *args: str) -> None:
        """Answer ``OPTIONS`` with 204 and the ``Allow`` header (after the token check)."""
        self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.set_status(204)
        self.finish()

    def int_argument(self, name: str, default: int, low: int, high: int | None = None) -> int:
        """Return the query parameter ``name`` as an integer in [low, high]; 400 otherwise."""
        text = self.get_query_argument(name, None)
        if text is None:
            return default
        value = int(text) if DIGITS.fullmatch(text) else -1
        if value < low or (high is not None and value > high):
            upper = "" if high is None else f" and <= {high}"
            raise APIError(400, f"{name} must be an integer >= {low}{upper}, not {text!r}", name)
        return value

    def scan_record(self, scan_id: str) -> ScanRecord:
        """Return the scan's record; 404 for an unknown scan (or another client's)."""
        try:
            return self.manager.get(scan_id, self.owner)
        except UnknownScan as exc:
            raise APIError(404, str(exc), "scan_id") from exc

    def subscribe(self, scan_id: str, since: int, name: str = "since") -> Subscription:
        """Subscribe to the scan after seq ``since`` (the ``name`` parameter); 404 or 400."""
        record = self.scan_record(scan_id)
        try:
            return record.streamer.subscribe(since)
        except ValueError as exc:
            raise APIError(400, f"{name} must be at most the scan's last seq: {exc}", name) \
                from exc


@stream_request_body
class APIHandler(APIMixin, RequestHandler):
    """Base of the HTTP handlers: a bounded body and JSON answers.

    Not thread-safe, like every Tornado handler: Tornado calls it on its IOLoop.
    """

    json_required = False
    """Whether a POST must say ``Content-Type: application/json`` even with no body."""

    def prepare(self) -> None:
        """Check the token and the body's type, then count the body as it arrives.

        A POST's body must be JSON (415 otherwise), so a cross-site form or a
        ``text/plain`` fetch, which browsers send without asking, cannot act.
        """
        self.authorize()
        if self.request.method == "POST":
            self._check_json_type()
        self._body, self._body_size = bytearray(), 0

    def _check_json_type(self) -> None:
        given = self.request.headers.get("Content-Type")
        has_body = self.request.headers.get("Content-Length", "0") != "0" or \
            "Transfer-Encoding" in self.request.headers
        if given is None and not (has_body or self.json_required):
            return
        media = (given or "").split(";")[0].strip().lower()
        if media != "application/json":
            raise APIError(415, f"{self.request.path} takes 'Content-Type: application/json', "
                                f"not {given!r}", "Content-Type")

    def head(self, *args: str) -> None:
        """Answer ``HEAD`` with the status and headers of ``GET`` (405 on streams)."""
        if not self.head_allowed or "GET" not in self.allowed_methods():
            raise HTTPError(405)
        self._head = True
        self.get(*args)

    def data_received(self, chunk: bytes) -> None:
        """Keep the body while it fits; past ``max_body`` only count it (413 later)."""
        self._body_size += len(chunk)
        if self._body_size <= self.shared.max_body:
            self._body += chunk

    def json_body(self) -> Any:
        """Return the parsed JSON body (``{}`` when empty); 413 if too large, 400 if invalid."""
        if self._body_size > self.shared.max_body:
            raise APIError(413, f"the body has {self._body_size} bytes; the most allowed is "
                                f"{self.shared.max_body}")
        return parse_json(self._body, "the body") if self._body.strip() else {}

    _head = False

    def send_json(self, data: Any, status: int = 200) -> None:
        """Finish with ``data`` as JSON (only its headers for ``HEAD``)."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        text = json.dumps(data, allow_nan=False)
        if self._head:
            self.set_header("Content-Length", len(text.encode()))
            self.finish()
        else:
            self.finish(text)

    def describe(self, record: ScanRecord) -> dict[str, Any]:
        """Return a record as JSON data."""
        return record.to_dict()


class NotFoundHandler(APIHandler):
    """Every other path under the API's prefixes (and, in ``make_app``, everywhere): 404."""

    def prepare(self) -> None:
        """Check the token, then answer 404 whatever the method."""
        super().prepare()
        raise APIError(404, f"no such path: {self.request.path} (see /openapi.json)")
