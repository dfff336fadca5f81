"""Bar feeds: where a live scan's bars come from, one protocol, delivered from a feed thread.

A :class:`BarFeed` hands each :class:`Bar` (symbol, timestamp, OHLCV, closed or forming) to
the ``on_bar`` callback it was started with, from its own thread
(``technic-feed-<name>``), and calls ``on_end`` once when it ends: when it ran out of bars,
failed, or was stopped. The callback must only put the bar into a thread-safe structure
(the live scan's bounded queue): the feed thread does no scoring. :meth:`BarFeed.stop`
ends the thread and joins it within a deadline; every wait of a feed honours it.

Two feeds: :class:`~technic_panel.live.synthetic_feed.SyntheticFeed` continues each
synthetic symbol's path with intraday bars, :class:`~technic_panel.live.replay.ReplayFeed`
replays stored bars from a date at a multiple of real time. This module holds the bar, the
protocol and the thread both share.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol, runtime_checkable

log = logging.getLogger(__name__)

STOP_DEADLINE = 5.0
"""Default seconds :meth:`BarFeed.stop` waits for the feed thread to end."""
MIN_WAIT = 0.002
"""Least seconds a feed thread sleeps between two deliveries: due bars go out together."""


class Bar(NamedTuple):
    """One bar of a live feed: closed (final) or forming (revised until it closes).

    ``time`` is the bar's timestamp, the start of its period, in nanoseconds since the
    epoch (UTC), and ``feed_time`` the UTC wall clock, in ms, when the feed handed it over.
    """

    symbol: str
    time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool
    feed_time: int


OnBar = Callable[[Bar], None]
"""Takes one bar, on the feed's thread: it may only put the bar somewhere thread-safe."""
OnEnd = Callable[[BaseException | None], None]
"""Called once on the feed's thread when it ends, with the exception that ended it, if any."""


@runtime_checkable
class BarFeed(Protocol):
    """What a live scan needs of a feed: start it with callbacks, stop it."""

    name: str

    def start(self, on_bar: OnBar, on_end: OnEnd) -> None:
        """Start the feed thread: each bar goes to ``on_bar``, the end to ``on_end``."""
        ...

    def stop(self, timeout: float = STOP_DEADLINE) -> bool:
        """Stop the feed and wait up to ``timeout`` s for its thread; return whether it ended."""
        ...

    @property
    def running(self) -> bool:
        """Whether the feed thread is alive."""
        ...


@functools.lru_cache(maxsize=256)
def bar_timestamp(time_ns: int) -> str:
    """Return a bar's ``time`` as the contract's ISO-8601 UTC text, e.g. ``...T14:30:01.250Z``.

    Cached: the bars of one period share their time.
    """
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{nanos // 1_000_000:03d}Z"


def wall_ms() -> int:
    """Return the UTC wall clock in whole milliseconds: a bar's ``feed_time``."""
    return time.time_ns() // 1_000_000


class FeedThread:
    """The thread of a feed: start once, stop (joined within a deadline) any number of times.

    Subclasses implement :meth:`_run`, which delivers bars with ``on_bar`` and waits only
    through :meth:`_sleep_until` (which returns False once the feed is stopping).
    """

    name = "feed"

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the feed thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, on_bar: OnBar, on_end: OnEnd) -> None:
        """Start the feed thread; a feed starts once.

        Raises
        ------
        RuntimeError
            If the feed was started before.
        """
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} was already started; create a new one")
        self._thread = threading.Thread(target=self._main, args=(on_bar, on_end),
                                        name=f"technic-feed-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_DEADLINE) -> bool:
        """Stop the feed and wait up to ``timeout`` s for its thread; return whether it ended.

        Safe to call twice, before :meth:`start` and from the feed's own callbacks.
        """
        self._stopping.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("%s did not end within %g s of stop", thread.name, timeout)
        return not thread.is_alive()

    def _main(self, on_bar: OnBar, on_end: OnEnd) -> None:
        error: BaseException | None = None
        try:
            self._run(on_bar)
        except Exception as exc:  # noqa: BLE001 - the feed thread's boundary: on_end reports it
            log.warning("%s failed: %s", self.name, exc, exc_info=True)
            error = exc
        finally:
            on_end(error)

    def _run(self, on_bar: OnBar) -> None:
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` has been called."""
        return self._stopping.is_set()

    def _sleep_until(self, deadline: float) -> bool:
        """Wait until ``deadline`` (``time.monotonic`` seconds), at least :data:`MIN_WAIT` if any.

        Returns False, at once, when the feed is stopping.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(max(MIN_WAIT, remaining))
