"""The Scanner's streaming contract, run unchanged on the thread, process and Dask executors.

One test class, :class:`ScannerContract`, holds every contract test; its
subclasses only set ``executor`` (tornado ``queues_test.py`` style). Sources
shipped to workers live in ``scan_helpers`` (see its docstring for why that
module, and not this one, is what process and Dask workers import).
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from helpers import wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scan_helpers import DelayedSource

from technic_panel.data import DataError, SyntheticSource
from technic_panel.engine.executors import ScanExecutor, close_shared_workers
from technic_panel.engine.prioritize import TIER_SHARES
from technic_panel.engine.scanner import ScanEvent, Scanner, ScanSummary
from technic_panel.vocabulary import SIGNALS

HAVE_DISTRIBUTED = importlib.util.find_spec("distributed") is not None
WORKERS = 2
UNIVERSE = 300
SEED = 7
CONTRACT_FIELDS = (
    "symbol", "signal", "tech_rating", "alpha_score", "priority_tier", "batch_number",
    "position", "total_processed", "total_remaining",
)


def synthetic(**kwargs) -> SyntheticSource:
    """The small deterministic universe every test scans unless it needs another."""
    kwargs.setdefault("symbols", UNIVERSE)
    return SyntheticSource(seed=SEED, **kwargs)


def one_part(source: SyntheticSource) -> DelayedSource:
    """``source`` planned in one part (a wrapper is no PlannableSource): plan() is the order."""
    return DelayedSource(source, slow=(), delay=0.0)


def first_window(executor: ScanExecutor) -> int:
    """Symbols in the chunks submitted before the first completion, by the documented rule.

    Chunks start at one symbol and double up to ``chunk_limit``; at most
    ``2 * workers`` are in flight.
    """
    sizes, size = [], 1
    for _ in range(2 * executor.workers):
        sizes.append(size)
        size = min(2 * size, executor.chunk_limit)
    return sum(sizes)


def stays(predicate: Callable[[], object], duration: float, interval: float = 0.005) -> None:
    """Poll ``predicate`` for ``duration`` s and fail the test as soon as it is false."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert predicate(), f"condition broken within {duration} s: {predicate}"
        time.sleep(interval)


class Recorder:
    """An ``on_event`` that keeps every event and the monotonic time it arrived.

    ``hook(event, recorder)`` runs after recording, on the scanning thread.
    """

    def __init__(self, hook: Callable[[ScanEvent, Recorder], None] | None = None) -> None:
        self.hook = hook
        self._lock = threading.Lock()
        self._events: list[ScanEvent] = []
        self._times: list[float] = []

    def __call__(self, event: ScanEvent) -> None:
        with self._lock:
            self._times.append(time.monotonic())
            self._events.append(event)
        if self.hook is not None:
            self.hook(event, self)

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    @property
    def events(self) -> list[ScanEvent]:
        with self._lock:
            return list(self._events)

    @property
    def times(self) -> list[float]:
        with self._lock:
            return list(self._times)

    @property
    def symbols(self) -> list[str]:
        return [event.symbol for event in self.events]

    def of_kind(self, kind: str) -> list[ScanEvent]:
        return [event for event in self.events if event.kind == kind]


class BackgroundScan:
    """Run ``scanner`` on its own thread so the test thread can stop or pause it."""

    def __init__(self, scanner: Scanner, recorder: Recorder) -> None:
        self.summary: ScanSummary | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(scanner, recorder),
                                        name="test-background-scan", daemon=True)
        self._thread.start()

    def _run(self, scanner: Scanner, recorder: Recorder) -> None:
        try:
            self.summary = scanner.run(recorder)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test thread by join()
            self.error = exc

    def join(self, timeout: float) -> ScanSummary:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"Scanner.run did not return within {timeout} s"
        if self.error is not None:
            raise self.error
        return self.summary


@pytest.fixture(scope="module", autouse=True)
def shared_workers():
    """Shut the shared process pool and LocalCluster down once this module is done.

    Module scope, not session: the two cores are free again for later modules.
    """
    yield
    close_shared_workers()


@pytest.fixture(scope="module")
def reference() -> dict[str, dict]:
    """Every result's data, symbol -> fields, from one scan on the thread executor."""
    recorder = Recorder()
    Scanner(synthetic(), executor="thread", workers=WORKERS).run(recorder)
    return {event.symbol: event.data for event in recorder.of_kind("result")}


class ScannerContract:
    """What every executor must do; subclasses choose it with ``executor``."""

    executor = "thread"

    def scanner(self, source=None, **kwargs) -> Scanner:
        return Scanner(source if source is not None else synthetic(),
                       executor=self.executor, workers=WORKERS, **kwargs)

    def scan(self, source=None, hook=None, **kwargs) -> tuple[Scanner, Recorder, ScanSummary]:
        scanner = self.scanner(source, **kwargs)
        recorder = Recorder(hook)
        return scanner, recorder, scanner.run(recorder)

    def test_every_symbol_exactly_once(self):
        scanner, recorder, summary = self.scan()
        universe = synthetic().universe()["symbol"].tolist()
        counts = Counter(recorder.symbols)
        assert set(counts) == set(universe)
        assert set(counts.values()) == {1}
        assert summary.status == "completed"
        assert summary.processed == summary.total == scanner.total == UNIVERSE
        assert summary.results == len(recorder.of_kind("result")) == UNIVERSE
        assert summary.errors == 0

    def test_each_chunk_is_emitted_inside_one_around_chunk_context(self):
        blocks: list[list[str]] = []
        inside: list[str] | None = None

        @contextlib.contextmanager
        def around_chunk():
            nonlocal inside
            inside = []
            yield
            blocks.append(inside)
            inside = None

        def on_event(event: ScanEvent) -> None:
            assert inside is not None, f"{event.symbol} emitted outside around_chunk"
            inside.append(event.symbol)

        scanner = self.scanner()
        scanner.run(on_event, around_chunk=around_chunk)
        sizes = [len(block) for block in blocks]
        assert sum(sizes) == UNIVERSE and len(blocks) < UNIVERSE
        assert max(sizes) <= scanner.executor.chunk_limit

    def test_emits_in_completion_order_not_submission_order(self):
        plan = self.scanner().plan()["symbol"].tolist()
        slow = plan[0]
        # 2 s, not less: on a loaded machine a Dask worker's first chunks (imports, the
        # universe's factors) took longer than 0.8 s, so nothing could overtake.
        source = DelayedSource(synthetic(), slow=[slow], delay=2.0)
        _, recorder, summary = self.scan(source)
        order = recorder.symbols
        assert summary.status == "completed"
        assert sorted(order) == sorted(plan)
        overtakers = order[:order.index(slow)]
        assert overtakers, f"{slow}, planned first and slow, was still emitted first"
        # Not only its first-window neighbours: chunks submitted after it overtook it too.
        window = first_window(self.scanner().executor)
        assert max(plan.index(symbol) for symbol in overtakers) >= window

    def test_stop_from_another_thread(self):
        scanner = self.scanner(synthetic(latency_ms=10))
        recorder = Recorder()
        background = BackgroundScan(scanner, recorder)
        wait_until(lambda: len(recorder) >= 20, timeout=30)
        called = time.monotonic()
        scanner.stop()
        returned = time.monotonic()
        emitted = len(recorder)
        assert returned - called < 2.0
        summary = background.join(timeout=5)
        assert time.monotonic() - returned < 3.0
        assert summary.status == "stopped"
        assert len(recorder) == emitted, "on_event was called after stop() returned"
        assert max(recorder.times) <= returned
        assert summary.processed == emitted < summary.total == UNIVERSE
        scanner.stop()  # safe twice, and after run returned

    def test_stop_from_another_thread_does_not_wait_for_the_rest_of_the_chunk(self):
        scanner = self.scanner(one_part(synthetic()))
        plan = scanner.plan()["symbol"].tolist()
        # Chunks are [0], [1, 2], [3, 4, 5, 6], ...; outcomes keep their chunk's order.
        trigger, slow = plan[3], set(plan[4:7])
        requested = threading.Event()
        took: list[float] = []

        def slow_consumer(event: ScanEvent, recorder: Recorder) -> None:
            if event.symbol == trigger:
                requested.set()
            elif event.symbol in slow:
                time.sleep(0.5)  # a consumer that is slow for these three events only

        def stopper() -> None:
            requested.wait(30)
            called = time.monotonic()
            scanner.stop()
            took.append(time.monotonic() - called)

        thread = threading.Thread(target=stopper, name="test-stopper", daemon=True)
        thread.start()
        recorder = Recorder(slow_consumer)
        summary = scanner.run(recorder)
        thread.join(5)
        assert summary.status == "stopped"
        # At most the on_event running when stop() was called completes; nothing after it.
        assert not {plan[5], plan[6]} & set(recorder.symbols), recorder.symbols[-5:]
        assert took and took[0] < 0.75

    def test_stop_while_paused(self):
        scanner = self.scanner()
        in_flight = first_window(scanner.executor)
        recorder = Recorder(lambda event, rec: len(rec) == 1 and scanner.pause())
        background = BackgroundScan(scanner, recorder)
        wait_until(lambda: len(recorder) >= in_flight, timeout=30)
        scanner.stop()
        summary = background.join(timeout=5)
        assert summary.status == "stopped"
        assert len(recorder) == summary.processed == in_flight

    def test_an_error_in_on_event_propagates_out_of_run(self):
        def fail_at_five(event: ScanEvent, recorder: Recorder) -> None:
            if len(recorder) == 5:
                raise KeyError("consumer bug")

        scanner = self.scanner()
        recorder = Recorder(fail_at_five)
        with pytest.raises(KeyError, match="consumer bug"):
            scanner.run(recorder)
        assert len(recorder) == 5

    def test_stop_from_on_event_after_ten_results(self):
        scanner = self.scanner()

        def stop_at_ten(event: ScanEvent, recorder: Recorder) -> None:
            if len(recorder.of_kind("result")) == 10:
                scanner.stop()

        recorder = Recorder(stop_at_ten)
        summary = scanner.run(recorder)
        assert [event.kind for event in recorder.events] == ["result"] * 10
        assert len(set(recorder.symbols)) == 10
        assert summary.status == "stopped"
        assert summary.results == summary.processed == 10
        assert scanner.stopped

    # One method, three executors: Hypothesis's example database is shared between them,
    # which is harmless here because every k is a valid input on every executor.
    @settings(max_examples=8, deadline=None,
              suppress_health_check=[HealthCheck.differing_executors])
    @given(k=st.integers(min_value=1, max_value=UNIVERSE - 1))
    def test_stop_after_any_number_of_events(self, k):
        scanner = self.scanner()
        recorder = Recorder(lambda event, rec: len(rec) == k and scanner.stop())
        summary = scanner.run(recorder)
        assert len(recorder) == len(set(recorder.symbols)) == summary.processed == k
        assert summary.status == "stopped"

    def test_pause_drains_in_flight_chunks_then_resume_completes(self):
        scanner = self.scanner()
        in_flight = first_window(scanner.executor)

        def pause_at_first(event: ScanEvent, recorder: Recorder) -> None:
            if len(recorder) == 1:
                scanner.pause()

        recorder = Recorder(pause_at_first)
        background = BackgroundScan(scanner, recorder)
        wait_until(lambda: len(recorder) >= in_flight, timeout=30)
        assert scanner.paused
        stays(lambda: len(recorder) == in_flight, 0.5)
        scanner.resume()
        summary = background.join(timeout=30)
        assert not scanner.paused
        assert summary.status == "completed"
        assert len(recorder) == summary.processed == UNIVERSE
        assert sorted(recorder.symbols) == sorted(synthetic().universe()["symbol"])

    def test_error_rate_makes_about_that_share_of_errors(self):
        source = synthetic(symbols=1000, error_rate=0.1)
        _, recorder, summary = self.scan(source)
        errors, results = recorder.of_kind("error"), recorder.of_kind("result")
        assert 60 <= len(errors) <= 140
        assert len(errors) + len(results) == summary.processed == 1000
        assert sorted(recorder.symbols) == sorted(source.universe()["symbol"])
        assert (summary.errors, summary.results) == (len(errors), len(results))
        for event in errors:
            assert event.data["symbol"] == event.symbol
            assert event.data["error"] == "data"
            assert event.symbol in event.data["message"]
            assert "injected by error_rate=0.1" in event.data["message"]
        # The failing symbols are exactly those whose bars the source refuses.
        for event in errors:
            with pytest.raises(DataError, match="injected"):
                source.bars(event.symbol)
        for event in results[:50]:
            source.bars(event.symbol)

    def test_same_seed_same_results(self, reference):
        def ratings(recorder: Recorder) -> dict[str, float]:
            return {event.symbol: event.data["tech_rating"] for event in recorder.of_kind("result")}

        first, second = ratings(self.scan()[1]), ratings(self.scan()[1])
        assert len(first) == UNIVERSE
        assert first == second
        assert first == {symbol: data["tech_rating"] for symbol, data in reference.items()}

    def test_filter_keeps_only_matching_results(self, reference):
        _, recorder, summary = self.scan(filter="rsi_14 < 40")
        results = recorder.of_kind("result")
        assert results and summary.filtered, "the filter should keep some and drop some"
        assert all(event.data["rsi_14"] < 40 for event in results)
        assert summary.filtered + summary.results + summary.errors == summary.processed
        assert summary.processed == UNIVERSE and summary.results == len(results)
        expected = {symbol for symbol, data in reference.items() if data["rsi_14"] < 40}
        assert {event.symbol for event in results} == expected
        assert [event.data["position"] for event in results] == list(range(1, len(results) + 1))

    def test_result_has_the_contract_fields(self):
        scanner = self.scanner()
        recorder = Recorder()
        scanner.run(recorder)
        plan = scanner.submissions().set_index("symbol")
        results = recorder.of_kind("result")
        for event in results:
            data = event.data
            assert set(CONTRACT_FIELDS) <= set(data), set(CONTRACT_FIELDS) - set(data)
            assert list(data)[:4] == ["symbol", "signal", "tech_rating", "alpha_score"]
            assert data["symbol"] == event.symbol
            assert data["signal"] in SIGNALS
            assert 0 <= data["tech_rating"] <= 100 and 0 <= data["alpha_score"] <= 1
            assert data["priority_tier"] == plan.loc[event.symbol, "priority_tier"]
            assert data["batch_number"] == plan.loc[event.symbol, "batch_number"]
            assert data["total_processed"] + data["total_remaining"] == UNIVERSE
        assert [event.data["position"] for event in results] == list(range(1, UNIVERSE + 1))
        processed = [event.data["total_processed"] for event in recorder.events]
        assert processed == list(range(1, UNIVERSE + 1))

    def test_first_event_comes_from_the_high_tier(self):
        scanner = self.scanner()
        recorder = Recorder()
        scanner.run(recorder)
        plan = scanner.submissions()["symbol"].tolist()
        first = recorder.events[0]
        assert first.data["priority_tier"] == "high"
        # It comes from the chunks submitted before anything completed, all high tier here.
        window = first_window(scanner.executor)
        assert window <= TIER_SHARES[0] * UNIVERSE
        assert plan.index(first.symbol) < window

    def test_a_scanner_runs_once(self):
        scanner, _, summary = self.scan()
        assert summary.status == "completed"
        with pytest.raises(RuntimeError, match="already called"):
            scanner.run(Recorder())

    def test_stop_before_run_emits_nothing(self):
        scanner = self.scanner()
        scanner.stop()
        recorder = Recorder()
        summary = scanner.run(recorder)
        assert len(recorder) == 0
        assert (summary.status, summary.processed, summary.total) == ("stopped", 0, UNIVERSE)


class TestThreadScanner(ScannerContract):
    executor = "thread"


class TestProcessScanner(ScannerContract):
    executor = "process"


@pytest.mark.dask
@pytest.mark.skipif(not HAVE_DISTRIBUTED,
                    reason="dask.distributed is not installed: pip install 'technic-panel[dask]'")
class TestDaskScanner(ScannerContract):
    executor = "dask"


@pytest.mark.parametrize("batch_size", [0, -3])
def test_a_batch_size_below_1_is_refused(batch_size: int):
    with pytest.raises(ValueError, match=f"Scanner.batch_size must be >= 1, not {batch_size}"):
        Scanner(synthetic(), batch_size=batch_size)


def test_a_scan_in_parts_gives_the_results_of_a_scan_in_one_part(reference):
    recorder = Recorder()
    Scanner(one_part(synthetic()), workers=WORKERS).run(recorder)
    assert {e.symbol: e.data["tech_rating"] for e in recorder.of_kind("result")} == {
        symbol: data["tech_rating"] for symbol, data in reference.items()}
    assert {e.symbol: e.data["sector"] for e in recorder.events} == {
        symbol: data["sector"] for symbol, data in reference.items()}


def test_unknown_executor_is_refused():
    with pytest.raises(ValueError, match="'bogus'"):
        Scanner(synthetic(), executor="bogus")


def test_unknown_symbol_becomes_an_error_event_scanned_last():
    known = synthetic().universe()["symbol"].tolist()[:5]
    recorder = Recorder()
    summary = Scanner(synthetic(), symbols=[*known, "NOSUCH"]).run(recorder)
    assert summary.status == "completed" and summary.total == 6
    errors = recorder.of_kind("error")
    assert [event.symbol for event in errors] == ["NOSUCH"]
    assert "NOSUCH" in errors[0].data["message"]
    assert {event.symbol for event in recorder.of_kind("result")} == set(known)


def test_screen_keeps_only_the_chosen_sectors_prices_and_liquidity():
    source = synthetic()
    universe = source.universe().set_index("symbol")
    closes = source.snapshot().set_index("symbol")["close"]
    floor = float(closes.median())
    liquidity = float(universe["avg_dollar_volume"].median())
    scanner = Scanner(source, sectors=["Energy", "Utilities"], min_price=floor,
                      min_dollar_volume=liquidity)
    planned = scanner.plan()["symbol"].tolist()
    expected = [s for s in universe.index
                if universe.at[s, "sector"] in ("Energy", "Utilities")
                and closes[s] >= floor and universe.at[s, "avg_dollar_volume"] >= liquidity]
    assert planned and sorted(planned) == sorted(expected)
    recorder = Recorder()
    summary = scanner.run(recorder)
    assert summary.total == len(expected)
    assert {e.data["sector"] for e in recorder.events} <= {"Energy", "Utilities"}


def test_no_screen_scans_the_whole_universe():
    assert len(Scanner(synthetic()).plan()) == UNIVERSE


def test_event_data_is_already_json_safe_even_with_unknown_metadata(tmp_path):
    import json

    from technic_panel.data import FileSource
    from technic_panel.streaming.jsonsafe import json_safe
    from technic_panel.vocabulary import SafeData

    source = synthetic()
    frame = source.history(source.universe()["symbol"][0])
    for name in ("AAA", "BBB"):
        frame.to_csv(tmp_path / f"{name}.csv")
    recorder = Recorder()
    Scanner(FileSource(tmp_path)).run(recorder)
    assert len(recorder.events) == 2
    for event in recorder.events:
        assert type(event.data) is SafeData
        assert event.data["market_cap"] is None  # unknown for files: None, never NaN
        assert json_safe(dict(event.data)) == event.data
        json.dumps(event.data, allow_nan=False)


def write_synthetic_csvs(folder, names) -> None:
    source = synthetic()
    for name, symbol in zip(names, source.universe()["symbol"], strict=False):
        source.history(symbol).to_csv(folder / f"{name}.csv")


@pytest.mark.parametrize("filter_text", [None, "tech_rating > 100"])
def test_a_result_breaking_the_contract_is_that_symbols_error_filter_or_not(tmp_path,
                                                                            filter_text):
    from technic_panel.data import FileSource
    from technic_panel.streaming.contract import validate_data

    write_synthetic_csvs(tmp_path, ["AAA", " ", "BBB"])  # " .csv": its symbol is ""
    recorder = Recorder()

    def contract(data: dict) -> None:  # what the streaming core passes as check_result
        validate_data("result", data)

    summary = Scanner(FileSource(tmp_path), filter=filter_text, check_result=contract).run(recorder)
    kept = 0 if filter_text else 2
    assert (summary.status, summary.processed, summary.results, summary.errors,
            summary.filtered) == ("completed", 3, kept, 1, 2 - kept)
    [error] = recorder.of_kind("error")
    assert error.symbol == ""
    assert error.data["error"] == "contract"
    assert error.data["message"] == ("the result for symbol '' breaks the message contract: "
                                     "message.data.symbol must be a non-empty string, not ''")
    assert error.data["total_processed"] + error.data["total_remaining"] == 3
    for event in recorder.of_kind("result"):
        validate_data("result", dict(event.data))
    assert [event.data["position"] for event in recorder.of_kind("result")] == list(
        range(1, kept + 1))


class InfiniteCapSource(SyntheticSource):
    """A source whose universe says a market cap is infinite (a provider's overflow)."""

    def universe(self):
        """Return the synthetic universe, with the first market caps infinite."""
        universe = super().universe()
        universe.loc[:1, "market_cap"] = [float("inf"), float("-inf")]
        return universe

    def plan_parts(self):
        """Yield the synthetic parts, the first two market caps infinite as in universe()."""
        parts = super().plan_parts()
        first = next(parts)
        first.loc[:1, "market_cap"] = [float("inf"), float("-inf")]
        yield first
        yield from parts


@pytest.mark.parametrize("planned", ["in parts", "in one part"])
def test_an_infinite_market_cap_reaches_the_event_as_none(planned):
    import json

    source = InfiniteCapSource(seed=SEED, symbols=10)
    infinite = source.universe()["symbol"][:2].tolist()
    recorder = Recorder()
    Scanner(source if planned == "in parts" else one_part(source)).run(recorder)
    assert len(recorder) == 10
    for event in recorder.events:
        assert (event.data["market_cap"] is None) == (event.symbol in infinite), event.data
        json.dumps(event.data, allow_nan=False)
