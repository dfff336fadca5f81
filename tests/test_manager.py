"""StreamManager: scans by id, the message stream of each, outcomes, caps and clean-up."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from helpers import FakeClock, read_all, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

import technic_panel.streaming.manager as manager_module
import technic_panel.streaming.run as run_module
from technic_panel.config import ConfigError, ScanConfig, source_for
from technic_panel.data import DataError, SyntheticSource
from technic_panel.engine.scoring import Strategy
from technic_panel.streaming.contract import validate_message
from technic_panel.streaming.manager import (
    ScanRecord,
    StreamManager,
    TooManyScans,
    UnknownScan,
    default_manager,
)

SMALL = {"symbols": 30}
SLOW = {"symbols": 400, "latency_ms": 100}
"""About 1.5 s with 32 threads: long enough to act on a running scan, stopped at once."""


# --- helpers --------------------------------------------------------------------------------


class Gate:
    """Hold a manager's scan threads just before they build their data source.

    While held, a scan is running but has no Scanner yet; ``open()`` lets it go on.
    """

    def __init__(self, manager: StreamManager, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self._open = threading.Event()
        build = manager._source

        def gated(config: ScanConfig, policy=None):
            self.entered.set()
            assert self._open.wait(10), "the test never opened the gate"
            return build(config, policy)

        monkeypatch.setattr(manager, "_source", gated)

    def open(self) -> None:
        self._open.set()


class BrokenSource:
    """A data source whose universe cannot be read."""

    def universe(self):
        raise DataError("the provider is down")

    def snapshot(self):
        raise AssertionError("never reached")




def run(manager: StreamManager, settings_: dict) -> tuple[str, list[dict]]:
    """Start a scan and return its id and every message up to its final."""
    scan_id = manager.start_stream(settings_)
    return scan_id, read_all(manager.subscribe(scan_id))


def check_stream(messages: list[dict]) -> dict:
    """Assert the contract of one scan's stream; return the final's data."""
    for msg in messages:
        validate_message(msg)
    assert [msg["metadata"]["seq"] for msg in messages] == list(range(1, len(messages) + 1))
    assert [msg["type"] for msg in messages].count("final") == 1
    assert messages[-1]["type"] == "final"
    assert messages[-1]["metadata"]["is_final"] is True
    assert len({msg["metadata"]["scan_id"] for msg in messages}) == 1
    symbols = [msg["data"]["symbol"] for msg in messages if msg["type"] == "result"]
    assert len(symbols) == len(set(symbols)), "a symbol was sent twice"
    return messages[-1]["data"]


def of_type(messages: list[dict], type_: str) -> list[dict]:
    return [msg for msg in messages if msg["type"] == type_]


def scan_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate()
            if thread.name.startswith(("technic-scan", "technic-timeout"))]


@pytest.fixture
def make_manager(no_thread_leaks):
    """Build StreamManagers that are shut down after the test (then no thread may remain)."""
    managers: list[StreamManager] = []

    def make(**options) -> StreamManager:
        managers.append(StreamManager(**options))
        return managers[-1]

    yield make
    for manager in managers:
        manager.shutdown()


@pytest.fixture
def manager(make_manager) -> StreamManager:
    return make_manager()


# --- a completed scan -----------------------------------------------------------------------

def test_completed_scan_streams_every_result_then_one_final(manager):
    scan_id, messages = run(manager, {"symbols": 40})
    final = check_stream(messages)
    results = of_type(messages, "result")
    assert final["status"] == "completed"
    assert final["reason"] is None
    assert final["scan_id"] == scan_id
    assert final["processed"] == final["total"] == 40
    assert final["results"] == len(results) == 40
    assert final["errors"] == final["filtered"] == 0
    assert sum(final["signals"].values()) == 40
    for signal, count in final["signals"].items():
        assert count == sum(msg["data"]["signal"] == signal for msg in results)
    assert of_type(messages, "progress"), "at least the closing progress message"
    assert final["first_result_after"] >= 0
    record = manager.get(scan_id)
    assert record.status == "completed"
    assert not record.running
    assert record.summary == final


def test_start_accepts_a_config_object_and_a_strategy(manager):
    scan_id = manager.start_stream(ScanConfig(symbols=20, seed=7), strategy=Strategy())
    final = check_stream(read_all(manager.subscribe(scan_id)))
    assert final["status"] == "completed"
    assert manager.get(scan_id).config.seed == 7


def test_symbol_errors_become_error_messages_and_the_scan_goes_on(manager):
    _, messages = run(manager, {"symbols": 40, "error_rate": 0.5})
    final = check_stream(messages)
    errors = of_type(messages, "error")
    assert final["status"] == "completed"
    assert 0 < final["errors"] == len(errors) < 40
    assert final["results"] + final["errors"] == final["processed"] == 40
    assert all("error_rate" in msg["data"]["message"] for msg in errors)


def test_filtered_symbols_are_counted_not_sent(manager):
    _, messages = run(manager, {"symbols": 40, "filter": "signal == 'STRONG_BUY'"})
    final = check_stream(messages)
    results = of_type(messages, "result")
    assert {msg["data"]["signal"] for msg in results} <= {"STRONG_BUY"}
    assert final["filtered"] == 40 - len(results) > 0


def test_files_and_sample_sources_run(manager, tmp_path):
    SyntheticSource(3, seed=5).history(
        SyntheticSource(3, seed=5).universe()["symbol"][0]).to_csv(tmp_path / "ACME.csv")
    _, messages = run(manager, {"source": "files", "path": str(tmp_path)})
    assert check_stream(messages)["status"] == "completed"
    assert [msg["data"]["symbol"] for msg in of_type(messages, "result")] == ["ACME"]
    _, messages = run(manager, {"source": "sample"})
    final = check_stream(messages)
    assert final["status"] == "completed"
    assert {"AAPL", "IBM", "MSFT"} <= {msg["data"]["symbol"] for msg in of_type(messages, "result")}


def test_progress_messages_every_event_when_the_interval_is_zero(make_manager):
    manager = make_manager(progress_interval=0.0)
    _, messages = run(manager, SMALL)
    check_stream(messages)
    # one after each of the 30 results, one before the final
    assert len(of_type(messages, "progress")) == 31
    processed = [msg["data"]["processed"] for msg in of_type(messages, "progress")]
    assert processed == sorted(processed)
    assert processed[-1] == 30


def test_progress_messages_are_throttled_by_the_interval(make_manager):
    manager = make_manager(progress_interval=60.0)
    _, messages = run(manager, SMALL)
    check_stream(messages)
    assert len(of_type(messages, "progress")) == 2  # after the first result; before the final


# --- subscribers ----------------------------------------------------------------------------

def test_late_subscribers_and_since_get_exactly_the_rest(manager):
    scan_id, messages = run(manager, SMALL)
    check_stream(messages)
    assert read_all(manager.subscribe(scan_id)) == messages
    for since in (1, len(messages) // 2, len(messages) - 1, len(messages)):
        assert read_all(manager.subscribe(scan_id, since=since)) == messages[since:]
    with pytest.raises(ValueError, match="since must be an integer"):
        manager.subscribe(scan_id, since=len(messages) + 1)


def test_a_subscriber_joining_mid_scan_sees_the_same_stream(manager):
    scan_id = manager.start_stream({"symbols": 150, "latency_ms": 20})
    early = manager.subscribe(scan_id)
    first = early.get_batch(timeout=10)
    assert first
    late = manager.subscribe(scan_id)  # since=0: the replay, then live
    messages = first + read_all(early)
    check_stream(messages)
    assert read_all(late) == messages


# --- get, list, repr ------------------------------------------------------------------------

def test_get_list_and_repr_describe_the_scans(manager):
    assert repr(manager) == "StreamManager(scans=0, running=0, max_concurrent=4)"
    first, _ = run(manager, SMALL)
    second, messages = run(manager, {"symbols": 20, "seed": 3})
    record = manager.get(second)
    assert isinstance(record, ScanRecord)
    assert record.scan_id == second
    listed = manager.list()
    assert [item["scan_id"] for item in listed] == [second, first]  # newest first
    item = listed[0]
    assert item["status"] == "completed"
    assert item["reason"] is None
    assert item["paused"] is False
    assert item["config"] == ScanConfig(symbols=20, seed=3).to_dict()
    assert item["progress"]["processed"] == item["progress"]["total"] == 20
    assert item["last_seq"] == len(messages)
    assert item["subscribers"] == 0
    assert repr(manager) == "StreamManager(scans=2, running=0, max_concurrent=4)"


def test_unknown_scan_ids_raise_unknown_scan(manager):
    for call in (manager.get, manager.subscribe, manager.stop_stream, manager.pause_stream):
        with pytest.raises(UnknownScan) as info:
            call("scan_nope")
        assert isinstance(info.value, KeyError)
        assert str(info.value) == ("no scan 'scan_nope' (never started, started by another "
                                   "client, or cleaned up 300 s after its end or last "
                                   "activity)")


def test_manager_options_are_checked():
    with pytest.raises(ValueError, match="StreamManager.max_concurrent must be >= 1, not 0"):
        StreamManager(max_concurrent=0)
    with pytest.raises(ValueError, match="StreamManager.inactivity_timeout must be > 0, not -1"):
        StreamManager(inactivity_timeout=-1)


# --- stop, pause ----------------------------------------------------------------------------

def test_stop_is_idempotent_and_ends_the_stream_as_stopped(manager):
    scan_id = manager.start_stream(SLOW)
    subscription = manager.subscribe(scan_id)
    first = subscription.get(timeout=10)
    assert first is not None
    record = manager.stop_stream(scan_id)
    assert manager.stop_stream(scan_id) is record
    messages = [first, *read_all(subscription)]
    final = check_stream(messages)
    assert (final["status"], final["reason"]) == ("stopped", "manual")
    assert final["processed"] < final["total"] == 400
    last_seq = record.streamer.last_seq
    assert manager.stop_stream(scan_id) is record  # also after the end
    assert record.streamer.last_seq == last_seq
    assert (record.status, record.reason) == ("stopped", "manual")


def test_stop_after_completion_keeps_the_outcome(manager):
    scan_id, messages = run(manager, SMALL)
    record = manager.stop_stream(scan_id)
    assert (record.status, record.reason) == ("completed", None)
    assert record.streamer.last_seq == len(messages)


def test_stop_before_the_scanner_exists_still_stops_the_scan(manager, monkeypatch):
    gate = Gate(manager, monkeypatch)
    scan_id = manager.start_stream(SMALL)
    assert gate.entered.wait(10)
    record = manager.stop_stream(scan_id)
    assert record.running
    assert manager.list()[0]["progress"]["total"] == 0  # no scanner yet
    gate.open()
    final = check_stream(read_all(manager.subscribe(scan_id)))
    assert (final["status"], final["reason"]) == ("stopped", "manual")
    assert final["processed"] == 0


def test_a_timeout_before_the_scanner_exists_still_ends_the_scan(manager, monkeypatch):
    gate = Gate(manager, monkeypatch)
    scan_id = manager.start_stream({**SMALL, "timeout": 0.05})
    assert gate.entered.wait(10)
    record = manager.get(scan_id)
    wait_until(lambda: record.criteria.reason == "timeout")
    gate.open()
    final = check_stream(read_all(manager.subscribe(scan_id)))
    assert (final["status"], final["reason"]) == ("terminated", "timeout")
    assert final["processed"] == 0


def test_pause_holds_new_work_and_resume_finishes(manager):
    scan_id = manager.start_stream({"symbols": 200, "latency_ms": 20})
    subscription = manager.subscribe(scan_id)
    assert subscription.get(timeout=10) is not None
    record = manager.pause_stream(scan_id)
    assert record.paused
    assert manager.list()[0]["paused"] is True
    processed = wait_until(lambda: _settled(record), timeout=10)
    assert processed < 200
    assert record.scanner.processed == processed
    assert manager.resume_stream(scan_id) is record
    assert not record.paused
    read_all(subscription)
    assert record.status == "completed"
    assert manager.pause_stream(scan_id).paused is False  # nothing to pause once ended
    manager.resume_stream(scan_id)


def _settled(record: ScanRecord) -> int | None:
    """Return processed once it stays the same for 0.3 s (work in flight has arrived)."""
    before = record.scanner.processed
    time.sleep(0.3)
    return before if record.scanner.processed == before else None


def test_pause_before_the_scanner_exists_applies_when_it_starts(manager, monkeypatch):
    gate = Gate(manager, monkeypatch)
    scan_id = manager.start_stream(SMALL)
    assert gate.entered.wait(10)
    record = manager.pause_stream(scan_id)
    assert record.paused and record.scanner is None
    gate.open()
    wait_until(lambda: record.scanner is not None and record.scanner.paused)
    assert record.streamer.last_seq == 0  # nothing was submitted
    manager.resume_stream(scan_id)
    final = check_stream(read_all(manager.subscribe(scan_id)))
    assert final["status"] == "completed"


# --- early termination ----------------------------------------------------------------------

def test_max_signals_terminates_after_that_many_quality_signals(manager):
    quality = ["STRONG_BUY", "BUY"]
    _, messages = run(manager, {"symbols": 300, "max_signals": 3, "quality_signals": quality})
    final = check_stream(messages)
    assert (final["status"], final["reason"]) == ("terminated", "max_signals")
    assert final["quality_signals"] == 3
    sent = [msg for msg in of_type(messages, "result") if msg["data"]["signal"] in quality]
    assert len(sent) == 3
    assert final["processed"] < final["total"]


def test_max_signals_respects_min_rating(manager):
    settings_ = {"symbols": 300, "max_signals": 2, "min_rating": 75.0}
    _, messages = run(manager, settings_)
    final = check_stream(messages)
    assert final["reason"] == "max_signals"
    strong = [msg["data"] for msg in of_type(messages, "result")
              if msg["data"]["signal"] == "STRONG_BUY" and msg["data"]["tech_rating"] >= 75.0]
    assert len(strong) == 2


def test_max_fraction_terminates_at_that_share(manager):
    _, messages = run(manager, {"symbols": 200, "max_fraction": 0.25})
    final = check_stream(messages)
    assert (final["status"], final["reason"]) == ("terminated", "max_fraction")
    assert final["processed"] == 50
    assert len(of_type(messages, "result")) == 50


def test_max_fraction_counts_errors_too(manager):
    _, messages = run(manager, {"symbols": 100, "max_fraction": 0.5, "error_rate": 1.0})
    final = check_stream(messages)
    assert (final["status"], final["reason"]) == ("terminated", "max_fraction")
    assert final["errors"] == final["processed"] == 50


def test_timeout_terminates_a_slow_scan(manager):
    started = time.monotonic()
    _, messages = run(manager, {**SLOW, "timeout": 0.3})
    elapsed = time.monotonic() - started
    final = check_stream(messages)
    assert (final["status"], final["reason"]) == ("terminated", "timeout")
    assert final["processed"] < final["total"]
    assert 0.3 <= elapsed < 5


# --- failure --------------------------------------------------------------------------------

def test_a_source_that_fails_ends_with_an_error_then_final_failed(manager, monkeypatch):
    monkeypatch.setattr(manager, "_source", lambda config, policy=None: BrokenSource())
    scan_id, messages = run(manager, SMALL)
    final = check_stream(messages)
    assert (final["status"], final["reason"]) == ("failed", None)
    assert [msg["type"] for msg in messages] == ["error", "progress", "final"]
    assert messages[0]["data"] == {"error": "scan",
                                   "message": "DataError: the provider is down"}
    assert final["error"] == "DataError: the provider is down"
    record = manager.get(scan_id)
    assert (record.status, record.error) == ("failed", "DataError: the provider is down")
    # a failed scan leaves no ratings: the next scan is planned without any
    assert manager._ratings_for(ScanConfig(**SMALL)) is None


def test_a_files_folder_removed_after_validation_fails_the_scan(manager, monkeypatch, tmp_path):
    folder = tmp_path / "prices"
    folder.mkdir()
    source = SyntheticSource(3, seed=5)
    source.history(source.universe()["symbol"][0]).to_csv(folder / "ACME.csv")
    gate = Gate(manager, monkeypatch)
    scan_id = manager.start_stream({"source": "files", "path": str(folder)})
    assert gate.entered.wait(10)
    shutil.rmtree(folder)
    gate.open()
    messages = read_all(manager.subscribe(scan_id))
    final = check_stream(messages)
    assert final["status"] == "failed"
    error = of_type(messages, "error")[-1]["data"]
    assert error["error"] == "scan"
    assert str(folder) in error["message"]


# --- caps and validation --------------------------------------------------------------------

def test_one_scan_too_many_raises_too_many_scans(make_manager):
    manager = make_manager(max_concurrent=1)
    running = manager.start_stream(SLOW)
    before = scan_threads()
    with pytest.raises(TooManyScans, match=r"1 scans are held \(1 running.*max_concurrent=1"):
        manager.start_stream(SMALL)
    assert len(manager.list()) == 1
    assert {t for t in scan_threads() if t.name.startswith("technic-scan-")} <= set(before)
    manager.stop_stream(running)
    read_all(manager.subscribe(running))
    _, messages = run(manager, SMALL)  # room again
    assert check_stream(messages)["status"] == "completed"


@pytest.mark.parametrize(("settings_", "field", "words"), [
    ({"max_fraction": 1.5}, "max_fraction", "must be at most 1, not 1.5"),
    ({"symbols": 0}, "symbols", "must be at least 1, not 0"),
    ({"bogus": 1}, "bogus", "has no setting 'bogus'"),
    ({"filter": "nope < 3"}, "filter", "unknown column 'nope'"),
    ({"executor": "gpu"}, "executor", "'gpu'"),
    ({"source": "files"}, "path", "path is required"),
    ({"scheduler": "tcp://x:1"}, "scheduler", "needs executor='dask'"),
])
def test_invalid_settings_raise_config_error_before_anything_starts(manager, settings_, field,
                                                                     words):
    before = set(threading.enumerate())
    with pytest.raises(ConfigError, match=words) as info:
        manager.start_stream(settings_)
    assert info.value.field == field
    assert set(threading.enumerate()) == before
    assert manager.list() == []


def test_an_invalid_config_object_is_refused_too(manager):
    with pytest.raises(ConfigError) as info:
        manager.start_stream(ScanConfig(source="files", path="/no/such/folder"))
    assert info.value.field == "path"
    assert manager.list() == []


def test_empty_quality_signals_are_a_config_error(manager):
    with pytest.raises(ConfigError) as info:
        manager.start_stream({"max_signals": 3, "quality_signals": []})
    assert info.value.field == "quality_signals"


# --- sources --------------------------------------------------------------------------------

def test_source_for_emulates_the_provider_unless_told_not_to():
    config = ScanConfig(symbols=30, seed=3, latency_ms=40, error_rate=0.5)
    scanned, charted = source_for(config), source_for(config, emulate_provider=False)
    assert (scanned.latency_ms, scanned.error_rate) == (40, 0.5)
    assert (charted.latency_ms, charted.error_rate) == (0, 0)
    symbol = charted.universe()["symbol"].iloc[0]
    assert charted.history(symbol).equals(SyntheticSource(30, seed=3).history(symbol))
    with pytest.raises(ConfigError, match="path is required"):
        source_for(ScanConfig(source="files"))


# --- previous ratings -----------------------------------------------------------------------

@pytest.fixture
def handed(monkeypatch) -> list:
    """Record the previous_ratings every Scanner the manager builds is handed."""
    handed: list = []
    real_scanner = run_module.Scanner

    def spy(*args, **kwargs):
        handed.append(kwargs["previous_ratings"])
        return real_scanner(*args, **kwargs)

    monkeypatch.setattr(run_module, "Scanner", spy)
    return handed


def test_previous_ratings_feed_the_next_scan_of_the_same_source(manager, handed):
    _, first = run(manager, {"symbols": 40, "seed": 1})
    ratings = {msg["data"]["symbol"]: msg["data"]["tech_rating"]
               for msg in of_type(first, "result")}
    run(manager, {"symbols": 40, "seed": 1, "max_fraction": 0.5})
    run(manager, {"symbols": 40, "seed": 2})
    assert handed[0] is None
    assert handed[1].to_dict() == ratings
    assert handed[2] is None  # another universe
    run(manager, {"symbols": 40, "seed": 1})
    assert handed[3].to_dict() == ratings  # the partial scan was merged in, not put instead


def test_previous_ratings_are_kept_for_the_latest_eight_sources(manager, handed):
    for seed in range(9):
        run(manager, {"symbols": 5, "seed": seed})
    run(manager, {"symbols": 5, "seed": 8})
    run(manager, {"symbols": 5, "seed": 0})
    assert handed[:9] == [None] * 9
    assert len(handed[9]) == 5  # seed 8 is remembered
    assert handed[10] is None  # seed 0 was the oldest of nine: forgotten


# --- clean-up -------------------------------------------------------------------------------

def test_finished_unwatched_scans_are_removed_after_the_inactivity_timeout(make_manager):
    clock = FakeClock()
    manager = make_manager(inactivity_timeout=10, clock=clock)
    scan_id, _ = run(manager, SMALL)
    clock.advance(9.9)
    assert [item["scan_id"] for item in manager.list()] == [scan_id]
    clock.advance(0.1)
    assert manager.list() == []
    with pytest.raises(UnknownScan, match=r"no scan '.*' \(never started, started by another "
                                          r"client, or cleaned up 10 s after its end"):
        manager.get(scan_id)


def test_any_call_on_a_running_scan_counts_as_activity(make_manager):
    clock = FakeClock()
    manager = make_manager(inactivity_timeout=10, clock=clock)
    scan_id = manager.start_stream(SLOW)
    for _ in range(3):
        clock.advance(8)
        assert manager.get(scan_id).running
    clock.advance(8)
    assert manager.get(scan_id).reason is None  # not abandoned
    manager.stop_stream(scan_id)


def test_polling_a_finished_scan_does_not_keep_it(make_manager):
    clock = FakeClock()
    manager = make_manager(inactivity_timeout=10, clock=clock)
    scan_id, _ = run(manager, SMALL)
    for _ in range(3):
        clock.advance(3)
        manager.get(scan_id)
    clock.advance(1)
    with pytest.raises(UnknownScan):
        manager.get(scan_id)


def test_a_watched_scan_is_kept_until_its_subscriber_leaves(make_manager):
    clock = FakeClock()
    manager = make_manager(inactivity_timeout=10, clock=clock)
    scan_id = manager.start_stream(SMALL)
    subscription = manager.subscribe(scan_id)
    wait_until(lambda: manager.get(scan_id).streamer.finished)
    clock.advance(100)
    assert len(manager.list()) == 1
    assert manager.list()[0]["subscribers"] == 1
    subscription.close()
    assert manager.list() == []


def test_an_abandoned_running_scan_is_stopped_as_inactive_then_removed(make_manager):
    clock = FakeClock()
    manager = make_manager(inactivity_timeout=10, clock=clock)
    scan_id = manager.start_stream(SLOW)
    record = manager.get(scan_id)
    wait_until(lambda: record.streamer.last_seq > 0)  # reading it is no activity
    clock.advance(10)
    assert len(manager.list()) == 1  # stopped, not yet removed
    wait_until(lambda: not record.running)
    final = check_stream(record.streamer.messages_since(0))
    assert (final["status"], final["reason"]) == ("stopped", "inactive")
    assert final["processed"] < final["total"]
    assert (record.status, record.reason) == ("stopped", "inactive")
    clock.advance(9)
    assert len(manager.list()) == 1  # its end was activity
    clock.advance(1)
    assert manager.list() == []


def test_an_abandoned_scan_already_stopping_keeps_its_reason(make_manager, monkeypatch):
    clock = FakeClock()
    manager = make_manager(inactivity_timeout=10, clock=clock)
    gate = Gate(manager, monkeypatch)
    scan_id = manager.start_stream(SMALL)
    assert gate.entered.wait(10)
    record = manager.stop_stream(scan_id)
    clock.advance(10)
    assert len(manager.list()) == 1  # running: it is not removed, and stays "manual"
    gate.open()
    wait_until(lambda: not record.running)
    assert (record.status, record.reason) == ("stopped", "manual")


def test_the_janitor_cleans_up_on_its_own_then_ends(make_manager):
    manager = make_manager(inactivity_timeout=0.2)
    run(manager, SMALL)
    assert _janitors()
    wait_until(lambda: "scans=0" in repr(manager), timeout=5)  # repr does not sweep
    wait_until(lambda: not _janitors(), timeout=5)
    scan_id, messages = run(manager, SMALL)  # a new scan starts a new janitor
    assert check_stream(messages)["status"] == "completed"
    assert _janitors()
    wait_until(lambda: not _janitors(), timeout=5)
    with pytest.raises(UnknownScan):
        manager.get(scan_id)


def _janitors() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "technic-janitor"]


# --- threads and shutdown -------------------------------------------------------------------

def test_each_scan_runs_in_its_own_named_thread_that_ends_with_it(manager):
    scan_id = manager.start_stream({"symbols": 100, "latency_ms": 10, "timeout": 30})
    record = manager.get(scan_id)
    assert record.thread.name == f"technic-scan-{scan_id}"
    assert record.thread.daemon
    read_all(manager.subscribe(scan_id))
    wait_until(lambda: not scan_threads())  # scan, executor and timer threads


def test_shutdown_stops_every_scan_and_joins_every_thread(manager):
    done, _ = run(manager, {"symbols": 40, "max_fraction": 0.5})  # ended: not fired again
    running = [manager.start_stream(SLOW) for _ in range(2)]
    subscription = manager.subscribe(running[0])
    records = [manager.get(scan_id) for scan_id in running]
    manager.shutdown()
    assert not scan_threads()
    assert not _janitors()
    for record in records:
        assert (record.status, record.reason) == ("stopped", "manual")
    assert check_stream(read_all(subscription))["status"] == "stopped"
    assert manager.list() == []
    with pytest.raises(UnknownScan):
        manager.get(done)
    manager.shutdown()  # twice is fine
    _, messages = run(manager, SMALL)  # and the manager can start again
    assert check_stream(messages)["status"] == "completed"


def test_shutdown_of_an_unused_manager_is_a_no_op():
    manager = StreamManager()
    manager.shutdown()
    assert repr(manager) == "StreamManager(scans=0, running=0, max_concurrent=4)"


def test_default_manager_is_a_process_wide_singleton(monkeypatch, no_thread_leaks):
    monkeypatch.setattr(manager_module, "_default", None)
    monkeypatch.setenv("TECHNIC_MAX_SCANS", "2")
    monkeypatch.setenv("TECHNIC_INACTIVITY_TIMEOUT", "7.5")
    found: list[StreamManager] = []
    threads = [threading.Thread(target=lambda: found.append(default_manager()))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first = default_manager()
    try:
        assert all(item is first for item in found)
        assert (first.max_concurrent, first.inactivity_timeout) == (2, 7.5)
    finally:
        first.shutdown()


# --- property: stop at any point -----------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(stop_after=st.integers(min_value=0, max_value=40),
       latency_ms=st.sampled_from([0.0, 5.0]))
def test_property_stop_after_k_events_gives_one_final_and_gapless_seqs(stop_after, latency_ms):
    manager = StreamManager(progress_interval=0.0)
    try:
        scan_id = manager.start_stream({"symbols": 25, "latency_ms": latency_ms})
        subscription = manager.subscribe(scan_id)
        seen: list[dict] = []
        while len(seen) < stop_after and not (seen and seen[-1]["metadata"]["is_final"]):
            seen.extend(subscription.get_batch(timeout=10, max_items=stop_after - len(seen)))
        manager.stop_stream(scan_id)
        seen.extend(read_all(subscription))
        late = read_all(manager.subscribe(scan_id))
    finally:
        manager.shutdown()
    final = check_stream(seen)
    assert late == seen
    assert (final["status"], final["reason"]) in {("stopped", "manual"), ("completed", None)}
    if final["status"] == "completed":
        assert final["processed"] == 25


# --- release ---------------------------------------------------------------------------------

def test_release_removes_a_finished_unwatched_scan_at_once(manager):
    scan_id = manager.start_stream({"symbols": 50})
    read_all(manager.subscribe(scan_id))
    manager.release(scan_id)
    with pytest.raises(UnknownScan):
        manager.get(scan_id)
    manager.release(scan_id)  # unknown now: ignored


def test_release_of_a_running_scan_stops_it_and_removes_it_after_its_end(manager):
    scan_id = manager.start_stream({"symbols": 3000, "latency_ms": 20})
    record = manager.get(scan_id)
    manager.release(scan_id)
    wait_until(lambda: not record.running, timeout=30)
    assert record.status == "stopped" and record.reason == "inactive"
    wait_until(lambda: scan_id not in {scan["scan_id"] for scan in manager.list()}, timeout=10)


def test_release_keeps_a_watched_scan_until_its_subscription_ends(manager):
    scan_id = manager.start_stream({"symbols": 50})
    subscription = manager.subscribe(scan_id)
    wait_until(lambda: not manager.get(scan_id).running, timeout=30)
    manager.release(scan_id)
    assert manager.get(scan_id).released
    read_all(subscription)
    wait_until(lambda: scan_id not in {scan["scan_id"] for scan in manager.list()}, timeout=10)


# --- live scans -----------------------------------------------------------------------------

def test_a_live_scan_runs_as_a_live_scan_into_a_compacting_stream(make_manager):
    from technic_panel.live.scan import LiveScan

    manager = make_manager(max_retained=300, progress_interval=0.05)
    assert manager_module._run_class(ScanConfig(live=True)) is LiveScan
    assert manager_module._run_class(ScanConfig()) is run_module.ScanRun
    scan_id = manager.start_stream({"symbols": 20, "live": True, "bar_interval": 0.05})
    record = manager.get(scan_id)
    wait_until(lambda: record.streamer.first_retained_seq > 100, timeout=30)
    assert record.progress()["live"] is True and record.progress()["bars"] > 0
    late = record.streamer.messages_since(0, limit=20)
    assert [msg["type"] for msg in late] == ["result"] * 20
    assert all(msg["metadata"]["compacted"] for msg in late)
    manager.stop_stream(scan_id)
    messages = read_all(manager.subscribe(scan_id, since=record.streamer.last_seq))
    assert messages[-1]["data"]["reason"] == "manual" and messages[-1]["data"]["live"] is True


def test_a_live_scans_criteria_end_only_the_first_pass_with_max_signals_and_max_fraction():
    from technic_panel.streaming.termination import EarlyTerminationCriteria

    criteria = EarlyTerminationCriteria(max_signals=1, max_fraction=0.5, live=True)
    quality = {"signal": "STRONG_BUY", "tech_rating": 90.0}
    assert criteria.observe_result(quality, 1, 10) == "max_signals"
    assert criteria.observe_result(quality, 6, 10) is None  # the pass has already ended
    assert (criteria.initial_reason, criteria.reason) == ("max_signals", None)
    assert criteria.fire("timeout") and criteria.reason == "timeout"
    fraction = EarlyTerminationCriteria(max_fraction=0.5, live=True)
    assert fraction.observe_progress(5, 10) == "max_fraction"
    assert (fraction.initial_reason, fraction.reason) == ("max_fraction", None)
    stopped = EarlyTerminationCriteria(max_fraction=0.5, live=True)
    stopped.fire("manual")
    assert stopped.observe_progress(5, 10) is None and stopped.initial_reason is None
    assert EarlyTerminationCriteria.from_config(ScanConfig(live=True)).live
