"""The stream handlers set TCP_NODELAY on the sockets they accept (a refactor must not drop it).

Without it, Nagle's algorithm meets the client's delayed ACK and holds a small write up to
40 ms: a p99 of 35 ms at one stream. The option is read on the server's side of a real
loopback connection, found among the process's sockets by its peer address.
"""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest
import requests
from api_server import APIServer
from helpers import wait_until
from tornado.websocket import websocket_connect

from technic_panel.policy import ServerPolicy
from technic_panel.streaming.manager import StreamManager

SLOW = {"symbols": 400, "latency_ms": 50, "workers": 1}


@pytest.fixture(scope="module")
def server():
    with APIServer(StreamManager(), policy=ServerPolicy()) as running:
        yield running


def server_side_nodelay(client_address: tuple[str, int]) -> int:
    """Return TCP_NODELAY of the server's socket whose peer is ``client_address``."""
    for candidate in gc.get_objects():
        if isinstance(candidate, socket.socket) and candidate.fileno() >= 0:
            try:
                peer = candidate.getpeername()
            except OSError:
                continue
            if peer == client_address:
                return candidate.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    raise AssertionError(f"no server socket has the peer {client_address}")


def start(server) -> str:
    return requests.post(f"{server.url}/scan/stream", json=SLOW, timeout=10).json()["scan_id"]


def test_the_sse_stream_sets_tcp_nodelay(server):
    scan_id = start(server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        client.sendall(f"GET /events/results?scan_id={scan_id} HTTP/1.1\r\n"
                       "Host: 127.0.0.1\r\n\r\n".encode())
        assert client.recv(200).startswith(b"HTTP/1.1 200")
        assert server_side_nodelay(client.getsockname()) == 1
    requests.post(f"{server.url}/scan/stop/{scan_id}", timeout=10)


def test_an_idle_connection_has_nagle_on_so_these_tests_can_fail(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        address = client.getsockname()
        wait_until(lambda: _accepted(address))
        assert server_side_nodelay(address) == 0


def _accepted(address: tuple[str, int]) -> bool:
    try:
        server_side_nodelay(address)
    except AssertionError:
        return False
    return True


def test_the_websocket_stream_sets_tcp_nodelay(server):
    scan_id = start(server)

    async def session() -> int:
        url = f"ws://127.0.0.1:{server.port}/ws/results?scan_id={scan_id}"
        connection = await websocket_connect(url)
        await connection.read_message()
        local = connection.protocol.stream.socket.getsockname()
        nodelay = await asyncio.to_thread(server_side_nodelay, local)
        connection.close()
        return nodelay

    assert asyncio.run(session()) == 1
    requests.post(f"{server.url}/scan/stop/{scan_id}", timeout=10)
