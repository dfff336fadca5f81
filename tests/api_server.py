"""Test helpers: a real API server on loopback and a connection-cutting proxy.

``APIServer`` runs :func:`technic_panel.api.rest.make_app` in a background thread with its own
event loop, listening on 127.0.0.1 at a port the OS picks. ``CuttingProxy`` forwards
loopback connections to it and closes each one after a byte budget, to force a
disconnect at a chosen (random) point of a stream.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from technic_panel.api.rest import make_app
from technic_panel.streaming.manager import StreamManager


class _LoopThread:
    """Run ``serve(ready)`` on a fresh event loop in a thread until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(ready),),
                                        name=self._name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self._name} did not start")

    async def _main(self, ready: threading.Event) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        await self.open()
        ready.set()
        await self._stopping.wait()
        await self.shut()

    def stop(self) -> None:
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)
            self._thread = None

    async def open(self) -> None:
        raise NotImplementedError

    async def shut(self) -> None:
        raise NotImplementedError


class APIServer(_LoopThread):
    """``make_app(manager, token, **options)`` (or ``app``) served on 127.0.0.1 in a thread.

    Shuts the manager down when it stops (a passed ``app`` keeps its own).
    """

    def __init__(self, manager: StreamManager | None = None, token: str | None = None, *,
                 app=None, **options) -> None:
        super().__init__("api-server")
        self.manager = manager if manager is not None or app else StreamManager(max_concurrent=8)
        self.app = app if app is not None else make_app(self.manager, token, **options)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def open(self) -> None:
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self._server = HTTPServer(self.app)
        self._server.add_sockets(sockets)

    async def shut(self) -> None:
        self._server.stop()
        await self._server.close_all_connections()

    def stop(self) -> None:
        super().stop()
        if self.manager is not None:
            self.manager.shutdown()

    def __enter__(self) -> APIServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class CuttingProxy(_LoopThread):
    """Forward loopback connections to ``port``; cut each after ``budget()`` bytes back.

    ``budget`` returns the bytes a new connection may carry from the server to the client
    before both sides are closed, or None for no limit. ``connections``, ``cuts`` and
    ``carried`` (bytes from server to client) count.
    """

    def __init__(self, port: int, budget: Callable[[], int | None]) -> None:
        super().__init__("cutting-proxy")
        self.target, self.budget = port, budget
        self.port = self.connections = self.cuts = self.carried = 0
        self._relays: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def shut(self) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _relay(self, client_reader, client_writer) -> None:
        self.connections += 1
        self._relays.add(asyncio.current_task())
        budget = self.budget()
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1",
                                                                         self.target)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, server_writer}
        pipes = [asyncio.ensure_future(self._pipe(client_reader, server_writer, None, False)),
                 asyncio.ensure_future(self._pipe(server_reader, client_writer, budget, True))]
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for writer in (client_writer, server_writer):
            writer.close()
        await asyncio.gather(*pipes, return_exceptions=True)
        self._writers -= {client_writer, server_writer}
        self._relays.discard(asyncio.current_task())

    async def _pipe(self, reader, writer, budget: int | None, downstream: bool) -> None:
        sent = 0
        while data := await reader.read(65536):
            if budget is not None and sent + len(data) >= budget:
                data = data[: budget - sent]
                self.cuts += 1
            writer.write(data)
            await writer.drain()
            sent += len(data)
            self.carried += len(data) if downstream else 0
            if budget is not None and sent >= budget:
                return


def parse_sse(text: str) -> list[dict[str, str]]:
    """Split an event stream's text into events: dicts of their fields (comments dropped)."""
    events = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if fields:
            events.append(fields)
    return events


async def ws_session(url: str, send: tuple = (), headers: dict | None = None,
                     until: Callable[[list], bool] = lambda frames: False):
    """Connect, send ``send`` (JSON), read frames until closed or ``until(frames)``.

    Returns the decoded frames and the close code (None if the test closed first).
    """
    import json

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    connection = await websocket_connect(HTTPRequest(url, headers=headers or {}))
    for message in send:
        await connection.write_message(message if isinstance(message, str)
                                       else json.dumps(message))
    frames: list = []
    while not until(frames) and (text := await connection.read_message()) is not None:
        frames.append(json.loads(text))
    code = connection.close_code
    connection.close()
    return frames, code
