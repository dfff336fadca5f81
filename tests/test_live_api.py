"""A live scan over the API: late joins and 200 random disconnects lose and repeat nothing.

A real server on loopback (``APIServer``) runs a live scan whose stream keeps a small window,
so reconnects land inside it, behind it, and in the middle of a compacted read. Each client
resumes from the last seq it received (``Last-Event-ID`` over SSE, ``since`` over WebSocket);
at the end its messages must have strictly rising seqs (nothing twice) and fold into the
rows the scan holds (nothing lost), each symbol's first message a ``result``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random

import pytest
import requests
from api_server import APIServer
from helpers import fold_rows, seqs, wait_until
from tornado.websocket import websocket_connect

from technic_panel.policy import ServerPolicy
from technic_panel.streaming.manager import StreamManager

LIVE = {"symbols": 40, "live": True, "bar_interval": 0.1, "alert_cooldown": 1.0}


@pytest.fixture
def server(no_thread_leaks):
    with APIServer(StreamManager(max_retained=400), policy=ServerPolicy()) as running:
        yield running


def start(server) -> str:
    answer = requests.post(f"{server.url}/scan/stream", json=LIVE, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()["scan_id"]


def sse_read(server, scan_id: str, since: int, count: int | None) -> list[dict]:
    """Read up to ``count`` messages over SSE after ``since`` (None: to the end), then hang up."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", f"/events/results?scan_id={scan_id}",
                       headers={"Last-Event-ID": str(since)})
    response = connection.getresponse()
    assert response.status == 200
    messages, data = [], None
    while count is None or len(messages) < count:
        line = response.readline().decode()
        if not line:
            break
        line = line.rstrip("\n")
        if line.startswith("data: "):
            data = line[len("data: "):]
        elif line == "" and data is not None:
            messages.append(json.loads(data))
            data = None
    connection.close()
    return messages


def ws_read(server, scan_id: str, since: int, count: int | None) -> list[dict]:
    """Read up to ``count`` messages over WebSocket after ``since``, then close."""
    async def session() -> list[dict]:
        url = f"ws://127.0.0.1:{server.port}/ws/results?scan_id={scan_id}&since={since}"
        connection = await websocket_connect(url)
        messages: list[dict] = []
        while count is None or len(messages) < count:
            text = await connection.read_message()
            if text is None:
                break
            messages.append(json.loads(text))
        connection.close()
        return messages

    return asyncio.run(session())






def held_rows(server, scan_id: str) -> dict[str, dict]:
    """The rows the finished scan holds: a full read from seq 0, compacted."""
    streamer = server.manager.get(scan_id).streamer
    return fold_rows(streamer.messages_since(0))


def test_a_late_joiner_gets_one_result_per_symbol_then_the_tail(server):
    scan_id = start(server)
    streamer = server.manager.get(scan_id).streamer
    wait_until(lambda: streamer.first_retained_seq > 2000, timeout=60)
    first = streamer.first_retained_seq
    late = sse_read(server, scan_id, 0, 200)
    head = [msg for msg in late if msg["metadata"]["seq"] < first]
    assert [msg["type"] for msg in head] == ["result"] * 40
    assert len({msg["data"]["symbol"] for msg in head}) == 40
    assert all(msg["metadata"]["compacted"] for msg in head)
    assert seqs(late) == sorted(set(seqs(late))) and len(late) == 200
    requests.post(f"{server.url}/scan/stop/{scan_id}", timeout=10)
    rest = ws_read(server, scan_id, late[-1]["metadata"]["seq"], None)
    assert rest[-1]["type"] == "final"
    assert fold_rows(late + rest) == held_rows(server, scan_id)


def test_200_random_disconnects_over_sse_and_websocket_lose_and_repeat_nothing(server):
    rng = random.Random(14)
    scan_id = start(server)
    streamer = server.manager.get(scan_id).streamer
    clients = {"sse": [], "ws": []}
    for trial in range(200):
        away = trial % 10 == 9  # a client away long enough to fall behind the window
        kind = ("sse", "ws")[trial // 10 % 2] if away else rng.choice(["sse", "ws"])
        if trial in (100, 150):  # a client that starts over joins late: rows, then the tail
            kind = "sse" if trial == 100 else "ws"
            clients[kind] = []
        got = clients[kind]
        since = got[-1]["metadata"]["seq"] if got else 0
        if away:
            wait_until(lambda since=since: streamer.first_retained_seq > since + 1, timeout=30)
        read = sse_read if kind == "sse" else ws_read
        got.extend(read(server, scan_id, since, rng.randint(1, 250)))
    requests.post(f"{server.url}/scan/stop/{scan_id}", timeout=10)
    expected = None
    for kind, got in clients.items():
        read = sse_read if kind == "sse" else ws_read
        got.extend(read(server, scan_id, got[-1]["metadata"]["seq"] if got else 0, None))
        assert got[-1]["type"] == "final" and seqs(got).count(got[-1]["metadata"]["seq"]) == 1
        assert seqs(got) == sorted(set(seqs(got))), f"{kind}: a message came twice"
        expected = expected or held_rows(server, scan_id)
        assert fold_rows(got) == expected, f"{kind}: a row was lost"
        compacted = [msg["type"] for msg in got if msg["metadata"].get("compacted")]
        assert "result" in compacted and "update" in compacted, \
            f"{kind}: no read was compacted both ways; the test would prove less"
