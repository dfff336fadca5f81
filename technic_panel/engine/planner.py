"""Progressive planning: the scan order, known part by part while the data is still read.

A source that can be planned in pieces (:class:`~technic_panel.data.base.PlannableSource`)
yields its universe and snapshot a part at a time; any other source is one part, its
``universe()`` merged with its ``snapshot()``. A :class:`ProgressivePlan` reads the
parts on a background thread (``technic-plan``) and, for each one:

1. keeps the requested symbols (all, by default), each once, and screens them: only
   the chosen sectors, a last close and an average dollar volume at least the floors
   (a symbol whose value is unknown stays in, so its failure is reported);
2. ranks every symbol kept so far with
   :func:`~technic_panel.engine.prioritize.prioritize`, whose scores are z-scores over
   every snapshot row seen so far (the previous scan's ratings count as before);
3. publishes the ranking and wakes the scanner.

The scanner's thread calls :meth:`ProgressivePlan.take` for the best known symbols it
has not submitted yet. A symbol is only ever taken once its plan row is known, so its
metadata and screening are right; its ``priority_tier`` is its rank among the symbols
known at that moment (mapped with ``TIER_SHARES``) and its ``batch_number`` is its
submission position // ``batch_size`` + 1.

:attr:`ProgressivePlan.total` is the number of symbols the scan will process: exact
once the last part is read; before, and when the scan stopped before planning finished,
the listed count (the requested symbols, or the source's ``symbols()``) minus those
screened out so far, never below those known. It only shrinks while planning, and is
never below the symbols submitted, so ``total_remaining`` stays >= 0.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from technic_panel.data.base import (
    PLAN_COLUMNS,
    SNAPSHOT_COLUMNS,
    DataSource,
    PlannableSource,
)
from technic_panel.engine.prioritize import prioritize

META_FIELDS = ("name", "sector", "industry", "market_cap")
"""Universe fields every result and error carries."""
_RERANK_GROWTH = 1.5
"""Rank again once the known symbols grew by this factor (or the scanner ran out)."""


@dataclass(frozen=True)
class Screen:
    """Which symbols a scan keeps: ``symbols`` (None: all), sectors and the two floors."""

    symbols: tuple[str, ...] | None = None
    sectors: tuple[str, ...] = ()
    min_price: float = 0.0
    min_dollar_volume: float = 0.0

    def keep(self, part: pd.DataFrame) -> np.ndarray:
        """Return which rows of ``part`` pass the sector, price and dollar-volume screens."""
        keep = np.ones(len(part), dtype=bool)
        if self.sectors:
            keep &= part["sector"].isin(self.sectors).to_numpy()
        if self.min_price > 0:
            keep &= ~(part["close"] < self.min_price).to_numpy()
        if self.min_dollar_volume > 0:
            keep &= ~(part["avg_dollar_volume"] < self.min_dollar_volume).to_numpy()
        return keep


def plan_parts(source: DataSource) -> Generator[pd.DataFrame, None, None]:
    """Yield ``source``'s plan parts: its own, or one part of universe and snapshot merged."""
    if isinstance(source, PlannableSource):
        yield from source.plan_parts()
        return
    universe = source.universe().drop_duplicates("symbol")
    snapshot = source.snapshot()
    if "symbol" in snapshot:
        snapshot = snapshot.drop_duplicates("symbol").drop(
            columns=[c for c in universe.columns if c != "symbol"], errors="ignore")
        universe = universe.merge(snapshot, on="symbol", how="left")
    yield universe.reindex(columns=list(PLAN_COLUMNS))


def full_plan(source: DataSource, screen: Screen, previous_ratings: pd.Series | None, *,
              batch_size: int) -> pd.DataFrame:
    """Return the whole scan order at once, as the plan converges to (for tests and tools)."""
    plan = ProgressivePlan(source, screen, previous_ratings, batch_size=batch_size,
                           wake=lambda: None)
    for part in plan_parts(source):
        plan.add(part)
    plan.add_unseen()
    return prioritize(plan.known, plan.seen_snapshot(), previous_ratings,
                      batch_size=batch_size)


class ProgressivePlan:
    """The scan order of one scan, read and ranked on a thread, taken by the scanner.

    Warning: :meth:`take`, :attr:`finished`, :meth:`fields` and :meth:`submissions`
    belong to the scanner's thread; :meth:`start` starts the reading thread;
    :meth:`stop`, :attr:`total` and :attr:`error` may be used from any thread.

    Parameters
    ----------
    source
        Where the parts come from.
    screen
        Which symbols to keep.
    previous_ratings
        tech_rating by symbol from an earlier scan, to rank with.
    batch_size
        Symbols per ``batch_number``.
    wake
        Called (from the reading thread) whenever there is news: a ranking, the end, a
        failure.
    """

    def __init__(self, source: DataSource, screen: Screen,
                 previous_ratings: pd.Series | None, *, batch_size: int,
                 wake: Callable[[], None]) -> None:
        self.source, self.screen, self.previous_ratings = source, screen, previous_ratings
        self.batch_size, self._wake = batch_size, wake
        requested = None if screen.symbols is None else list(dict.fromkeys(screen.symbols))
        self._requested = None if requested is None else {s: i for i, s in enumerate(requested)}
        self._listed: int | None = None if requested is None else len(requested)
        self._lock = threading.Lock()
        self._stopped = self._done = self._complete = self._hungry = False
        self.error: BaseException | None = None
        # Reading thread's state: rows seen, symbols kept (in given order) and their fields.
        self._seen: set[str] = set()
        self._snapshots: list[pd.DataFrame] = []
        self.known: list[str] = []
        self._known_count = 0  # len(known), for other threads: they may read while it sorts
        self._meta: dict[str, tuple] = {}
        self._screened = 0
        # Published under the lock: the latest ranking.
        self._version = 0
        self._ranked: list[str] = []
        self._tiers: dict[str, str] = {}
        self._scores: dict[str, float] = {}
        # Scanner thread's state.
        self._taken_version = 0
        self._pending: list[str] = []
        self._tiers_now: dict[str, str] = {}
        self._scores_now: dict[str, float] = {}
        self._submitted: dict[str, tuple[float, str, int]] = {}

    def __repr__(self) -> str:
        return (f"ProgressivePlan({self.source!r}, known={self._known_count}, "
                f"submitted={len(self._submitted)}, total={self.total}, done={self._done})")

    # --- any thread ------------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Symbols the scan will process: exact once planned, an upper bound before.

        A scan stopped while planning keeps the bound (the listed count minus those
        screened out), not the few symbols known when it stopped.
        """
        known = self._known_count
        if self._complete or self._listed is None:
            return known
        return max(self._listed - self._screened, known)

    @property
    def finished(self) -> bool:
        """Whether every part is read and every known symbol was taken (or it failed)."""
        with self._lock:
            return self._done and self._version == self._taken_version and not self._pending

    def list_source(self) -> None:
        """Count the source's symbols (its cheap ``symbols()``) for :attr:`total`."""
        if self._listed is None and isinstance(self.source, PlannableSource):
            self._listed = len(self.source.symbols())

    def start(self) -> None:
        """Start reading and ranking the parts on a daemon thread."""
        threading.Thread(target=self._read, name="technic-plan", daemon=True).start()

    def stop(self) -> None:
        """Stop reading after the part being read; safe to call twice."""
        self._stopped = True

    # --- the reading thread ----------------------------------------------------------------

    def _read(self) -> None:
        parts = plan_parts(self.source)
        try:
            for part in parts:
                if self._stopped:
                    break
                self._publish(self.add(part))
            if not self._stopped:
                self.add_unseen()
                self._complete = True
                self._publish(len(self._ranked) < self._known_count)
        except Exception as exc:  # noqa: BLE001 - handed to the scanner, which raises it
            self.error = exc
        finally:
            parts.close()
            with self._lock:
                self._done = True
            self._wake()

    def add(self, part: pd.DataFrame) -> bool:
        """Take in one part; return whether the ranking is due (enough news, or starving).

        Raises
        ------
        ValueError
            If the part lacks any of :data:`~technic_panel.data.base.PLAN_COLUMNS`.
        """
        missing = [c for c in PLAN_COLUMNS if c not in part.columns]
        if missing:
            raise ValueError(f"{self.source!r}: a plan part lacks the columns {missing}; "
                             f"every part needs {list(PLAN_COLUMNS)}")
        part = part[self._first_sight(part["symbol"].tolist())]
        self._snapshots.append(part.loc[:, list(SNAPSHOT_COLUMNS)])
        if self._requested is not None:
            requested = self._requested
            part = part[np.array([s in requested for s in part["symbol"]], dtype=bool)]
        keep = self.screen.keep(part)
        self._screened += int((~keep).sum())
        kept = part[keep]
        self._add_known(kept["symbol"].tolist(), _meta_rows(kept))
        ranked = len(self._ranked)
        return not ranked or self._hungry or len(self.known) >= _RERANK_GROWTH * ranked

    def _first_sight(self, symbols: list[str]) -> np.ndarray:
        """Return which of ``symbols`` no earlier row had (marking them seen)."""
        seen, fresh = self._seen, np.zeros(len(symbols), dtype=bool)
        for i, symbol in enumerate(symbols):
            if symbol not in seen:
                seen.add(symbol)
                fresh[i] = True
        return fresh

    def add_unseen(self) -> None:
        """Add the requested symbols no part held: scanned last, so their failure shows."""
        if self._requested is not None:
            unseen = [s for s in self._requested if s not in self._seen]
            self._seen.update(unseen)
            self._add_known(unseen, [(None,) * len(META_FIELDS)] * len(unseen))

    def _add_known(self, symbols: list[str], meta: list[tuple]) -> None:
        self._meta.update(zip(symbols, meta, strict=True))
        self.known.extend(symbols)
        if self._requested is not None and symbols:
            self.known.sort(key=self._requested.__getitem__)
        self._known_count = len(self.known)

    def seen_snapshot(self) -> pd.DataFrame:
        """Return the snapshot rows of every symbol seen so far (kept or screened out)."""
        if len(self._snapshots) > 1:
            self._snapshots = [pd.concat(self._snapshots, ignore_index=True)]
        return self._snapshots[0] if self._snapshots else pd.DataFrame(
            columns=list(SNAPSHOT_COLUMNS))

    def _publish(self, due: bool) -> None:
        if not due:
            return
        order = prioritize(self.known, self.seen_snapshot(), self.previous_ratings,
                           batch_size=self.batch_size)
        symbols = order["symbol"].tolist()
        tiers = dict(zip(symbols, order["priority_tier"].tolist(), strict=True))
        scores = dict(zip(symbols, order["priority_score"].tolist(), strict=True))
        with self._lock:
            self._version += 1
            self._ranked, self._tiers, self._scores = symbols, tiers, scores
            self._hungry = False
        self._wake()

    # --- the scanner's thread --------------------------------------------------------------

    def take(self, count: int) -> list[str]:
        """Return up to ``count`` of the best known symbols not taken yet (best first).

        Empty when none is known yet; the plan then ranks again at its next part.
        """
        with self._lock:
            if self._version != self._taken_version:
                self._taken_version = self._version
                ranked, self._tiers_now, self._scores_now = self._ranked, self._tiers, self._scores
                self._pending = [s for s in reversed(ranked) if s not in self._submitted]
            if not self._pending:
                self._hungry = True
        chunk = [self._pending.pop() for _ in range(min(count, len(self._pending)))]
        for symbol in chunk:
            batch = len(self._submitted) // self.batch_size + 1
            self._submitted[symbol] = (self._scores_now[symbol], self._tiers_now[symbol], batch)
        return chunk

    def fields(self, symbol: str) -> dict[str, Any]:
        """Return a taken symbol's metadata, ``priority_tier`` and ``batch_number``."""
        _, tier, batch = self._submitted[symbol]
        fields = dict(zip(META_FIELDS, self._meta[symbol], strict=True))
        fields["priority_tier"], fields["batch_number"] = tier, batch
        return fields

    def submissions(self) -> pd.DataFrame:
        """Return the symbols taken so far, in order, with their score, tier and batch."""
        rows = [(s, *values) for s, values in self._submitted.items()]
        return pd.DataFrame(rows, columns=["symbol", "priority_score", "priority_tier",
                                           "batch_number"])


def _meta_rows(kept: pd.DataFrame) -> list[tuple]:
    """Return each row's :data:`META_FIELDS` as a tuple of finite values or None."""
    columns = []
    for name in META_FIELDS:
        column = kept[name]
        if pd.api.types.is_float_dtype(column.dtype):
            values = column.to_numpy(dtype=float).tolist()
            columns.append([v if math.isfinite(v) else None for v in values])
        else:
            columns.append(column.astype(object).where(column.notna(), None).tolist())
    return list(zip(*columns, strict=True))

