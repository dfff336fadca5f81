"""The fan-out: one task serves every caught-up stream of a scan, and delivery stays exact.

Unit tests drive :class:`~technic_panel.api.fanout.FanOut` with a real ``ResultStreamer`` on
an event loop, through readers that run the handlers' own loop, :func:`stream` (read by
itself, join the fan-out once caught up, await the handed-back write, read on). The last test runs
SSE and WebSocket clients against the real server.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest
from api_server import APIServer
from helpers import seqs, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.web import Application

from technic_panel.api.base import APIOptions
from technic_panel.api.fanout import FanOut, Member, stream
from technic_panel.api.rest import routes
from technic_panel.client.scan_client import ScanClient
from technic_panel.policy import ServerPolicy
from technic_panel.streaming.manager import StreamManager
from technic_panel.streaming.streamer import ResultStreamer

SCAN = "scan_f"


def result(index: int) -> dict:
    return {"symbol": f"S{index}", "signal": "BUY", "tech_rating": 50.0, "alpha_score": 0.5,
            "priority_tier": "medium"}


class Reader:
    """A stream as the handlers run it (:func:`stream`), writing into ``received``.

    A write completes after ``delay`` seconds (``None``: at once, ``0.0``: on the next loop
    turn).
    """

    def __init__(self, streamer: ResultStreamer, registry: dict, delay: float | None = None,
                 heartbeat: float | None = None) -> None:
        self.subscription = streamer.subscribe()
        self.registry, self.delay, self.heartbeat = registry, delay, heartbeat
        self.received: list[dict] = []
        self.keep_alives = 0

    def write(self, batch: list[dict]) -> asyncio.Future:
        self.received.extend(batch)
        done = asyncio.get_running_loop().create_future()
        if self.delay is None:
            done.set_result(None)
        elif self.delay == 0.0:  # on the next loop turn, like a Tornado WebSocket write
            asyncio.get_running_loop().call_soon(done.set_result, None)
        else:
            asyncio.get_running_loop().call_later(self.delay, done.set_result, None)
        return done

    def keep_alive(self) -> None:
        self.keep_alives += 1

    async def run(self) -> None:
        member = Member(self.subscription, self.write, self.keep_alive)
        await stream(member, self.registry, SCAN, self.heartbeat, settle)


async def settle(pending: asyncio.Future) -> bool:
    await pending
    return True


@pytest.fixture
def joins(monkeypatch) -> Counter:
    """How many times each subscription was served by a fan-out."""
    counts: Counter = Counter()
    serve = FanOut.serve

    async def counted(fan: FanOut, member: Member) -> None:
        counts[member.subscription] += 1
        await serve(fan, member)

    monkeypatch.setattr(FanOut, "serve", counted)
    return counts


def produce(streamer: ResultStreamer, bursts: list[int]) -> threading.Thread:
    """Add ``bursts`` of results from a scan thread, a millisecond apart, then the final."""
    def run() -> None:
        index = 0
        for size in bursts:
            with streamer.holding():
                for _ in range(size):
                    streamer.add_result(result(index))
                    index += 1
            threading.Event().wait(0.001)
        streamer.finish({"status": "completed"})

    return threading.Thread(target=run)


async def read_all(streamer: ResultStreamer, readers: list[Reader], bursts: list[int]) -> None:
    tasks = [asyncio.ensure_future(reader.run()) for reader in readers]
    await asyncio.sleep(0.01)
    producer = produce(streamer, bursts)
    producer.start()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    producer.join()


@settings(max_examples=25, deadline=None)
@given(delays=st.lists(st.sampled_from([None, None, 0.0, 0.002]), min_size=1, max_size=6),
       bursts=st.lists(st.integers(1, 700), min_size=1, max_size=8))
def test_every_reader_gets_every_message_once_in_order_slow_or_not(delays, bursts):
    streamer = ResultStreamer(SCAN, flush_interval=0.001)
    registry: dict = {}
    readers = [Reader(streamer, registry, delay) for delay in delays]
    asyncio.run(read_all(streamer, readers, bursts))
    total = sum(bursts) + 1
    for reader in readers:
        assert seqs(reader.received) == list(range(1, total + 1))
    assert registry == {} and streamer.subscriber_count == 0


def test_caught_up_readers_are_served_by_the_fan_out_and_a_slow_one_is_handed_back(joins):
    streamer = ResultStreamer(SCAN, flush_interval=0.0)
    registry: dict = {}
    fast = [Reader(streamer, registry) for _ in range(5)]
    slow = Reader(streamer, registry)

    async def scenario() -> None:
        tasks = [asyncio.ensure_future(reader.run()) for reader in [*fast, slow]]
        streamer.add_result(result(0))
        await asyncio.sleep(0.02)
        assert len(registry[SCAN]._members) == 6  # all caught up, one task serves them
        assert streamer.subscriber_count == 6  # the doorbell is not a client
        slow.delay = 0.05  # its client stops taking writes at once
        streamer.add_result(result(1))
        await asyncio.sleep(0.01)
        streamer.add_result(result(2))  # the slow write is not done: it is handed back
        await asyncio.sleep(0.01)
        assert all(seqs(reader.received) == [1, 2, 3] for reader in fast)
        assert slow not in registry[SCAN]._members and seqs(slow.received) == [1, 2]
        streamer.finish({"status": "completed"})
        await asyncio.wait_for(asyncio.gather(*tasks), 5)

    asyncio.run(scenario())
    assert all(seqs(reader.received) == [1, 2, 3, 4] for reader in [*fast, slow])
    assert all(joins[reader.subscription] == 1 for reader in fast)  # never handed back
    assert registry == {} and streamer.subscriber_count == 0


def test_a_reader_joining_gets_at_once_what_was_published_while_it_caught_up():
    streamer = ResultStreamer(SCAN, flush_interval=0.0)
    registry: dict = {}
    first, late = Reader(streamer, registry), Reader(streamer, registry, delay=0.03)

    async def scenario() -> None:
        tasks = [asyncio.ensure_future(reader.run()) for reader in (first, late)]
        streamer.add_result(result(0))
        await asyncio.sleep(0.01)  # first has joined; late still writes seq 1
        streamer.add_result(result(1))  # the fan-out rings for first only
        await asyncio.sleep(0.01)
        late.delay = None
        await asyncio.sleep(0.04)  # late has joined; nothing was published since
        assert seqs(first.received) == seqs(late.received) == [1, 2]
        streamer.finish({"status": "completed"})
        await asyncio.wait_for(asyncio.gather(*tasks), 5)

    asyncio.run(scenario())


def test_writes_that_complete_on_the_next_loop_turn_keep_their_readers_in_the_fan_out(joins):
    """Tornado's WebSocket writes complete a loop turn later: back-to-back publishes must
    not hand every such reader back (that doubled the loop's work at 200 streams)."""
    streamer = ResultStreamer(SCAN, flush_interval=0.0)
    registry: dict = {}
    readers = [Reader(streamer, registry, delay=0.0) for _ in range(4)]
    first_write = readers[0].write

    def publish_during_the_round(batch: list[dict]) -> asyncio.Future:
        if seqs(batch) == [2]:
            streamer.add_result(result(2))  # published while the fan-out writes seq 2
        return first_write(batch)

    readers[0].write = publish_during_the_round

    async def scenario() -> None:
        tasks = [asyncio.ensure_future(reader.run()) for reader in readers]
        streamer.add_result(result(0))
        await asyncio.sleep(0.02)
        streamer.add_result(result(1))
        await asyncio.sleep(0.02)
        assert all(seqs(reader.received) == [1, 2, 3] for reader in readers)
        assert len(registry[SCAN]._members) == 4
        streamer.finish({"status": "completed"})
        await asyncio.wait_for(asyncio.gather(*tasks), 5)

    asyncio.run(scenario())
    assert all(joins[reader.subscription] == 1 for reader in readers)


def test_a_write_that_raises_fails_its_own_stream_only():
    streamer = ResultStreamer(SCAN, flush_interval=0.0)
    registry: dict = {}
    healthy, broken = Reader(streamer, registry), Reader(streamer, registry)

    def refuse(batch: list[dict]) -> asyncio.Future:
        if seqs(batch) == [2]:
            raise RuntimeError("the connection is gone")
        return Reader.write(broken, batch)

    broken.write = refuse

    async def scenario() -> None:
        tasks = [asyncio.ensure_future(reader.run()) for reader in (healthy, broken)]
        streamer.add_result(result(0))
        await asyncio.sleep(0.02)
        streamer.add_result(result(1))
        await asyncio.sleep(0.02)
        assert tasks[1].done() and "gone" in str(tasks[1].exception())
        streamer.finish({"status": "completed"})
        await asyncio.wait_for(tasks[0], 5)

    asyncio.run(scenario())
    assert seqs(healthy.received) == [1, 2, 3] and seqs(broken.received) == [1]


def test_a_quiet_fan_out_keeps_its_members_alive_and_the_last_to_leave_ends_it():
    streamer = ResultStreamer(SCAN)
    registry: dict = {}
    readers = [Reader(streamer, registry, heartbeat=0.02) for _ in range(2)]

    async def scenario() -> None:
        tasks = [asyncio.ensure_future(reader.run()) for reader in readers]
        streamer.add_result(result(0))
        await asyncio.sleep(0.15)
        fan = registry[SCAN]
        assert all(reader.keep_alives >= 3 for reader in readers)
        for task in tasks:
            task.cancel()  # what a closed WebSocket does to its pump
        await asyncio.gather(*tasks, return_exceptions=True)
        assert registry == {} and fan._doorbell.ended

    asyncio.run(scenario())


def test_sse_and_websocket_clients_of_one_scan_each_get_it_whole_through_the_fan_out():
    options = APIOptions(StreamManager(max_concurrent=2), policy=ServerPolicy())
    seen_members: list[int] = []
    with APIServer(options.manager, app=Application(routes(options))) as server, \
            ScanClient(server.url) as client:
        scan_id = client.start({"symbols": 300, "latency_ms": 20, "workers": 4, "seed": 2})

        async def read(via: str) -> list[dict]:
            return [message async for message in client.astream(scan_id, via=via)]

        async def clients() -> list[list[dict]]:
            return await asyncio.gather(*(read("ws" if k % 2 else "sse") for k in range(12)))

        def watch() -> None:
            while not options.manager.get(scan_id).streamer.finished:
                fan = options.fanouts.get(scan_id)
                seen_members.append(len(fan._members) if fan is not None else 0)
                threading.Event().wait(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        streams = asyncio.run(clients())
        watcher.join()
        last = streams[0][-1]["metadata"]["seq"]
        assert streams[0][-1]["type"] == "final"
        assert all(seqs(stream) == list(range(1, last + 1)) for stream in streams)
        assert max(seen_members) >= 10  # caught-up clients were served by one task
        wait_until(lambda: options.fanouts == {})
        assert options.manager.get(scan_id).streamer.subscriber_count == 0
    options.manager.shutdown()
