"""The Server-Sent Events side of :class:`~technic_panel.client.scan_client.ScanClient`.

:class:`SSEParser` reads events as the EventSource standard does: any line ending,
comments (the server's ``: keep-alive``), multi-line ``data``, and chunks split anywhere,
even inside a UTF-8 character. :func:`open_event_stream` makes one streaming GET over a
:class:`tornado.http1connection.HTTP1Connection` it owns, so leaving the ``async with``
closes the connection at once, and a reader that lags stops the socket being read (TCP
pushes back to the server, whose cursor then waits, bounded, in its log).
"""

from __future__ import annotations

import asyncio
import codecs
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import NamedTuple
from urllib.parse import urlsplit

from tornado import httputil
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.tcpclient import TCPClient

_LINE_END = re.compile(r"\r\n|\r|\n")
_HIGH_WATER, _LOW_WATER = 32, 8
_UNLIMITED_BODY = 2**62


class Event(NamedTuple):
    """One dispatched event: its ``id`` (last one set, or None), ``event`` type and ``data``."""

    id: str | None
    event: str
    data: str


class SSEParser:
    r"""Turn the bytes of an event stream into :class:`Event` s; one parser per connection.

    Not thread-safe: feed it from one thread (the loop reading the connection).

    >>> SSEParser().feed(b"retry: 10\n\nid: 1\nevent: result\ndata: {}\n\n: ping\n\n")
    [Event(id='1', event='result', data='{}')]
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._pending = ""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self.retry: int | None = None
        """The last ``retry:`` hint, in ms."""
        self.comments = 0
        """How many comment lines (heartbeats) were read."""

    def feed(self, chunk: bytes) -> list[Event]:
        """Return the events that ``chunk`` completes."""
        text = self._pending + self._decoder.decode(chunk)
        hold = text.endswith("\r")  # may be the first half of "\r\n"
        *lines, self._pending = _LINE_END.split(text[:-1] if hold else text)
        if hold:
            self._pending += "\r"
        events = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, event = self._data, self._event or "message"
        self._data, self._event = [], ""
        return Event(self._id, event, "\n".join(data)) if data else None


class EventStreamResponse(httputil.HTTPMessageDelegate):
    """One streaming response: the status, then the body chunk by chunk (``None`` at the end).

    Tornado's connection calls the delegate methods; the reader awaits :meth:`next_chunk`.
    Not thread-safe: use it on the event loop of its connection only.
    """

    def __init__(self) -> None:
        self.code = 0
        self.reason = ""
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._headers = asyncio.Event()
        self._room: asyncio.Future | None = None
        self._ended = False

    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> None:
        """Take the status (tornado calls this)."""
        if isinstance(start_line, httputil.ResponseStartLine):
            self.code, self.reason = start_line.code, start_line.reason
        self._headers.set()

    def data_received(self, chunk: bytes) -> asyncio.Future | None:
        """Queue a chunk; past the high-water mark, make the connection wait for the reader."""
        self._chunks.put_nowait(chunk)
        if self._chunks.qsize() >= _HIGH_WATER:
            self._room = asyncio.get_running_loop().create_future()
            return self._room
        return None

    def finish(self) -> None:
        """Mark the end of the body (tornado calls this)."""
        self._end()

    def on_connection_close(self) -> None:
        """Mark the end of an interrupted body (tornado calls this)."""
        self._end()

    def _end(self) -> None:
        self._headers.set()
        self._chunks.put_nowait(None)

    async def wait_headers(self, timeout: float) -> None:
        """Wait for the status line; raise ConnectionResetError if the connection ended first."""
        async with asyncio.timeout(timeout):
            await self._headers.wait()
        if not self.code:
            raise ConnectionResetError("the connection closed before the response began")

    async def next_chunk(self, timeout: float | None) -> bytes | None:
        """Return the next chunk of the body, or None at its end; TimeoutError when silent."""
        if self._ended:
            return None
        async with asyncio.timeout(timeout):
            chunk = await self._chunks.get()
        self._ended = chunk is None
        if self._room is not None and self._chunks.qsize() <= _LOW_WATER:
            if not self._room.done():
                self._room.set_result(None)
            self._room = None
        return chunk

    async def read_all(self, timeout: float) -> bytes:
        """Return the rest of the body (for a short error answer)."""
        parts = []
        while (chunk := await self.next_chunk(timeout)) is not None:
            parts.append(chunk)
        return b"".join(parts)


@asynccontextmanager
async def open_event_stream(url: str, headers: Mapping[str, str],
                            timeout: float) -> AsyncIterator[EventStreamResponse]:
    """Send ``GET url`` on a new connection and yield its response once the status is in.

    The connection closes when the block is left. Raises ``OSError`` (e.g.
    ``ConnectionRefusedError``) or ``TimeoutError`` when no response begins in ``timeout``.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    stream = await TCPClient().connect(
        parts.hostname, parts.port or (443 if secure else 80), timeout=timeout,
        ssl_options=ssl.create_default_context() if secure else None)
    reading: asyncio.Future | None = None
    try:
        connection = HTTP1Connection(stream, True, HTTP1ConnectionParameters(
            no_keep_alive=True, max_body_size=_UNLIMITED_BODY, decompress=False))
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.write_headers(
            httputil.RequestStartLine("GET", target or "/", "HTTP/1.1"),
            httputil.HTTPHeaders({"Host": parts.netloc, "Accept": "text/event-stream",
                                  "Cache-Control": "no-cache", "Connection": "close",
                                  **headers}))
        connection.finish()
        response = EventStreamResponse()
        reading = asyncio.ensure_future(connection.read_response(response))
        # tornado tells the delegate nothing if the connection ends before the headers
        reading.add_done_callback(lambda _: response.on_connection_close())
        await response.wait_headers(timeout)
        yield response
    finally:
        stream.close()
        if reading is not None:
            await asyncio.gather(reading, return_exceptions=True)
