"""Progressive planning: the scan starts on the first part and re-ranks as parts arrive.

The sources here are small real PlannableSources built from synthetic bars whose later
parts wait on an Event, so "the first result arrives while the plan is incomplete" is
checked structurally (the part was not even read yet), never by timing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from helpers import wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_panel.data import DataError, SyntheticSource
from technic_panel.data.base import (
    PLAN_COLUMNS,
    SNAPSHOT_COLUMNS,
    UNIVERSE_COLUMNS,
    Bars,
    PlannableSource,
)
from technic_panel.engine.planner import Screen, full_plan, plan_parts
from technic_panel.engine.prioritize import TIER_SHARES, prioritize
from technic_panel.engine.scanner import ScanEvent, Scanner
from technic_panel.streaming.contract import validate_data
from technic_panel.vocabulary import PRIORITY_TIERS

SEED = 11


def synthetic_rows(n: int = 120) -> tuple[pd.DataFrame, SyntheticSource]:
    """Plan rows of ``n`` synthetic symbols, and their source."""
    source = SyntheticSource(n, seed=SEED)
    return pd.concat(list(source.plan_parts()), ignore_index=True), source


class RowsSource:
    """A DataSource over ``parts`` (frames of plan rows); bars come from ``bars_of``."""

    name = "rows"

    def __init__(self, parts: list[pd.DataFrame], bars_of: SyntheticSource) -> None:
        self.parts, self.bars_of = parts, bars_of

    def universe(self) -> pd.DataFrame:
        return pd.concat(self.parts, ignore_index=True).loc[:, list(UNIVERSE_COLUMNS)]

    def snapshot(self) -> pd.DataFrame:
        return pd.concat(self.parts, ignore_index=True).loc[:, list(SNAPSHOT_COLUMNS)]

    def bars(self, symbol: str) -> Bars:
        return self.bars_of.bars(symbol)

    def history(self, symbol: str) -> pd.DataFrame:
        return self.bars(symbol).to_frame()


class PartsSource(RowsSource):
    """A PlannableSource yielding its ``parts`` one by one.

    Before part ``k`` it waits for ``gates[k]`` (if any); at part ``k`` it raises
    ``failures[k]`` (if any). ``asked`` lists the parts the reader has asked for, so a
    test knows how far planning got.
    """

    name = "parts"

    def __init__(self, parts: list[pd.DataFrame], bars_of: SyntheticSource, *,
                 gates: dict[int, threading.Event] | None = None,
                 failures: dict[int, Exception] | None = None) -> None:
        super().__init__(parts, bars_of)
        self.gates, self.failures = gates or {}, failures or {}
        self.asked: list[int] = []

    def symbols(self) -> list[str]:
        return [s for part in self.parts for s in part["symbol"]]

    def plan_parts(self) -> Iterator[pd.DataFrame]:
        for k, part in enumerate(self.parts):
            self.asked.append(k)
            if k in self.gates:
                assert self.gates[k].wait(30), f"part {k} was never released"
            if k in self.failures:
                raise self.failures[k]
            yield part.copy()


def split(rows: pd.DataFrame, *sizes: int) -> list[pd.DataFrame]:
    """Cut ``rows`` into parts of ``sizes`` and a last part with the rest."""
    cuts = [0, *np.cumsum(sizes).tolist(), len(rows)]
    return [rows.iloc[a:b].reset_index(drop=True) for a, b in zip(cuts, cuts[1:], strict=False)]


class Recorder:
    """Keep every event; ``hook(event, recorder)`` runs after each, on the scanning thread."""

    def __init__(self, hook=None) -> None:
        self.events: list[ScanEvent] = []
        self.hook = hook

    def __call__(self, event: ScanEvent) -> None:
        self.events.append(event)
        if self.hook is not None:
            self.hook(event, self)


def run_in_thread(scanner: Scanner, recorder: Recorder) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def body() -> None:
        try:
            outcome["summary"] = scanner.run(recorder)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            outcome["error"] = exc

    thread = threading.Thread(target=body, name="test-planner-scan", daemon=True)
    thread.start()
    return thread, outcome


def test_a_synthetic_source_is_plannable():
    assert isinstance(SyntheticSource(10), PlannableSource)
    assert isinstance(PartsSource([], SyntheticSource(10)), PlannableSource)


def test_the_first_result_arrives_while_the_plan_is_incomplete():
    rows, bars = synthetic_rows(120)
    gate = threading.Event()
    source = PartsSource(split(rows, 20, 50), bars, gates={1: gate})
    seen_at_first: list = []

    def on_first(event: ScanEvent, recorder: Recorder) -> None:
        if len(recorder.events) == 1:
            seen_at_first.append((list(source.asked), gate.is_set(), event.data["total_remaining"]))
            gate.set()

    recorder = Recorder(on_first)
    summary = Scanner(source).run(recorder)
    asked, released, remaining = seen_at_first[0]
    assert not released, "the first result waited for the second part"
    assert recorder.events[0].symbol in set(rows["symbol"][:20])
    assert remaining == 119  # the listed count, before the other parts are read
    assert summary.status == "completed" and summary.processed == summary.total == 120
    assert sorted(e.symbol for e in recorder.events) == sorted(rows["symbol"])


def test_symbols_are_submitted_only_once_their_part_is_known():
    rows, bars = synthetic_rows(120)
    gates = {1: threading.Event(), 2: threading.Event()}
    source = PartsSource(split(rows, 10, 30), bars, gates=gates)
    parts = split(rows, 10, 30)

    def release_gradually(event: ScanEvent, recorder: Recorder) -> None:
        if len(recorder.events) == 10:  # every symbol of part 0 is done: part 1 is needed
            assert {e.symbol for e in recorder.events} == set(parts[0]["symbol"])
            gates[1].set()
        elif len(recorder.events) == 40:
            assert {e.symbol for e in recorder.events} == set(parts[0]["symbol"]) | set(
                parts[1]["symbol"])
            gates[2].set()

    recorder = Recorder(release_gradually)
    summary = Scanner(source, executor="thread", workers=1).run(recorder)
    assert summary.processed == 120 and gates[2].is_set()


def test_a_strong_symbol_of_a_later_part_overtakes_the_rest_of_the_first():
    rows, bars = synthetic_rows(200)
    ranked = prioritize(rows["symbol"], rows)["symbol"].tolist()
    best = ranked[0]
    first = rows[rows["symbol"] != best].iloc[:60]
    later = pd.concat([rows[rows["symbol"] == best], rows[rows["symbol"] != best].iloc[60:]])
    gates = {1: threading.Event(), 2: threading.Event()}
    source = PartsSource([first, later, later.iloc[:0]], bars, gates=gates)
    scanner = Scanner(source, executor="thread", workers=1)
    before: list[int] = []

    def on_first(event: ScanEvent, recorder: Recorder) -> None:
        if len(recorder.events) == 1:
            scanner.pause()
            before.append(len(scanner.submissions()))
            gates[1].set()
            wait_until(lambda: source.asked == [0, 1, 2], timeout=30)  # part 1 is ranked
            scanner.resume()
            gates[2].set()

    summary = scanner.run(Recorder(on_first))
    order = scanner.submissions()["symbol"].tolist()
    assert summary.processed == 200
    assert best not in order[:before[0]]
    assert order[before[0]] == best
    assert scanner.submissions().set_index("symbol").at[best, "priority_tier"] == "high"


def test_previous_ratings_are_respected_in_every_part():
    rows, bars = synthetic_rows(120)
    weakest = prioritize(rows["symbol"], rows)["symbol"].iloc[-1]
    ratings = pd.Series(np.linspace(20.0, 30.0, 120), index=rows["symbol"])
    ratings[weakest] = 99.0
    source = PartsSource(split(rows, 40, 40), bars)
    scanner = Scanner(source, previous_ratings=ratings)
    scanner.run(Recorder())
    order = scanner.submissions()["symbol"].tolist()
    part = {s: k for k, p in enumerate(split(rows, 40, 40)) for s in p["symbol"]}
    # Among its own part's symbols it comes first: a previous rating of 99 beats a snapshot.
    mates = [s for s in order if part[s] == part[weakest]]
    assert mates[0] == weakest


def test_each_part_is_screened():
    rows, bars = synthetic_rows(240)
    price = float(rows["close"].median())
    liquidity = float(rows["avg_dollar_volume"].quantile(0.3))
    sectors = ["Energy", "Financials", "Health Care", "Industrials"]
    unknown = rows.index[rows["sector"].isin(sectors)
                         & (rows["avg_dollar_volume"] >= liquidity)][0]
    rows.loc[unknown, "close"] = np.nan  # an unknown price stays in
    parts = split(rows, 30, 90)
    source = PartsSource(parts, bars)
    scanner = Scanner(source, sectors=sectors, min_price=price, min_dollar_volume=liquidity)
    recorder = Recorder()
    summary = scanner.run(recorder)
    keep = (rows["sector"].isin(sectors) & ~(rows["close"] < price)
            & ~(rows["avg_dollar_volume"] < liquidity))
    expected = set(rows.loc[keep, "symbol"])
    assert rows.at[unknown, "symbol"] in expected
    assert {e.symbol for e in recorder.events} == expected
    assert summary.total == summary.processed == len(expected)
    assert set(scanner.plan()["symbol"]) == expected
    for event in recorder.events:
        assert event.data["sector"] in sectors


def test_totals_only_shrink_and_end_exact_and_every_result_keeps_the_contract():
    rows, bars = synthetic_rows(240)
    parts = split(rows, 20, 40, 80)
    floor = float(rows["close"].quantile(0.4))
    gates = {k: threading.Event() for k in (1, 2, 3)}
    source = PartsSource(parts, bars, gates=gates)

    def release(event: ScanEvent, recorder: Recorder) -> None:
        for k in gates:
            if len(recorder.events) == 3 * k:
                gates[k].set()

    recorder = Recorder(release)
    summary = Scanner(source, min_price=floor, check_result=lambda d: validate_data(
        "result", d)).run(recorder)
    totals = [e.data["total_processed"] + e.data["total_remaining"] for e in recorder.events]
    assert all(e.data["total_remaining"] >= 0 for e in recorder.events)
    assert totals == sorted(totals, reverse=True), "total grew while planning"
    assert totals[0] == 240 - int((parts[0]["close"] < floor).sum())
    assert totals[-1] == summary.total == summary.processed == len(recorder.events)
    assert summary.total == int((~(rows["close"] < floor)).sum())
    assert [e.data["total_processed"] for e in recorder.events] == list(
        range(1, summary.total + 1))
    assert summary.errors == 0


def test_tiers_and_batches_are_well_formed():
    rows, bars = synthetic_rows(300)
    gate = threading.Event()
    parts = split(rows, 40, 100)
    source = PartsSource(parts, bars, gates={1: gate})
    scanner = Scanner(source, batch_size=7)
    recorder = Recorder(lambda event, rec: gate.set())
    scanner.run(recorder)
    submitted = scanner.submissions()
    assert len(submitted) == 300 and submitted["symbol"].is_unique
    assert submitted["batch_number"].tolist() == [i // 7 + 1 for i in range(300)]
    assert set(submitted["priority_tier"]) <= set(PRIORITY_TIERS)
    by_symbol = submitted.set_index("symbol")
    for event in recorder.events:
        assert event.data["priority_tier"] == by_symbol.at[event.symbol, "priority_tier"]
        assert event.data["batch_number"] == by_symbol.at[event.symbol, "batch_number"]
    # The first chunks were ranked among the first part alone: their tiers say so.
    first_ranking = prioritize(parts[0]["symbol"], parts[0]).set_index("symbol")
    head = submitted.iloc[:3]
    for symbol, tier in zip(head["symbol"], head["priority_tier"], strict=True):
        assert tier == first_ranking.at[symbol, "priority_tier"]
    assert head["priority_tier"].tolist() == ["high"] * 3
    assert int(np.ceil(TIER_SHARES[0] * 40)) >= 3


def test_stop_while_planning_ends_promptly():
    rows, bars = synthetic_rows(120)
    gate = threading.Event()  # never released while the scan runs
    source = PartsSource(split(rows, 10), bars, gates={1: gate})
    scanner = Scanner(source)
    recorder = Recorder()
    thread, outcome = run_in_thread(scanner, recorder)
    wait_until(lambda: len(recorder.events) == 10 and source.asked == [0, 1], timeout=30)
    called = time.monotonic()
    scanner.stop()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - called < 2.0
    summary = outcome["summary"]
    assert summary.status == "stopped" and summary.processed == 10
    assert summary.total == 120  # listed, none screened: the upper bound it had
    gate.set()


def test_stop_before_the_first_part_ends_promptly():
    rows, bars = synthetic_rows(40)
    gate = threading.Event()
    source = PartsSource(split(rows, 10), bars, gates={0: gate})
    scanner = Scanner(source)
    thread, outcome = run_in_thread(scanner, Recorder())
    wait_until(lambda: source.asked == [0], timeout=30)
    scanner.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert outcome["summary"].status == "stopped" and outcome["summary"].processed == 0
    gate.set()


@pytest.mark.parametrize("failing_part", [0, 1])
def test_a_failing_part_fails_the_scan_clearly(failing_part: int):
    rows, bars = synthetic_rows(60)
    failure = DataError("FileSource: prices.parquet row 7: close must be > 0")
    source = PartsSource(split(rows, 10), bars, failures={failing_part: failure})
    recorder = Recorder()
    thread, outcome = run_in_thread(Scanner(source), recorder)
    thread.join(30)
    assert not thread.is_alive(), "a failing plan hung the scan"
    assert outcome["error"] is failure
    assert len(recorder.events) <= 10 * failing_part


def test_a_part_without_the_plan_columns_fails_the_scan_naming_them():
    rows, bars = synthetic_rows(20)
    source = PartsSource([rows.drop(columns=["sector", "close"])], bars)
    with pytest.raises(ValueError, match=r"lacks the columns \['sector', 'close'\]"):
        Scanner(source).run(Recorder())


def test_a_failing_symbol_listing_fails_the_scan():
    class Unlisted(PartsSource):
        def symbols(self) -> list[str]:
            raise DataError("no such folder")

    rows, bars = synthetic_rows(20)
    with pytest.raises(DataError, match="no such folder"):
        Scanner(Unlisted([rows], bars)).run(Recorder())


def test_only_requested_symbols_are_scanned_and_unknown_ones_come_last():
    rows, bars = synthetic_rows(80)
    wanted = [*rows["symbol"][50:55], "NOSUCH", *rows["symbol"][3:6]]
    source = PartsSource(split(rows, 10, 30), bars)
    recorder = Recorder()
    scanner = Scanner(source, symbols=wanted)
    summary = scanner.run(recorder)
    assert summary.total == summary.processed == 9
    assert scanner.submissions()["symbol"].iloc[-1] == "NOSUCH"
    [error] = [e for e in recorder.events if e.kind == "error"]
    assert error.symbol == "NOSUCH" and error.data["sector"] is None
    assert scanner.plan()["symbol"].iloc[-1] == "NOSUCH"


def test_full_plan_is_the_old_plan_of_universe_and_snapshot():
    source = SyntheticSource(700, seed=SEED)
    screen = Screen(sectors=("Energy", "Utilities", "Financials"))
    universe, snapshot = source.universe(), source.snapshot()
    kept = universe.loc[universe["sector"].isin(screen.sectors), "symbol"]
    expected = prioritize(kept, snapshot, batch_size=9)
    pd.testing.assert_frame_equal(full_plan(source, screen, None, batch_size=9), expected)


def test_a_source_without_plan_parts_is_one_part_of_universe_and_snapshot():
    rows, bars = synthetic_rows(30)
    plain = RowsSource([rows], bars)
    assert not isinstance(plain, PlannableSource)
    [part] = list(plan_parts(plain))
    assert list(part.columns) == list(PLAN_COLUMNS)
    pd.testing.assert_frame_equal(part, rows.loc[:, list(PLAN_COLUMNS)])


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
       batch_size=st.integers(1, 20), min_price=st.sampled_from([0.0, 20.0, 60.0]))
def test_any_split_scans_each_kept_symbol_once(sizes, batch_size, min_price):
    rows, bars = synthetic_rows(120)
    source = PartsSource(split(rows, *sizes), bars)
    scanner = Scanner(source, batch_size=batch_size, min_price=min_price)
    recorder = Recorder()
    summary = scanner.run(recorder)
    expected = set(rows.loc[~(rows["close"] < min_price), "symbol"])
    assert sorted(e.symbol for e in recorder.events) == sorted(expected)
    assert summary.total == summary.processed == len(expected)
    assert scanner.submissions()["batch_number"].tolist() == [
        i // batch_size + 1 for i in range(len(expected))]
