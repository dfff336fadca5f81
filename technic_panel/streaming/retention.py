"""RetainedLog: the published messages a stream keeps for replay, and what readers behind it get.

A stream keeps its newest ``max_retained`` messages, its *window*, and evicts the oldest
first. A reader whose cursor is inside the window gets every message after it, exactly
once, in order. A reader behind the window (it joined late, or fell behind) gets, by the
stream's choice:

- a local ``behind_window`` error (a scan that ends: the reader learns what it missed,
  ``data.resume_from`` the first seq retained, and resumes there); or
- the *compacted* log (``compact=True``, a live scan that never ends), as Kafka compacts a
  topic by key: evicted results and updates are folded by symbol, so a symbol's row
  survives eviction at its latest evicted value. The reader first gets one message per
  symbol it lacks or holds an older row of, then the window:

  - a ``result`` at the symbol's *first* seq (the seq of its original ``result``), holding
    the row at its latest evicted value, for a symbol whose first seq is after the cursor
    (the reader has never had it);
  - the symbol's latest evicted ``update``, at its own seq, for a symbol the reader had
    (first seq at or before the cursor) whose latest evicted seq is after the cursor.

  Both carry ``metadata.compacted = True``. So a reader has symbol S exactly when S's first
  seq is at or before its cursor, whatever path it took there: a reconnect with ``since=``
  its last seq loses no row and gets no message twice (one it holds may come again as an
  ``update`` whose row it already has). Evicted messages of other kinds (progress, errors,
  alerts) are not replayed: they are events, not state. Memory: the window plus one row
  per symbol, however long the stream runs.

Not thread-safe: the streamer calls it under its lock.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Iterator

from technic_panel.streaming.jsonsafe import make_message

_ROW_TYPES = frozenset({"result", "update"})
_UPDATE_ONLY = frozenset({"changed", "previous_signal"})


def _seq(message: dict) -> int:
    seq: int = message["metadata"]["seq"]
    return seq


class _Folded:
    """One symbol's evicted rows: the seq of its first ``result`` and its latest message."""

    __slots__ = ("first", "message")

    def __init__(self, first: int, message: dict) -> None:
        self.first, self.message = first, message


class RetainedLog:
    """A stream's window of published messages, folding evicted rows by symbol if ``compact``.

    Warning: not thread-safe; its stream calls it under the stream's lock.
    """

    def __init__(self, scan_id: str, max_retained: int, *, compact: bool = False) -> None:
        self.scan_id, self.max_retained, self.compact = scan_id, max_retained, compact
        self.last_seq = 0
        self._window: deque[dict] = deque()
        self._folded: dict[str, _Folded] = {}
        self._firsts: list[int] = []
        self._first_symbols: list[str] = []
        self._by_latest: OrderedDict[str, None] = OrderedDict()

    @property
    def first_seq(self) -> int:
        """The oldest seq in the window (``last_seq + 1`` while it is empty)."""
        return self.last_seq - len(self._window) + 1

    def extend(self, messages: list[dict]) -> None:
        """Append published ``messages`` (in seq order), evicting the oldest beyond the window."""
        window = self._window
        window.extend(messages)
        self.last_seq = _seq(messages[-1])
        while len(window) > self.max_retained:
            evicted = window.popleft()
            if self.compact and evicted["type"] in _ROW_TYPES:
                self._fold(evicted)

    def read(self, cursor: int, limit: int | None) -> list[dict]:
        """Return what a reader at ``cursor`` gets next, at most ``limit`` messages."""
        if cursor >= self.last_seq:
            return []
        first = self.first_seq
        if cursor >= first - 1:
            return self._slice(cursor, limit)
        if not self.compact:
            return [self._behind_window(cursor, first)]
        folded = list(itertools.islice(self._compacted(cursor), limit))
        if limit is not None and len(folded) == limit:
            return folded
        rest = None if limit is None else limit - len(folded)
        return folded + self._slice(first - 1, rest)

    def _slice(self, cursor: int, limit: int | None) -> list[dict]:
        first = self.first_seq
        stop = self.last_seq if limit is None else min(self.last_seq, cursor + limit)
        return [self._window[seq - first] for seq in range(cursor + 1, stop + 1)]

    def _fold(self, message: dict) -> None:
        symbol = message["data"]["symbol"]
        entry = self._folded.get(symbol)
        if entry is None:
            self._folded[symbol] = _Folded(_seq(message), message)
            self._firsts.append(_seq(message))
            self._first_symbols.append(symbol)
        else:
            entry.message = message
        self._by_latest[symbol] = None
        self._by_latest.move_to_end(symbol)

    def _compacted(self, cursor: int) -> Iterator[dict]:
        """Yield the folded rows a reader at ``cursor`` lacks, in the seq order they take."""
        known = bisect.bisect_right(self._firsts, cursor)
        return heapq.merge(self._new_rows(known), self._newer_rows(cursor, known), key=_seq)

    def _new_rows(self, known: int) -> Iterator[dict]:
        """Yield a ``result`` at its first seq for each folded symbol after the ``known`` ones."""
        for symbol in itertools.islice(self._first_symbols, known, None):
            entry = self._folded[symbol]
            data = {key: value for key, value in entry.message["data"].items()
                    if key not in _UPDATE_ONLY}
            metadata = {**entry.message["metadata"], "seq": entry.first, "compacted": True}
            yield {"type": "result", "data": data, "metadata": metadata}

    def _newer_rows(self, cursor: int, known: int) -> list[dict]:
        """Return, by seq, the latest evicted update of each known symbol newer than ``cursor``."""
        if known <= len(self._by_latest) // 2:
            entries = [self._folded[symbol] for symbol in self._first_symbols[:known]]
            newer = sorted((entry for entry in entries if _seq(entry.message) > cursor),
                           key=lambda entry: _seq(entry.message))
        else:
            recent = (self._folded[symbol] for symbol in reversed(self._by_latest))
            newer = list(itertools.takewhile(lambda entry: _seq(entry.message) > cursor,
                                             recent))[::-1]
        return [{**entry.message, "metadata": {**entry.message["metadata"], "compacted": True}}
                for entry in newer if entry.first <= cursor]

    def _behind_window(self, cursor: int, first: int) -> dict:
        text = (f"messages {cursor + 1} to {first - 1} of scan {self.scan_id!r} are no longer "
                f"retained; resuming from {first}")
        data = {"code": "behind_window", "message": text, "resume_from": first}
        msg = make_message("error", data, scan_id=self.scan_id, seq=first - 1)
        msg["metadata"]["local"] = True
        return msg
