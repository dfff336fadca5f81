"""ResultStreamer: one scan's messages, numbered, batched, deduplicated and replayable.

Overview
--------
Producers (executor threads) call :meth:`ResultStreamer.add_result`, ``add_error``,
``add_progress`` and ``finish`` from any thread. Consumers (the dashboard's controller,
SSE and WebSocket clients, the CLI) read at their own pace: they poll a cursor with
:meth:`ResultStreamer.messages_since`, as tornado's chat demo does, or hold a
:class:`Subscription` and block (``get``, ``get_batch``, ``for``) or await (``async for``).

Mechanics
---------
**Numbering.** A message takes the scan's next ``seq`` (1, 2, 3, ..., no gaps) when it is
added; :func:`~technic_panel.streaming.jsonsafe.envelope` builds its metadata. Data is made
JSON-safe and validated first, so invalid data raises ``MessageError`` and takes no seq.

**Dedup.** A symbol's first result is a ``result``; a later one whose content differs
(the contract's ``BOOKKEEPING_KEYS`` aside) is an ``update`` of that row, naming the fields
that ``changed`` (a tuple; an array in JSON) and the ``previous_signal``; an identical one
is dropped and takes no seq. The last content per symbol is kept: memory grows with the
universe, not with time.

**Batching.** Publishing (making messages visible) is throttled, not delayed: a message
added when the last publish is ``flush_interval`` or more ago goes out at once, so a
quiet stream has no batching latency; one added sooner waits in a pending list, and the
pending messages are published together when ``flush_interval`` has passed since the last
publish, so a burst travels in batches instead of waking readers once per message.
They are also published at once when ``batch_size`` are pending; on
:meth:`~ResultStreamer.flush`; for a result whose ``priority_tier`` is ``"high"`` (with
everything pending before it, keeping the order); always for the ``final``. No message
waits longer than ``flush_interval``. A producer with several messages at one instant (the
scanner, a finished chunk) adds them inside :meth:`~ResultStreamer.holding`: they are
published together when the block ends, one reader wake-up instead of one per high-tier
result. There is no timer thread; the deadline is kept by whoever looks next: a producer
publishes overdue messages when it adds one, every read publishes them first, and the first
message held back wakes a blocking reader (and the event loops) to wait for the deadline.

**Replay and retention.** Published messages go into one shared
:class:`~technic_panel.streaming.retention.RetainedLog` of at most ``max_retained``, oldest
evicted first; the ``final``, which nothing follows, is always kept. Subscribers are
cursors into it (the last seq each received), not queues: a slow or vanished subscriber
holds nothing and blocks no one, and memory stays bounded. Joining late, or again with
``since=seq``, gives every message after ``seq`` exactly once, in order. A cursor behind
the window first gets one *local* ``behind_window`` error (seq ``first_retained_seq - 1``,
``data.resume_from = first_retained_seq``), built per reader, so its seqs still rise and
no one else's numbering changes; a ``compact`` stream (a live scan's) gives it instead the
log compacted by symbol: one row per symbol, then the window (see
:mod:`~technic_panel.streaming.retention`).

**Waking.** Blocking readers wait on the streamer's :class:`threading.Condition`. A publish
wakes one; each reader during whose wait something was published wakes the next, news or
not (threads may share a cursor): threads take the GIL in turn, not all at once. Waiters
wake in arrival order, so the chain stops at the first that began waiting after the publish.
An ``async for`` awaits a future that publishing resolves with ``call_soon_threadsafe``: one
per event loop, however many of its tasks wait.

**Ending.** After ``finish`` or ``close`` adding raises :class:`StreamClosed`. A
subscription ends after delivering the ``final``, or, once the streamer is closed, after
draining what was published. Then ``get`` raises :class:`StreamEnded` (``None`` means a
timeout only) and iteration stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from technic_panel.streaming.contract import changed_fields, validate_data
from technic_panel.streaming.jsonsafe import checked_content, envelope, json_safe
from technic_panel.streaming.retention import RetainedLog
from technic_panel.streaming.subscription import Cursor, StreamEnded, Subscription, is_int_at_least
from technic_panel.vocabulary import require

logger = logging.getLogger(__name__)

class StreamClosed(RuntimeError):
    """A message was added to a stream that is finished or closed."""


def _earliest(*waits: float | None) -> float | None:
    known = [wait for wait in waits if wait is not None]
    return min(known) if known else None


class ResultStreamer:
    """Number, batch, deduplicate and fan out one scan's messages; see the module docs.

    All methods are thread-safe. Create one per scan.

    Parameters
    ----------
    scan_id : str
        Written into every message's metadata.
    batch_size : int
        Publish as soon as this many messages are pending (>= 1).
    flush_interval : float
        Publish at most once per this many seconds, unless ``batch_size`` is reached or a
        message is urgent; no message waits longer (>= 0).
    max_retained : int
        Keep at most this many published messages for replay (>= 1).
    clock : callable
        Monotonic seconds for the flush deadline; tests inject a fake one.
    compact : bool
        Give readers behind the window the log compacted by symbol, not ``behind_window``.
    """

    DEFAULT_FLUSH_INTERVAL = 0.001
    """One millisecond: bursts travel in batches, a lone result goes out at once."""

    def __init__(self, scan_id: str, *, batch_size: int = 50,
                 flush_interval: float = DEFAULT_FLUSH_INTERVAL, max_retained: int = 100_000,
                 clock: Callable[[], float] = time.monotonic, compact: bool = False) -> None:
        owner = "ResultStreamer"
        require(owner, "scan_id", scan_id, "a non-empty string",
                isinstance(scan_id, str) and scan_id != "")
        require(owner, "batch_size", batch_size, "an integer >= 1", is_int_at_least(batch_size, 1))
        require(owner, "flush_interval", flush_interval, "a finite number >= 0",
                isinstance(flush_interval, int | float) and not isinstance(flush_interval, bool)
                 and math.isfinite(flush_interval) and flush_interval >= 0)
        require(owner, "max_retained", max_retained, "an integer >= 1",
                is_int_at_least(max_retained, 1))
        require(owner, "clock", clock, "callable", callable(clock))
        self.scan_id = scan_id
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_retained = max_retained
        self._clock = clock
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._log = RetainedLog(scan_id, max_retained, compact=compact)
        self._pending: list[dict] = []
        self._holds = 0
        self._last_publish = -math.inf
        self._next_seq = 1
        self._final_seq: int | None = None
        self._closed = False
        self._sent: dict[str, dict] = {}
        self._subscribers: weakref.WeakSet[Cursor] = weakref.WeakSet()
        self._waiters: dict[asyncio.AbstractEventLoop, asyncio.Future] = {}

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"<ResultStreamer scan_id={self.scan_id!r} last_seq={self._log.last_seq} "
                f"pending={len(self._pending)} subscribers={len(self._subscribers)} "
                f"finished={self._final_seq is not None} closed={self._closed}>"
            )

    @property
    def last_seq(self) -> int:
        """The highest published seq (0 before anything is published)."""
        with self._lock:
            self._flush_if_due_locked()
            return self._log.last_seq

    @property
    def first_retained_seq(self) -> int:
        """The oldest seq still retained for replay (``last_seq + 1`` while the log is empty)."""
        with self._lock:
            self._flush_if_due_locked()
            return self._log.first_seq

    @property
    def finished(self) -> bool:
        """Whether the ``final`` message has been added (and so published)."""
        with self._lock:
            return self._final_seq is not None

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open (not ended, closed or garbage-collected)."""
        with self._lock:
            return len(self._subscribers)

    @property
    def result_count(self) -> int:
        """How many distinct symbols have been sent as a ``result`` (updates not counted)."""
        with self._lock:
            return len(self._sent)

    def add_result(self, data: Mapping, *, handed_over: bool = False) -> int | None:
        """Add one symbol's result; return its seq, or ``None`` if it repeats the last one.

        The first result of a symbol becomes a ``result``, a changed one an ``update``
        that also names the fields that ``changed`` and the ``previous_signal``.
        ``handed_over``: ``data`` is a dict its producer made JSON-safe (as a ``SafeData``)
        and never touches again, so it is validated and kept as it is, not copied (a live
        scan's rows: 5,000 a second).

        Raises
        ------
        MessageError
            If ``data`` breaks the contract for results.
        StreamClosed
            After :meth:`finish` or :meth:`close`.
        """
        # A copy unless handed over (and an exact dict, which the collector can untrack):
        # the update's fields go into it.
        content = data if handed_over and type(data) is dict else json_safe(data)
        validate_data("result", content)
        with self._lock:
            self._check_open_locked()
            previous = self._sent.get(content["symbol"])
            if previous is not None:
                changed = changed_fields(previous, content)
                if not changed:
                    return None
                # A shared tuple, which keeps the update untracked by the collector.
                content["changed"] = changed
                content["previous_signal"] = previous["signal"]
            seq = self._append_locked("result" if previous is None else "update", content,
                                      urgent=content.get("priority_tier") == "high")
            self._sent[content["symbol"]] = content
            return seq

    def add_error(self, data: Mapping) -> int:
        """Add an ``error`` message (``data.message`` says what failed); return its seq."""
        return self._add("error", data)

    def add_alert(self, data: Mapping) -> int:
        """Add an ``alert`` message (a live symbol's ``rule`` fired); return its seq."""
        return self._add("alert", data)

    def add_progress(self, data: Mapping) -> int:
        """Add a ``progress`` message (``data.processed`` of ``data.total``); return its seq."""
        return self._add("progress", data)

    def finish(self, summary: Mapping) -> int:
        """Add the one ``final`` message with ``summary`` as data, publish all; return its seq.

        Safe to call twice: a later call adds nothing and returns the first final's seq.

        Raises
        ------
        MessageError
            If ``summary`` lacks a valid ``status`` (first call only).
        StreamClosed
            If the stream was closed before it was finished.
        """
        with self._lock:
            if self._final_seq is None:
                self._check_open_locked()
                self._final_seq = self._append_locked("final", checked_content("final", summary),
                                                      urgent=True)
            return self._final_seq

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold publishing while the block runs; publish what is pending when it ends.

        For messages that exist at the same instant: a reader wakes once for all of them.
        Other threads' messages wait for the block's end too (a reader that looks publishes
        those due by ``flush_interval``); a ``final`` never waits. Blocks may nest; the
        outermost end publishes.
        """
        with self._lock:
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
                if not self._holds:
                    self._publish_locked()

    def flush(self) -> None:
        """Publish every pending message now."""
        with self._lock:
            self._publish_locked()

    def close(self) -> None:
        """Publish what is pending, refuse further adds and end every subscription.

        Subscribers still receive what was published, then end. Safe to call twice.
        """
        with self._lock:
            self._publish_locked()
            self._closed = True
            self._wake_locked()

    def subscribe(self, since: int = 0) -> Subscription:
        """Return a subscription that delivers every published message with seq > ``since``.

        Raises
        ------
        ValueError
            If ``since`` is not an integer in [0, last_seq].
        """
        return self._subscribe(since, counted=True)

    def _subscribe(self, since: int, *, counted: bool) -> Subscription:
        with self._lock:
            self._check_cursor_locked("since", since)
            cursor = Cursor(since)
            if counted:
                self._subscribers.add(cursor)
            return Subscription(self, cursor)

    def messages_since(self, seq: int, limit: int | None = None) -> list[dict]:
        """Return published messages with seq > ``seq``, oldest first, at most ``limit``.

        A ``seq`` behind the retained window gives only the local ``behind_window`` error
        (see the module docs); ask again from its seq to continue.

        Raises
        ------
        ValueError
            If ``seq`` is not an integer in [0, last_seq] or ``limit`` is not ``None`` or >= 1.
        """
        require("ResultStreamer.messages_since", "limit", limit, "None or an integer >= 1",
                limit is None or is_int_at_least(limit, 1))
        with self._lock:
            self._check_cursor_locked("seq", seq)
            return self._log.read(seq, limit)

    def _add(self, type_: str, data: Mapping) -> int:
        content = checked_content(type_, data)
        with self._lock:
            self._check_open_locked()
            return self._append_locked(type_, content)

    def _check_open_locked(self) -> None:
        if self._closed:
            raise StreamClosed(f"scan {self.scan_id!r}: the stream is closed")
        if self._final_seq is not None:
            raise StreamClosed(
                f"scan {self.scan_id!r} is finished (final seq {self._final_seq}); "
                "nothing may follow the final"
            )

    def _check_cursor_locked(self, name: str, value: Any) -> None:
        self._flush_if_due_locked()
        last_seq = self._log.last_seq
        require("ResultStreamer", name, value, f"an integer in [0, last_seq={last_seq}]",
                is_int_at_least(value, 0) and value <= last_seq)

    def _append_locked(self, type_: str, content: dict, *, urgent: bool = False) -> int:
        seq = self._next_seq
        self._pending.append(envelope(type_, content, scan_id=self.scan_id, seq=seq))
        self._next_seq += 1
        if self._holds and type_ != "final":
            return seq
        if urgent or len(self._pending) >= self.batch_size or self._until_flush_locked() == 0:
            self._publish_locked()
        elif len(self._pending) == 1:
            self._wake_locked(everyone=False)  # one reader learns the flush deadline
        return seq

    def _until_flush_locked(self) -> float | None:
        """Seconds until the pending messages are due (``0.0``: now), ``None`` if none are."""
        if not self._pending:
            return None
        return max(0.0, self._last_publish + self.flush_interval - self._clock())

    def _flush_if_due_locked(self) -> None:
        if self._until_flush_locked() == 0.0:
            self._publish_locked()

    def _publish_locked(self) -> None:
        if not self._pending:
            return
        self._log.extend(self._pending)
        self._pending.clear()
        self._last_publish = self._clock()
        self._wake_locked(everyone=False)  # the readers wake one another: see Waking

    def _wake_locked(self, *, everyone: bool = True) -> None:
        """Wake the blocking readers (only one unless ``everyone``) and every event loop."""
        (self._cond.notify_all if everyone else self._cond.notify)()
        for loop, future in self._waiters.items():
            try:
                loop.call_soon_threadsafe(future.set_result, None)
            except RuntimeError:
                logger.debug("scan %r: an async subscriber's event loop is closed", self.scan_id)
        self._waiters.clear()

    def _read_for(self, cursor: Cursor, limit: int | None,
                  timeout: float | None) -> list[dict]:
        """Return ``cursor``'s next messages (at most ``limit``), waiting up to ``timeout`` s.

        ``[]`` means the timeout passed; :class:`StreamEnded` that the cursor has ended.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                batch = self._poll_locked(cursor, limit)
                if batch:
                    return batch
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    if self._pending:
                        self._cond.notify()  # it may have kept the deadline: hand it on
                    return []
                seen = self._log.last_seq
                try:
                    self._cond.wait(_earliest(remaining, self._until_flush_locked()))
                finally:
                    if self._log.last_seq != seen:
                        self._cond.notify()  # a publish came while it waited: hand it on

    async def _next_for(self, cursor: Cursor) -> dict:
        """Return ``cursor``'s next message, awaiting one event-loop future per wait."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                batch = self._poll_locked(cursor, 1)
                if batch:
                    return batch[0]
                future = self._waiters.get(loop)
                if future is None:
                    future = self._waiters[loop] = loop.create_future()
                delay = self._until_flush_locked()
            await asyncio.wait((future,), timeout=delay)

    def _end_for(self, cursor: Cursor) -> None:
        """End ``cursor`` and wake whoever waits on it."""
        with self._lock:
            self._end_locked(cursor)
            self._wake_locked()

    def _poll_locked(self, cursor: Cursor, limit: int | None) -> list[dict]:
        if cursor.ended:
            raise self._ended_error(cursor)
        self._flush_if_due_locked()
        batch = self._log.read(cursor.seq, limit)
        if batch:
            cursor.seq = batch[-1]["metadata"]["seq"]
            if batch[-1]["metadata"]["is_final"]:
                self._end_locked(cursor)
        elif self._closed or cursor.seq == self._final_seq:
            self._end_locked(cursor)
            raise self._ended_error(cursor)
        return batch

    def _end_locked(self, cursor: Cursor) -> None:
        cursor.ended = True
        self._subscribers.discard(cursor)

    def _ended_error(self, cursor: Cursor) -> StreamEnded:
        return StreamEnded(f"subscription to scan {self.scan_id!r} has ended at seq {cursor.seq}")
