"""The stream handlers: Server-Sent Events and WebSocket, each a cursor into a scan's log.

A handler holds a :class:`~technic_panel.streaming.streamer.Subscription`: a cursor into the
scan's bounded log, not a queue. It takes what is published without waiting
(``get_batch(timeout=0)``), writes it, and awaits the flush (or every WebSocket write)
before it reads on, so a slow client only lets its own cursor lag and never slows the
scan or other clients. Once it has caught up, it joins the scan's
:class:`~technic_panel.api.fanout.FanOut`, whose one task reads and writes for every
caught-up stream per publish (the cursor stays the handler's), until the fan-out hands it
back: slow, or ended. Waits are the subscription's ``async for``, which scan threads wake
with ``loop.call_soon_threadsafe``; no handler waits on a lock or does scan work. A cursor
that falls behind the retained window receives the streamer's local ``behind_window``
error and is disconnected; it resumes from that error's seq (a live scan's stream gives it
the rows it lacks instead, compacted, and goes on). A client that takes no writes for
``write_timeout`` seconds is disconnected, so a stalled reader pins nothing. Closing the
connection closes the subscription. Both streams set TCP_NODELAY: they write message by
message, and Nagle's algorithm meeting the client's delayed ACK would hold a small write
up to 40 ms. Not thread-safe: IOLoop only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from technic_panel.api.base import (
    DIGITS,
    APIError,
    APIHandler,
    APIMixin,
    APIOptions,
    error_envelope,
    parse_json,
)
from technic_panel.api.fanout import Member, leave, stream
from technic_panel.policy import ServerPolicy
from technic_panel.streaming.jsonsafe import to_json
from technic_panel.streaming.manager import UnknownScan
from technic_panel.streaming.streamer import Subscription

log = logging.getLogger(__name__)

BEHIND_WINDOW_CLOSE = 4000
"""WebSocket close code after the ``behind_window`` error: reconnect from its seq."""


def encode(shared: APIOptions, message: dict) -> str:
    """Return ``message`` as JSON: once for all clients, but a compacted one for its reader.

    A compacted row (a live scan's reader behind the window) reuses the seq of a message it
    stands for, with newer content, so it must not share that message's cached text.
    """
    return to_json(message) if message["metadata"].get("compacted") else shared.encode(message)


class EventsHandler(APIHandler):
    """``GET /events/results?scan_id=ID``: Server-Sent Events, one per message, then close.

    Not thread-safe: Tornado calls it on its IOLoop; scan threads only wake its cursor.
    """

    query_token = True
    head_allowed = False
    _subscription: Subscription | None = None
    _member: Member | None = None

    async def get(self) -> None:
        """Stream from ``Last-Event-ID`` (or ``since``) to the final."""
        scan_id = self._scan_id = self.get_query_argument("scan_id")
        self._subscription = self.subscribe(scan_id, *self._resume_point())
        self.request.connection.stream.set_nodelay(True)  # no Nagle + delayed-ACK 40 ms stalls
        self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        self.write(f"retry: {self.shared.retry_ms}\n\n")
        try:
            await self._pump(self._subscription)
        except StreamClosedError:
            log.debug("SSE client of %s went away", scan_id)
        except TimeoutError:
            log.info("SSE client of %s took no data for %g s; disconnected", scan_id,
                     self.shared.write_timeout)
            self.request.connection.stream.close()

    async def _pump(self, subscription: Subscription) -> None:
        await self._flush()
        self._member = Member(subscription, self._write_events, self._keep_alive)
        await stream(self._member, self.shared.fanouts, self._scan_id, self.shared.heartbeat,
                     self._settle)

    async def _settle(self, flushing: Awaitable[None]) -> bool:
        await self._flush(flushing)
        return True

    def _write_events(self, batch: list[dict]) -> Awaitable[None]:
        """Write one event per message, in one write, and flush; return the flush."""
        self.write("".join(f"id: {message['metadata']['seq']}\nevent: {message['type']}\n"
                           f"data: {encode(self.shared, message)}\n\n" for message in batch))
        return self.flush()

    def _keep_alive(self) -> Awaitable[None]:
        self.write(": keep-alive\n\n")
        return self.flush()

    async def _flush(self, flushing: Awaitable[None] | None = None) -> None:
        """Await ``flushing`` (a new flush if ``None``).

        Raises TimeoutError if the client takes nothing for ``write_timeout``.
        """
        async with asyncio.timeout(self.shared.write_timeout):
            await (self.flush() if flushing is None else flushing)

    def _resume_point(self) -> tuple[int, str]:
        """Return the cursor to resume from and the parameter that gave it."""
        last_event_id = self.request.headers.get("Last-Event-ID")
        if last_event_id is None:
            return self.int_argument("since", 0, 0), "since"
        if not DIGITS.fullmatch(last_event_id.strip()):
            raise APIError(400, "Last-Event-ID must be a seq (an integer >= 0), not "
                                f"{last_event_id!r}", "Last-Event-ID")
        return int(last_event_id), "Last-Event-ID"

    def on_connection_close(self) -> None:
        """Release the cursor when the client goes away."""
        self._release()

    def on_finish(self) -> None:
        """Release the cursor when the response ends."""
        self._release()

    def _release(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        if self._member is not None:
            leave(self.shared.fanouts, self._scan_id, self._member)


class ResultsSocket(APIMixin, WebSocketHandler):
    """``WS /ws/results``: one JSON message per text frame; ``subscribe`` / ``stop`` actions.

    The socket closes after the ``final`` (code 1000) or after the ``behind_window`` error
    (code :data:`BEHIND_WINDOW_CLOSE`). Not thread-safe: Tornado calls it on its IOLoop.
    """

    query_token = True
    _subscription: Subscription | None = None
    _pump_task: asyncio.Task | None = None
    _scan_id: str | None = None

    def prepare(self) -> None:
        """Check token, upgrade, Origin and ``?scan_id`` / ``since`` before upgrading."""
        self.authorize()
        headers = self.request.headers
        if headers.get("Upgrade", "").lower() != "websocket" or \
                "upgrade" not in headers.get("Connection", "").lower():
            raise APIError(400, "/ws/results is a WebSocket: send 'Connection: Upgrade' and "
                                "'Upgrade: websocket'")
        origin = headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            raise APIError(403, f"a WebSocket from Origin {origin!r} is refused: only the "
                                "origins the operator allows may connect (panel serve "
                                "--allow-websocket-origin, TECHNIC_ALLOWED_ORIGINS)", "Origin")
        self._scan_id = self.get_query_argument("scan_id", None)
        self._since = self.int_argument("since", 0, 0)
        if self._scan_id is not None:
            self.subscribe(self._scan_id, self._since).close()  # 404 / 400 now, not in-band

    def check_origin(self, origin: str) -> bool:
        """Accept a browser only from an allowed origin (clients without one always pass).

        The origins are the operator's, never the request's ``Host`` header (which a DNS
        rebinding page controls): see :func:`allowed_origins`.
        """
        port = self.request.connection.stream.socket.getsockname()[1]
        allowed = allowed_origins(self.policy, self.application, port)
        return urlparse(origin).netloc.lower() in allowed

    async def open(self) -> None:
        """Start streaming ``?scan_id`` from ``since``, if given."""
        self.set_nodelay(True)  # Tornado leaves it off: Nagle would hold frames up to 40 ms
        if self._scan_id is not None:
            await self._answer(self._follow, self._scan_id, self._since)

    async def on_message(self, message: str | bytes) -> None:
        """Handle an action; a bad one gets an error envelope over the socket."""
        await self._answer(self._act, message)

    async def _answer(self, act: Callable[..., None], *args: Any) -> None:
        try:
            act(*args)
        except APIError as exc:
            await self._send(json.dumps(error_envelope(exc.status_code, exc.message, exc.field)))

    def _act(self, message: str | bytes) -> None:
        request = parse_json(message, "the message")
        if not isinstance(request, dict):
            raise APIError(400, 'the message must be a JSON object like {"action": "stop"}')
        action = request.get("action")
        if action == "subscribe":
            scan_id, since = request.get("scan_id"), request.get("since", 0)
            if not isinstance(scan_id, str) or not scan_id:
                raise APIError(400, f"scan_id must be a scan id, not {scan_id!r}", "scan_id")
            if type(since) is not int or since < 0:
                raise APIError(400, f"since must be an integer >= 0, not {since!r}", "since")
            self._follow(scan_id, since)
        elif action == "stop":
            self._stop(request.get("scan_id", self._scan_id))
        else:
            raise APIError(400, f"action must be 'subscribe' or 'stop', not {action!r}",
                           "action")

    def _stop(self, scan_id: Any) -> None:
        if not isinstance(scan_id, str):
            raise APIError(400, f"stop needs a scan_id (or a subscription), not {scan_id!r}",
                           "scan_id")
        try:
            self.manager.stop_stream(scan_id, self.owner)
        except UnknownScan as exc:
            raise APIError(404, str(exc), "scan_id") from exc

    def _follow(self, scan_id: str, since: int) -> None:
        """Stream ``scan_id`` after ``since`` instead of what this socket streamed before."""
        subscription = self.subscribe(scan_id, since)
        self._release()
        self._scan_id, self._subscription = scan_id, subscription
        self._pump_task = asyncio.ensure_future(self._pump(subscription))
        self._pump_task.add_done_callback(self._pump_done)

    async def _pump(self, subscription: Subscription) -> None:
        member = Member(subscription, self._write_frames)
        last = await stream(member, self.shared.fanouts, self._scan_id, self.shared.heartbeat,
                            self._settled)
        if last is not None:
            self._close_after(last)

    def _close_after(self, message: dict) -> None:
        """Close after the final (1000) or the behind_window error."""
        if message["metadata"]["is_final"]:
            self.close(1000, "final")
        else:
            self.close(BEHIND_WINDOW_CLOSE, "behind the retained window")

    async def _send(self, text: str) -> bool:
        """Write one frame and await it; False if the socket has closed."""
        return await self._settled(self._write_texts([text]))

    def _write_frames(self, batch: list[dict]) -> asyncio.Future:
        return self._write_texts([encode(self.shared, message) for message in batch])

    def _write_texts(self, texts: list[str]) -> asyncio.Future:
        """Write one frame per text; return a future of them all (failed if the socket closed)."""
        try:
            writes = [self.write_message(text) for text in texts]
        except WebSocketClosedError as exc:
            writes = [asyncio.get_running_loop().create_future()]
            writes[0].set_exception(exc)
        for write in writes:  # seen even if no one awaits it: a cancelled stream's last write
            write.add_done_callback(_quietly)
        return writes[-1]  # frames go out in order: the last completes last

    async def _settled(self, writing: Awaitable[None]) -> bool:
        """Await a write; False if the socket closed or the client took nothing in time.

        A client that takes nothing within ``write_timeout`` is disconnected.
        """
        try:
            async with asyncio.timeout(self.shared.write_timeout):
                await writing
        except TimeoutError:
            log.info("WebSocket client of %s took no data for %g s; disconnected",
                     self._scan_id, self.shared.write_timeout)
            self.close(1008, "too slow")
            return False
        except WebSocketClosedError:
            return False
        return True

    def _pump_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("WebSocket stream of %s failed", self._scan_id, exc_info=task.exception())
            self.close(1011, "server error")

    def on_close(self) -> None:
        """Release the cursor when the socket closes."""
        self._release()

    def _release(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
        if self._subscription is not None:
            self._subscription.close()


def _quietly(write: asyncio.Future) -> None:
    """Retrieve a write's outcome, so a closed socket's failed frames are not logged.

    Whoever awaits the write still gets its exception.
    """
    if not write.cancelled():
        write.exception()


def allowed_origins(policy: ServerPolicy, application: Any, port: int) -> set[str]:
    """Return the ``host:port`` origins whose pages may open the API's WebSocket.

    The operator's: ``TECHNIC_ALLOWED_ORIGINS`` plus, under ``panel serve``, its
    ``--allow-websocket-origin`` list; when neither names one, the pages of this
    server's own port on ``localhost`` and ``127.0.0.1``.
    """
    allowed = set(policy.allowed_origins)
    allowed |= {origin.lower() for origin in getattr(application, "websocket_origins", ())}
    return allowed or {f"localhost:{port}", f"127.0.0.1:{port}"}
