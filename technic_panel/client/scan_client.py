"""ScanClient: start, watch and stop the scans of a technic-panel server from Python.

It speaks the HTTP API of ``docs/api.md`` with tornado's own clients, so it needs nothing
beyond the package's dependencies: REST through :mod:`tornado.httpclient`, WebSocket
through :func:`tornado.websocket.websocket_connect`, and Server-Sent Events through a
:class:`tornado.http1connection.HTTP1Connection` read chunk by chunk (a connection it owns,
so it can close it at once when the caller stops reading).

**Resuming.** :meth:`ScanClient.astream` remembers the last seq it yielded. After a
network error, or a connection that ends before the ``final`` (a server restart, the
``behind_window`` error), it reconnects from that seq (``Last-Event-ID`` / ``since``) and
skips any seq it has already yielded, so the caller sees every message once, in seq
order, ending with the ``final``. It gives up after ``retries`` failures in a row
without a message. Errors the server answers (4xx) raise :class:`ScanAPIError` at once.

**Sync and async.** ``astart``, ``astop``, ``astatus`` and ``astream`` run on the
caller's event loop. ``start``, ``stop``, ``status`` and ``stream`` run them on a private
loop in a daemon thread (so they also work in Jupyter, whose loop is already running);
``stream`` hands messages over through a :class:`queue.Queue`, at most
:data:`HANDOFF_LIMIT` ahead of the reader. Call :meth:`ScanClient.close` (or use ``with``)
to end that thread. A ScanClient may be shared between threads.

>>> with ScanClient("http://127.0.0.1:5006") as client:  # doctest: +SKIP
...     scan_id = client.start({"symbols": 500, "max_signals": 10})
...     for message in client.stream(scan_id):
...         print(message["type"], message["data"].get("symbol"))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from contextlib import aclosing
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import orjson
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, websocket_connect

from technic_panel.client.sse import SSEParser, open_event_stream

log = logging.getLogger(__name__)

HANDOFF_LIMIT = 256
"""Most messages the sync :meth:`ScanClient.stream` holds for a reader that lags."""
T = TypeVar("T")


class ScanAPIError(Exception):
    """An error the server answered: HTTP ``status``, envelope ``code``, ``message``, ``field``."""

    def __init__(self, status: int, code: int, message: str, field: str | None = None) -> None:
        super().__init__(status, code, message, field)
        self.status, self.code, self.message, self.field = status, code, message, field

    def __str__(self) -> str:
        where = f" (field {self.field!r})" if self.field else ""
        return f"{self.status}: {self.message}{where}"

    @classmethod
    def from_body(cls, status: int, body: bytes | str, reason: str = "") -> ScanAPIError:
        """Build the error from an error answer's body (the JSON envelope, or any text)."""
        try:
            error = json.loads(body)["error"]
            return cls(status, int(error["code"]), str(error["message"]), error.get("field"))
        except (ValueError, KeyError, TypeError):
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return cls(status, status, text.strip() or reason or "error")


class StreamInterrupted(ConnectionError):
    """A stream connection ended before the ``final`` (the client reconnects)."""


_RETRYABLE = (OSError, StreamClosedError, WebSocketClosedError, TimeoutError)


class ScanClient:
    """Client of a technic-panel server's HTTP API; see the module docs.

    Parameters
    ----------
    url
        The server's base URL, e.g. ``http://127.0.0.1:5006`` (with any prefix).
    token
        Bearer token, when the server sets ``TECHNIC_API_TOKEN``.
    timeout
        Seconds for connecting and for each REST call.
    retries
        Reconnects a stream tries in a row without receiving a message before it raises.
    backoff, max_backoff
        Seconds before the first reconnect, doubling per failure up to ``max_backoff``.
    idle_timeout
        Seconds of silence (no message, no heartbeat) after which an SSE connection is
        taken as dead and replaced; WebSocket connections are pinged as often.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10.0,
                 retries: int = 8, backoff: float = 0.1, max_backoff: float = 5.0,
                 idle_timeout: float = 45.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"ScanClient.url must be an http(s) URL, not {url!r}")
        for name, value in (("timeout", timeout), ("idle_timeout", idle_timeout)):
            if not value > 0:
                raise ValueError(f"ScanClient.{name} must be > 0 seconds, not {value!r}")
        if retries < 0 or backoff < 0 or max_backoff < backoff:
            raise ValueError(f"ScanClient needs retries >= 0 and 0 <= backoff <= max_backoff, "
                             f"not {retries!r}, {backoff!r}, {max_backoff!r}")
        self.url, self.token = url.rstrip("/"), token
        self.timeout, self.retries, self.idle_timeout = timeout, retries, idle_timeout
        self.backoff, self.max_backoff = backoff, max_backoff
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"ScanClient({self.url!r}, token={'***' if self.token else None})"

    def __enter__(self) -> ScanClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- async API -------------------------------------------------------------------------

    async def astart(self, config: Mapping[str, Any] | None = None) -> str:
        """Start a scan with ``config`` (ScanConfig settings); return its id."""
        body = await self._call("POST", "/scan/stream", json.dumps(dict(config or {})))
        return body["scan_id"]

    async def astop(self, scan_id: str) -> dict[str, Any]:
        """Stop the scan (idempotent); return its record."""
        return await self._call("POST", f"/scan/stop/{quote(scan_id, safe='')}", "")

    async def astatus(self, scan_id: str, since: int | None = None,
                      limit: int | None = None) -> dict[str, Any]:
        """Return the scan's record plus ``messages`` after ``since`` (``limit`` at most)."""
        query = {name: value for name, value in (("since", since), ("limit", limit))
                 if value is not None}
        return await self._call("GET", f"/scan/stream/{quote(scan_id, safe='')}", None, query)

    async def astream(self, scan_id: str, via: str = "sse",
                      since: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Yield the scan's messages after seq ``since``, once each, in order, to the final.

        ``via`` is ``"sse"`` or ``"ws"``. Reconnects after network errors; raises
        :class:`ScanAPIError` for an error the server answers, or the last network error
        after ``retries`` failed reconnects in a row.
        """
        if via not in ("sse", "ws"):
            raise ValueError(f"ScanClient.stream via must be 'sse' or 'ws', not {via!r}")
        connect = self._sse_messages if via == "sse" else self._ws_messages
        cursor, failures = since, 0
        while True:
            try:
                async with aclosing(connect(scan_id, cursor)) as messages:
                    async for message in messages:
                        seq = message["metadata"]["seq"]
                        if seq <= cursor:
                            continue
                        cursor, failures = seq, 0
                        yield message
                        if message["metadata"]["is_final"]:
                            return
                raise StreamInterrupted(f"the stream of {scan_id} ended at seq {cursor} "
                                        "before its final")
            except _RETRYABLE as exc:
                failures += 1
                if failures > self.retries:
                    raise
                log.info("stream of %s interrupted at seq %d (%s); reconnecting", scan_id,
                         cursor, exc)
            await asyncio.sleep(min(self.max_backoff, self.backoff * 2 ** (failures - 1)))

    # -- sync API --------------------------------------------------------------------------

    def start(self, config: Mapping[str, Any] | None = None) -> str:
        """Start a scan with ``config`` (ScanConfig settings); return its id."""
        return self._run(self.astart(config))

    def stop(self, scan_id: str) -> dict[str, Any]:
        """Stop the scan (idempotent); return its record."""
        return self._run(self.astop(scan_id))

    def status(self, scan_id: str, since: int | None = None,
               limit: int | None = None) -> dict[str, Any]:
        """Return the scan's record plus ``messages`` after ``since`` (``limit`` at most)."""
        return self._run(self.astatus(scan_id, since, limit))

    def stream(self, scan_id: str, via: str = "sse", since: int = 0) -> Iterator[dict[str, Any]]:
        """Iterate over the scan's messages as :meth:`astream` yields them (blocking)."""
        handoff: queue.Queue = queue.Queue()
        credits = asyncio.Semaphore(HANDOFF_LIMIT)
        loop = self._private_loop()
        future = asyncio.run_coroutine_threadsafe(
            self._hand_over(self.astream(scan_id, via, since), handoff, credits), loop)
        try:
            while (item := handoff.get()) is not _DONE:
                if isinstance(item, _Failure):
                    raise item.error
                with contextlib.suppress(RuntimeError):  # closed by close(): no producer left
                    loop.call_soon_threadsafe(credits.release)
                yield item
        finally:
            future.cancel()

    def close(self) -> None:
        """Cancel open streams and end the private loop's thread; safe to call twice."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(_cancel_others(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    # -- internals -------------------------------------------------------------------------

    async def _hand_over(self, messages: AsyncIterator[dict], handoff: queue.Queue,
                         credits: asyncio.Semaphore) -> None:
        """Put the messages into ``handoff`` for the reading thread, then the end (or error)."""
        try:
            async with aclosing(messages):
                async for message in messages:
                    await credits.acquire()
                    handoff.put(message)
        except asyncio.CancelledError:
            handoff.put(_Failure(ConnectionAbortedError("the stream was closed")))
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised in the reading thread
            handoff.put(_Failure(exc))
            return
        handoff.put(_DONE)

    def _private_loop(self) -> asyncio.AbstractEventLoop:
        """Return the private loop, starting its thread on first use."""
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                                name="technic-scan-client")
                self._thread.start()
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._private_loop()).result()

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _address(self, path: str, query: Mapping[str, Any] | None = None,
                 scheme: str | None = None) -> str:
        url = self.url + path + (f"?{urlencode(query)}" if query else "")
        if scheme == "ws":
            url = "ws" + url[len("http"):]
        return url

    async def _call(self, method: str, path: str, body: str | None,
                    query: Mapping[str, Any] | None = None) -> dict[str, Any]:
        request = HTTPRequest(self._address(path, query), method=method, body=body,
                              headers=self._headers(**{"Content-Type": "application/json"}),
                              connect_timeout=self.timeout, request_timeout=self.timeout)
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code >= 400:
            raise ScanAPIError.from_body(response.code, response.body or b"", response.reason)
        return json.loads(response.body)

    async def _sse_messages(self, scan_id: str, since: int) -> AsyncIterator[dict[str, Any]]:
        """Yield the messages of one SSE connection, from seq ``since`` until it ends."""
        url = self._address("/events/results", {"scan_id": scan_id})
        headers = self._headers(**{"Last-Event-ID": str(since)})
        async with open_event_stream(url, headers, self.timeout) as response:
            if response.code != 200:
                body = await response.read_all(self.timeout)
                error = ScanAPIError.from_body(response.code, body, response.reason)
                raise error if response.code < 500 else StreamInterrupted(str(error))
            parser = SSEParser()
            while (chunk := await response.next_chunk(self.idle_timeout)) is not None:
                for event in parser.feed(chunk):
                    yield orjson.loads(event.data)

    async def _ws_messages(self, scan_id: str, since: int) -> AsyncIterator[dict[str, Any]]:
        """Yield the messages of one WebSocket connection, from seq ``since`` until it ends."""
        url = self._address("/ws/results", {"scan_id": scan_id, "since": since}, scheme="ws")
        request = HTTPRequest(url, headers=self._headers(), connect_timeout=self.timeout,
                              request_timeout=self.timeout)
        try:
            connection = await websocket_connect(request, ping_interval=self.idle_timeout / 3)
        except HTTPClientError as exc:
            if exc.response is None or exc.code >= 500:
                raise StreamInterrupted(str(exc)) from exc
            raise ScanAPIError.from_body(exc.code, exc.response.body or b"") from exc
        try:
            while (text := await connection.read_message()) is not None:
                message = orjson.loads(text)
                if "error" in message and "metadata" not in message:
                    error = message["error"]
                    raise ScanAPIError(error["code"], error["code"], error["message"],
                                       error.get("field"))
                yield message
        finally:
            connection.close()


class _Failure:
    """An exception of the private loop, handed over to the reading thread."""

    def __init__(self, error: Exception) -> None:
        self.error = error


_DONE = object()


async def _cancel_others() -> None:
    """Cancel every task of the running loop but this one, and wait for them."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
