"""Subscription: a reader's cursor into a :class:`~.streamer.ResultStreamer`'s log.

The streamer's module docstring explains replay, retention and waking; a subscription
holds only its place (a :class:`Cursor`, read and written under the streamer's lock)
and asks the streamer for what follows it, blocking or awaiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from technic_panel.vocabulary import require

if TYPE_CHECKING:
    from technic_panel.streaming.streamer import ResultStreamer


class StreamEnded(Exception):
    """A subscription has delivered everything it ever will (the ``final``, or all after close)."""


def is_int_at_least(value: Any, low: int) -> bool:
    """Whether ``value`` is an integer (not a bool) of at least ``low``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass(eq=False)
class Cursor:
    """A subscription's place in the log: read and written under its streamer's lock only."""

    seq: int
    ended: bool = False



class Subscription:
    """A cursor into a :class:`ResultStreamer`'s log: every message after it, once, in order.

    Get one from :meth:`ResultStreamer.subscribe`. It holds no messages of its own. Its
    methods are thread-safe, but the cursor is shared, so give each consumer its own.
    ``get`` and ``get_batch`` return ``None`` / ``[]`` on timeout and raise
    :class:`StreamEnded` once the ``final`` has been delivered (or, after the streamer
    was closed, everything published), or after :meth:`close`.
    """

    def __init__(self, streamer: ResultStreamer, cursor: Cursor) -> None:
        self._streamer = streamer
        self._cursor = cursor

    def __repr__(self) -> str:
        return (f"<Subscription scan_id={self._streamer.scan_id!r} last_seq={self.last_seq} "
                f"ended={self.ended}>")

    @property
    def last_seq(self) -> int:
        """The cursor: the seq of the last message delivered (``since`` before any)."""
        return self._cursor.seq

    @property
    def ended(self) -> bool:
        """Whether this subscription has delivered all it ever will, or was closed."""
        return self._cursor.ended

    def get(self, timeout: float | None = None) -> dict | None:
        """Return the next message, waiting up to ``timeout`` s (forever if ``None``).

        Returns ``None`` on timeout; raises :class:`StreamEnded` once the stream is over.
        """
        batch = self._streamer._read_for(self._cursor, 1, timeout)
        return batch[0] if batch else None

    def get_batch(self, timeout: float | None = None, max_items: int | None = None) -> list[dict]:
        """Return every message available now (at most ``max_items``), waiting for one first.

        Returns ``[]`` on timeout; raises :class:`StreamEnded` once the stream is over.
        """
        require("Subscription.get_batch", "max_items", max_items, "None or an integer >= 1",
                max_items is None or is_int_at_least(max_items, 1))
        return self._streamer._read_for(self._cursor, max_items, timeout)

    def follower(self) -> Subscription:
        """Return a new subscription at this one's cursor, which then moves on its own.

        It is not counted among the streamer's subscribers: it serves a reader that is (a
        fan-out's doorbell), so a scan's count still says how many clients read it.
        """
        return self._streamer._subscribe(self._cursor.seq, counted=False)

    def close(self) -> None:
        """Stop this subscription and unhook it from the streamer; safe to call twice."""
        self._streamer._end_for(self._cursor)

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> dict:
        try:
            return self._streamer._read_for(self._cursor, 1, None)[0]
        except StreamEnded:
            raise StopIteration from None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict:
        try:
            return await self._streamer._next_for(self._cursor)
        except StreamEnded:
            raise StopAsyncIteration from None
