"""Tests of ScanClient and the delivery guarantees, against a real server on loopback."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest
import requests
from api_server import APIServer, CuttingProxy
from helpers import free_port, wait_until

from technic_panel.client.scan_client import ScanAPIError, ScanClient
from technic_panel.client.sse import Event, SSEParser
from technic_panel.streaming.manager import StreamManager

SMALL = {"symbols": 150, "seed": 7}
SLOW = {"symbols": 3000, "latency_ms": 100, "workers": 1}


@pytest.fixture(scope="module")
def server():
    with APIServer(StreamManager(max_concurrent=8)) as running:
        yield running


@pytest.fixture
def client(server):
    with ScanClient(server.url, backoff=0.005) as scan_client:
        yield scan_client


def seqs(messages: list[dict]) -> list[int]:
    return [message["metadata"]["seq"] for message in messages]


def reference(server, scan_id: str) -> list[dict]:
    """Every message of the scan from its log, once it has ended."""
    wait_until(lambda: not server.manager.get(scan_id).running, timeout=30)
    return server.manager.get(scan_id).streamer.messages_since(0)


def assert_complete(messages: list[dict], expected: list[dict]) -> None:
    assert seqs(messages) == list(range(1, len(expected) + 1))
    assert messages == expected
    assert [m["type"] for m in messages].count("final") == 1
    assert messages[-1]["type"] == "final"


async def collect(client: ScanClient, scan_id: str, via: str, since: int = 0) -> list[dict]:
    return [message async for message in client.astream(scan_id, via=via, since=since)]


# -- SSEParser -------------------------------------------------------------------------------

STREAM = ("retry: 2000\n\n: hello\n\nid: 1\nevent: result\ndata: {\"a\": \"é€\"}\n\n"
          "id: 2\r\nevent: final\r\ndata: line one\r\ndata: line two\r\n\r\n"
          "data: no id\rdata: or type\r\r: bye\n").encode()
EVENTS = [Event("1", "result", '{"a": "é€"}'), Event("2", "final", "line one\nline two"),
          Event("2", "message", "no id\nor type")]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_sse_parser_reads_events_however_the_bytes_are_split(size):
    parser = SSEParser()
    events = [event for start in range(0, len(STREAM), size)
              for event in parser.feed(STREAM[start:start + size])]
    assert events == EVENTS
    assert parser.retry == 2000 and parser.comments == 2


def test_sse_parser_ignores_unknown_fields_and_bad_retry():
    parser = SSEParser()
    assert parser.feed(b"foo: bar\nretry: soon\nid: a\0b\ndata\n\n") == [Event(None, "message",
                                                                                "")]
    assert parser.retry is None


# -- REST through the client -----------------------------------------------------------------

def test_start_status_stop_and_stream(server, client):
    scan_id = client.start(SMALL)
    messages = list(client.stream(scan_id))
    expected = reference(server, scan_id)
    assert_complete(messages, expected)
    status = client.status(scan_id, since=10, limit=5)
    assert seqs(status["messages"]) == [11, 12, 13, 14, 15] and status["next_since"] == 15
    assert status["status"] == "completed" and status["has_more"]
    assert client.stop(scan_id)["status"] == "completed"
    assert list(client.stream(scan_id, via="ws", since=len(expected) - 2)) == expected[-2:]


def test_server_errors_raise_scan_api_error(server, client):
    with pytest.raises(ScanAPIError) as raised:
        client.start({"symbols": 0})
    assert (raised.value.status, raised.value.code, raised.value.field) == (400, 400, "symbols")
    assert "symbols" in str(raised.value)
    for call in (lambda: client.status("scan_nope"), lambda: client.stop("scan_nope"),
                 lambda: list(client.stream("scan_nope")),
                 lambda: list(client.stream("scan_nope", via="ws"))):
        with pytest.raises(ScanAPIError) as raised:
            call()
        assert raised.value.status == 404 and raised.value.field == "scan_id"
    with pytest.raises(ScanAPIError) as raised:
        client.status(client.start(SMALL), since=10**6)
    assert raised.value.field == "since"


def test_a_token_is_sent_and_a_missing_one_is_a_401():
    with APIServer(token="s3cret") as api:
        with ScanClient(api.url) as anonymous, pytest.raises(ScanAPIError) as raised:
            anonymous.start(SMALL)
        assert raised.value.status == 401
        with ScanClient(api.url, token="s3cret") as client:
            scan_id = client.start(SMALL)
            assert list(client.stream(scan_id))[-1]["type"] == "final"
            assert list(client.stream(scan_id, via="ws"))[-1]["type"] == "final"


def test_errors_without_an_envelope_and_the_repr():
    error = ScanAPIError.from_body(502, b"<html>Bad Gateway</html>", "Bad Gateway")
    assert (error.status, error.code, error.field) == (502, 502, None)
    assert str(error) == "502: <html>Bad Gateway</html>"
    assert ScanAPIError.from_body(503, b"", "Unavailable").message == "Unavailable"
    assert "s3cret" not in repr(ScanClient("http://127.0.0.1:1", token="s3cret"))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="url"):
        ScanClient("ftp://example")
    with pytest.raises(ValueError, match="timeout"):
        ScanClient("http://127.0.0.1:1", timeout=0)
    with pytest.raises(ValueError, match="backoff"):
        ScanClient("http://127.0.0.1:1", backoff=2, max_backoff=1)
    with ScanClient("http://127.0.0.1:1") as client, pytest.raises(ValueError, match="via"):
        list(client.stream("scan_x", via="pigeon"))


def test_the_sync_api_works_inside_a_running_event_loop(server, client):
    async def notebook_cell():
        scan_id = client.start(SMALL)
        return list(client.stream(scan_id, via="ws"))

    assert asyncio.run(notebook_cell())[-1]["type"] == "final"


# -- delivery guarantees ---------------------------------------------------------------------

def test_sse_and_websocket_deliver_identical_sequences(server, client):
    scan_id = client.start(SMALL)

    async def both():
        return await asyncio.gather(collect(client, scan_id, "sse"),
                                    collect(client, scan_id, "ws"))

    over_sse, over_ws = asyncio.run(both())
    assert over_sse == over_ws
    assert_complete(over_sse, reference(server, scan_id))


def carried_bytes(server, scan_id: str, via: str) -> int:
    """Bytes a whole stream of the scan takes from server to client."""
    proxy = CuttingProxy(server.port, lambda: None)
    proxy.start()
    try:
        with ScanClient(proxy.url) as client:
            list(client.stream(scan_id, via=via))
    finally:
        proxy.stop()
    return proxy.carried


async def cut_trial(server, scan_id: str, via: str, budget: int) -> tuple[list[dict], int]:
    """Stream through a proxy that cuts the first connection after ``budget`` bytes."""
    budgets = iter([budget])
    proxy = CuttingProxy(server.port, lambda: next(budgets, None))
    proxy.start()
    try:
        client = ScanClient(proxy.url, backoff=0.005, retries=20)
        messages = await collect(client, scan_id, via)
    finally:
        proxy.stop()
    return messages, proxy.cuts


def test_resume_after_a_forced_disconnect_at_a_random_point_200_trials(server, client):
    rng = random.Random(20261128)
    sizes = {}
    probe = client.start(SMALL)
    for via in ("sse", "ws"):
        sizes[via] = carried_bytes(server, probe, via)

    async def scan_with_four_trials(seed: int) -> None:
        scan_id = await client.astart({**SMALL, "seed": seed})
        vias = ["sse", "sse", "ws", "ws"]
        outcomes = await asyncio.gather(*(
            cut_trial(server, scan_id, via, rng.randrange(int(0.9 * sizes[via])))
            for via in vias))
        expected = reference(server, scan_id)
        for messages, cuts in outcomes:
            assert cuts >= 1
            assert_complete(messages, expected)

    async def trials():
        for seed in range(50):
            await scan_with_four_trials(seed)

    asyncio.run(trials())


def test_200_concurrent_streams_on_one_scan_all_complete(server, client):
    async def crowd():
        scan_id = await client.astart({"symbols": 300, "seed": 11})
        streams = [collect(client, scan_id, "sse" if k % 2 else "ws") for k in range(200)]
        return scan_id, await asyncio.gather(*streams)

    scan_id, results = asyncio.run(crowd())
    expected = reference(server, scan_id)
    for messages in results:
        assert_complete(messages, expected)


def test_stop_over_rest_ends_every_open_stream_with_one_final(server, client):
    async def stop_while_streaming():
        scan_id = await client.astart(SLOW)
        seen = [asyncio.Event() for _ in range(20)]

        async def watch(k: int) -> list[dict]:
            messages = []
            async for message in client.astream(scan_id, via="sse" if k % 2 else "ws"):
                messages.append(message)
                seen[k].set()
            return messages

        watchers = [asyncio.ensure_future(watch(k)) for k in range(20)]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in seen)), 30)
        record = await client.astop(scan_id)
        assert record["scan_id"] == scan_id
        return scan_id, await asyncio.wait_for(asyncio.gather(*watchers), 30)

    scan_id, results = asyncio.run(stop_while_streaming())
    expected = reference(server, scan_id)
    assert expected[-1]["data"]["status"] == "stopped"
    for messages in results:
        assert_complete(messages, expected)


def test_connections_cut_before_the_response_are_retried(server, client):
    scan_id = client.start(SMALL)
    expected = reference(server, scan_id)
    for via in ("sse", "ws"):
        budgets = iter([0, 5, 60])
        proxy = CuttingProxy(server.port, lambda budgets=budgets: next(budgets, None))
        proxy.start()
        try:
            with ScanClient(proxy.url, backoff=0.001) as cut:
                assert_complete(list(cut.stream(scan_id, via=via)), expected)
        finally:
            proxy.stop()
        assert proxy.connections == 4


def test_a_slow_reader_receives_everything(server, client):
    scan_id = client.start({"symbols": 400, "seed": 2})

    async def dawdle(via: str) -> list[dict]:
        messages = []
        async for message in client.astream(scan_id, via=via):
            messages.append(message)
            await asyncio.sleep(0.001)
        return messages

    async def both():
        return await asyncio.gather(dawdle("sse"), dawdle("ws"))

    for messages in asyncio.run(both()):
        assert_complete(messages, reference(server, scan_id))


def test_a_reader_behind_the_window_resumes_after_the_gap_notice():
    with APIServer(StreamManager(max_retained=20)) as api, \
            ScanClient(api.url, backoff=0.005) as client:
        scan_id = client.start(SMALL)
        wait_until(lambda: not api.manager.get(scan_id).running, timeout=30)
        for via in ("sse", "ws"):
            messages = list(client.stream(scan_id, via=via))
            notice, rest = messages[0], messages[1:]
            assert notice["data"]["code"] == "behind_window"
            assert seqs(rest) == list(range(notice["data"]["resume_from"],
                                            api.manager.get(scan_id).streamer.last_seq + 1))
            assert rest[-1]["type"] == "final"


def test_breaking_off_a_stream_closes_its_connection(server, client):
    scan_id = client.start(SLOW)
    streamer = server.manager.get(scan_id).streamer
    for via in ("sse", "ws"):
        stream = client.stream(scan_id, via=via)
        next(stream)
        assert streamer.subscriber_count == 1
        stream.close()
        wait_until(lambda: streamer.subscriber_count == 0)
    client.stop(scan_id)


def quiet_stream(heartbeat: float, idle_timeout: float) -> tuple[list[dict], int]:
    """Stream a scan through a proxy, pause it for a second, stop it; return what came."""
    with APIServer(heartbeat=heartbeat) as api:
        proxy = CuttingProxy(api.port, lambda: None)
        proxy.start()
        try:
            with ScanClient(proxy.url, idle_timeout=idle_timeout, backoff=0.005) as client:
                scan_id = api.manager.start_stream(SLOW)
                stream = client.stream(scan_id)
                messages = [next(stream)]
                api.manager.pause_stream(scan_id)
                threading.Timer(1.0, api.manager.stop_stream, args=(scan_id,)).start()
                messages += stream
        finally:
            proxy.stop()
    return messages, proxy.connections


def test_heartbeats_keep_a_quiet_stream_alive():
    messages, connections = quiet_stream(heartbeat=0.05, idle_timeout=0.3)
    assert seqs(messages) == list(range(1, len(messages) + 1))
    assert messages[-1]["data"]["status"] == "stopped" and connections == 1


def test_a_silent_connection_is_replaced_after_the_idle_timeout():
    messages, connections = quiet_stream(heartbeat=30, idle_timeout=0.3)
    assert seqs(messages) == list(range(1, len(messages) + 1))
    assert messages[-1]["type"] == "final" and connections >= 2


def test_a_dead_server_raises_after_the_retries():
    port = free_port()
    with ScanClient(f"http://127.0.0.1:{port}", retries=2, backoff=0.001) as client:
        for via in ("sse", "ws"):
            with pytest.raises(OSError):
                list(client.stream("scan_x", via=via))
        with pytest.raises(OSError):
            client.start(SMALL)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=1)


def test_closing_the_client_ends_a_stream_read_in_another_thread(server):
    client = ScanClient(server.url)
    scan_id = client.start(SLOW)
    stream = client.stream(scan_id)
    next(stream)
    failures = []

    def read_on() -> None:
        try:
            list(stream)
        except ConnectionAbortedError as exc:
            failures.append(exc)

    reader = threading.Thread(target=read_on)
    reader.start()
    client.close()
    reader.join(10)
    server.manager.stop_stream(scan_id)
    assert len(failures) == 1 and not reader.is_alive()
