"""frozen_heap: the heap frozen from the first live scan's start to the last one's end."""

from __future__ import annotations

import gc
import threading
import time
import weakref

from helpers import wait_until

from technic_panel.live.heap import REFREEZE_SECONDS, frozen_heap, refreeze


class Node:
    """An object that can sit in a reference cycle and be watched through a weakref."""

    partner: Node | None = None


def test_the_heap_stays_frozen_until_the_last_of_two_overlapping_scans_ends():
    wait_until(lambda: gc.get_freeze_count() == 0)  # no live scan of another test runs on
    inside, leave = threading.Event(), threading.Event()

    def other_scan() -> None:
        with frozen_heap():
            inside.set()
            leave.wait(10)

    other = threading.Thread(target=other_scan)
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        other.start()
        inside.wait(10)
    assert gc.get_freeze_count() > 0  # the other scan still runs
    leave.set()
    other.join(10)
    assert gc.get_freeze_count() == 0


def test_garbage_from_before_is_collected_not_frozen_and_later_garbage_still_goes():
    before = Node()
    before.partner = Node()
    before.partner.partner = before
    watched_before = weakref.ref(before)
    del before
    with frozen_heap():
        assert watched_before() is None
        during = Node()
        during.partner = during
        watched_during = weakref.ref(during)
        del during
        gc.collect()
        assert watched_during() is None


def test_refreeze_freezes_what_survived_since_and_collects_young_garbage_first():
    wait_until(lambda: gc.get_freeze_count() == 0)  # no live scan of another test runs on
    clock = [0.0]
    assert not refreeze(lambda: clock[0] + 1e6)  # no live scan: nothing to freeze
    with frozen_heap():
        frozen = gc.get_freeze_count()
        kept = [Node() for _ in range(1000)]  # what a scan retains after it started
        garbage = Node()
        garbage.partner = garbage
        watched = weakref.ref(garbage)
        del garbage
        clock[0] = time.monotonic()
        assert not refreeze(lambda: clock[0])  # too soon after the first freeze
        assert refreeze(lambda: clock[0] + REFREEZE_SECONDS)
        assert gc.get_freeze_count() >= frozen + len(kept)
        assert watched() is None  # the young cycle was collected, not frozen
        assert not refreeze(lambda: clock[0] + REFREEZE_SECONDS + 0.5)
        released = weakref.ref(kept[0])
        del kept[0]
        assert released() is None  # a frozen object let go is still freed at once
    assert gc.get_freeze_count() == 0
