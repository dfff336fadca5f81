"""Fan-out: one event-loop task serves every caught-up stream of a scan.

A stream handler reading by itself wakes, reads, writes and flushes once per message: with
200 clients of one scan that is 200 task wake-ups, waits and timers a message, about 50 us
of loop time per delivery. A handler that has caught up (read all there is and written it)
joins its scan's :class:`FanOut` on its loop and sleeps. The fan-out's one task is woken
once per publish and, for each member in turn, reads the member's own cursor without
waiting and writes what it got, through the member's ``write``.

Delivery stays exact because every member keeps its own
:class:`~technic_panel.streaming.streamer.Subscription`: the fan-out's own subscription is
only a doorbell. A member is handed back to its handler (which awaits the write under its
``write_timeout`` and reads on by itself) when its previous write has not completed (a
slow client never slows the others), when its stream ends, and when its write raises (for
its handler to raise; the others go on). Not thread-safe: the IOLoop only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from technic_panel.streaming.streamer import StreamEnded, Subscription

MAX_BATCH = 500
"""Most messages a stream writes before it awaits the write (bounds its buffer)."""


async def next_batch(subscription: Subscription, heartbeat: float | None) -> list[dict] | None:
    """Return the next published messages, awaiting one when there are none.

    Returns ``[]`` after ``heartbeat`` quiet seconds and ``None`` once the subscription
    has ended. Never blocks the loop: ``get_batch(timeout=0)`` does not wait, and the wait
    is the subscription's ``async for``, woken through ``call_soon_threadsafe``.
    """
    try:
        batch = subscription.get_batch(timeout=0, max_items=MAX_BATCH)
        if batch:
            return batch
        async with asyncio.timeout(heartbeat):
            return [await anext(subscription)]
    except (StreamEnded, StopAsyncIteration):
        return None
    except TimeoutError:
        return []


def ends_stream(message: dict) -> bool:
    """Whether a stream ends after ``message``: the final, or the behind_window error."""
    return message["metadata"]["is_final"] or message["metadata"].get("local", False)


@dataclass(eq=False)
class Member:
    """One stream as a fan-out serves it: its cursor, how to write to it, how it stands.

    ``write`` writes a batch and returns an awaitable that completes when the client has
    taken it (and raises if the connection closed); ``keep_alive`` writes a heartbeat, if
    the protocol has one. After the fan-out hands the member back, ``pending`` is its last
    write (await it) and ``last`` the last message written, if one was.
    """

    subscription: Subscription
    write: Callable[[list[dict]], Awaitable[None]]
    keep_alive: Callable[[], Awaitable[None] | None] = lambda: None
    pending: Awaitable[None] | None = None
    last: dict | None = None
    _released: asyncio.Future | None = field(default=None, repr=False)


class FanOut:
    """The caught-up streams of one scan on one event loop, served by one task.

    Get it through :func:`fan_out`; :meth:`serve` a member until it is handed back.
    """

    def __init__(self, doorbell: Subscription, heartbeat: float | None,
                 registry: dict[str, FanOut], key: str) -> None:
        self._doorbell, self._heartbeat = doorbell, heartbeat
        self._registry, self._key = registry, key
        self._members: list[Member] = []
        self._task = asyncio.ensure_future(self._run())

    async def serve(self, member: Member) -> None:
        """Serve ``member`` until it is handed back (see the module docstring)."""
        member._released = asyncio.get_running_loop().create_future()
        self._members.append(member)
        self._pump(member, keep_alive=False)  # what was published while it caught up
        try:
            await member._released
        finally:
            self._release(member)

    async def _run(self) -> None:
        try:
            while (batch := await next_batch(self._doorbell, self._heartbeat)) is not None:
                await asyncio.sleep(0)  # the last round's writes complete before they are checked
                for member in list(self._members):
                    self._pump(member, keep_alive=not batch)
        finally:
            for member in list(self._members):
                self._pump(member, keep_alive=False)  # the final, after the doorbell's
                self._release(member)
            self._close()

    def _pump(self, member: Member, keep_alive: bool) -> None:
        """Write what ``member``'s cursor has now; hand it back when it should not stay."""
        if member._released is None or member._released.done():
            return
        pending = member.pending
        if pending is not None and not _completed(pending):
            self._release(member)  # its client has not taken the last write, or went away
            return
        try:
            batch = member.subscription.get_batch(timeout=0, max_items=MAX_BATCH)
        except StreamEnded:
            self._release(member)  # its handler's next read finds the end too
            return
        try:
            if batch:
                member.pending, member.last = member.write(batch), batch[-1]
            elif keep_alive:
                member.pending = member.keep_alive() or member.pending
        except Exception as exc:  # noqa: BLE001 - its handler raises it; the others go on
            member.pending = asyncio.get_running_loop().create_future()
            member.pending.set_exception(exc)
            self._release(member)
            return
        if batch and ends_stream(batch[-1]):
            self._release(member)

    def leave(self, member: Member) -> None:
        """Hand ``member`` back now (its connection closed); nothing if it is not served."""
        self._release(member)

    def _release(self, member: Member) -> None:
        if member in self._members:
            self._members.remove(member)
        if member._released is not None and not member._released.done():
            member._released.set_result(None)
        if not self._members:
            self._close()

    def _close(self) -> None:
        """Leave the registry and end the doorbell (which ends the task)."""
        if self._registry.get(self._key) is self:
            del self._registry[self._key]
        self._doorbell.close()


def _completed(pending: Awaitable[None]) -> bool:
    """Whether a write has completed without error (a failed one is for its handler to see)."""
    if not isinstance(pending, asyncio.Future):
        return True
    return pending.done() and not pending.cancelled() and pending.exception() is None


def fan_out(registry: dict[str, FanOut], scan_id: str, member: Member,
            heartbeat: float | None) -> FanOut:
    """Return the fan-out of ``scan_id`` on this loop in ``registry``, started if need be.

    A new one's doorbell starts at ``member``'s cursor, which has just caught up.
    """
    found = registry.get(scan_id)
    if found is None:
        doorbell = member.subscription.follower()
        found = registry[scan_id] = FanOut(doorbell, heartbeat, registry, scan_id)
    return found


def leave(registry: dict[str, FanOut], scan_id: str, member: Member) -> None:
    """Hand ``member`` back from its scan's fan-out now (its connection closed), if served."""
    found = registry.get(scan_id)
    if found is not None:
        found.leave(member)


async def stream(member: Member, registry: dict[str, FanOut], scan_id: str,
                 heartbeat: float | None,
                 settle: Callable[[Awaitable[None]], Awaitable[bool]]) -> dict | None:
    """Write ``member``'s messages to the end: by itself until caught up, then fanned out.

    ``settle`` awaits a write and says whether to go on (it may raise instead). Returns the
    message that ended the stream (the final, or the ``behind_window`` error), or ``None``
    when it ended otherwise (closed, or ``settle`` said stop).
    """
    while (batch := await next_batch(member.subscription, heartbeat)) is not None:
        pending = member.write(batch) if batch else member.keep_alive()
        if pending is not None and not await settle(pending):
            return None
        if batch and ends_stream(batch[-1]):
            return batch[-1]
        if len(batch) < MAX_BATCH:
            member.pending = member.last = None
            await fan_out(registry, scan_id, member, heartbeat).serve(member)
            if member.pending is not None and not await settle(member.pending):
                return None
            if member.last is not None and ends_stream(member.last):
                return member.last
    return None
