"""``technic-data``: real subprocess runs and in-process ``main()`` calls, every exit status.

Subprocesses run ``python -m technic_panel.data.cli`` (what the console script runs); the
Yahoo fetch runs in-process with ``yfinance.download`` replaced by ``FakeYahoo`` (yfinance's
payload shapes) and the reachability probe pointed at a listening loopback socket, since
the live Yahoo path cannot be exercised here. Offline, the real probe meets a closed port.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import socket
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yfinance
from helpers import bars_frame, free_port
from yahoo_helpers import FakeYahoo, history

from technic_panel.data import FileSource
from technic_panel.data.cli import main
from technic_panel.data.providers import yahoo
from technic_panel.data.store import BarStore, StoreSource
from technic_panel.engine.scanner import Scanner

END = "2024-07-01"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``technic-data`` in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, "-m", "technic_panel.data.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def call(capsys, *args: object) -> tuple[int, str, str]:
    """Run ``main()`` in this process; return the status, stdout and stderr."""
    status = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str) -> str:
    """Assert ``err`` is one ``technic-data:`` line without a traceback; return it."""
    assert err.count("\n") == 1 and err.startswith("technic-data: "), err
    assert "Traceback" not in err
    return err


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    """A folder of three good CSV files, one with a missing column, one too short."""
    folder = tmp_path / "prices"
    folder.mkdir()
    for seed, symbol in enumerate(("AAPL", "JPM", "XOM")):
        bars_frame(seed).to_csv(folder / f"{symbol}.csv")
    bars_frame(3).drop(columns="close").to_csv(folder / "BROKEN.csv")
    bars_frame(4, n=40).to_csv(folder / "SHORT.csv")
    return folder


# --- arguments ----------------------------------------------------------------------------


def test_version():
    done = run("--version")
    assert (done.returncode, done.stdout) == (0, "technic-data 0.1.0\n")


@pytest.mark.parametrize("args, message", [
    ((), "the following arguments are required: COMMAND"),
    (("fetch",), "the following arguments are required: PROVIDER"),
    (("fetch", "yahoo", "--universe", "sp500"), "the following arguments are required: --store"),
    (("fetch", "yahoo", "--universe", "sp500", "--store", "s.duckdb", "--rate", "0"),
     "--rate: must be a float > 0, not '0'"),
    (("fetch", "yahoo", "--universe", "sp500", "--store", "s.duckdb", "--batch", "many"),
     "--batch: must be a int > 0, not 'many'"),
    (("fetch", "yahoo", "--universe", "sp500", "--store", "s.duckdb", "--start", "soon"),
     "--start: must be a date (YYYY-MM-DD), not 'soon'"),
    (("fetch", "yahoo", "--universe", "sp400", "--store", "s.duckdb"),
     "--universe: universe 'sp400' is not an index pytickersymbols ships; use one of"),
    (("info", "missing.duckdb"), "FILE: missing.duckdb does not exist"),
    (("export", "missing.duckdb", "--to", "out"), "FILE: missing.duckdb does not exist"),
    (("export", "missing.duckdb", "--to", "out", "--format", "xlsx"), "--format: invalid choice"),
    (("ingest", "missing", "--store", "s.duckdb"), "PATH: missing does not exist"),
    (("universe",), "one of the arguments NAME --from --list is required"),
    (("universe", "sp500", "--from", "list.txt"), "--from: not allowed with argument NAME"),
    (("universe", "sp500", "--store", "s.duckdb", "--to", "u.csv"),
     "--to: not allowed with argument --store"),
    (("universe", "sp400"), "NAME: universe 'sp400' is not an index"),
    (("universe", "cacmid60"), "pytickersymbols lists none of the 60 members of CAC Mid 60"),
    (("universe", "--from", "missing.txt"), "--from: missing.txt does not exist"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    status, out, err = call(capsys, *args)
    assert (status, out) == (2, "")
    assert message in one_line(err)
    assert not list(tmp_path.iterdir())


def test_bad_arguments_in_a_real_process_are_one_line_too(tmp_path):
    done = run("info", tmp_path / "missing.duckdb")
    assert done.returncode == 2 and done.stdout == ""
    assert "does not exist" in one_line(done.stderr)


def test_a_file_that_is_no_store_fails_with_exit_1_and_one_line(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("not a database")
    done = run("info", path)
    assert done.returncode == 1 and done.stdout == ""
    assert "info: BarStore.path must be a bar store" in one_line(done.stderr)


# --- ingest, info, export ------------------------------------------------------------------


def test_ingest_writes_the_good_files_and_names_the_refused_ones(prices, tmp_path):
    store = tmp_path / "bars.duckdb"
    done = run("ingest", prices, "--store", store)
    assert done.returncode == 0, done.stderr
    summary, *refused = done.stdout.splitlines()
    assert summary == (f"ingested 3 symbols ({3 * 260:,} bars) from {prices} into {store}; "
                       "0 unchanged, 2 refused")
    assert sorted(refused) == [
        "  refused BROKEN: FileSource: BROKEN.csv lacks the column close (needs date, open, high, "
        "low, close, volume; the date may also be called datetime or timestamp)",
        "  refused SHORT: BarStore: SHORT: 40 bars; a symbol needs at least 200 (the "
        "indicators' longest look-back)"]
    assert done.stderr.splitlines()[-1] == "technic-data: ingest: 5 symbols"
    with BarStore(store) as bar_store:
        assert sorted(bar_store.last_dates()) == ["AAPL", "JPM", "XOM"]


def test_ingest_of_nothing_new_is_done_and_of_nothing_valid_fails(capsys, prices, tmp_path):
    store = tmp_path / "bars.duckdb"
    assert call(capsys, "ingest", prices, "--store", store)[0] == 0
    status, out, _ = call(capsys, "ingest", prices, "--store", store)
    assert status == 0 and "ingested 0 symbols (0 bars)" in out
    assert "3 unchanged, 2 refused" in out
    broken = tmp_path / "broken"
    broken.mkdir()
    (prices / "BROKEN.csv").rename(broken / "BROKEN.csv")
    status, out, _ = call(capsys, "ingest", broken, "--store", tmp_path / "other.duckdb")
    assert status == 1 and "ingested 0 symbols" in out
    assert "refused BROKEN: FileSource: BROKEN.csv lacks the column close" in out


def test_ingest_with_a_universe_file_gives_the_scan_its_sectors(capsys, prices, tmp_path):
    store, universe = tmp_path / "bars.duckdb", tmp_path / "mine.csv"
    universe.write_text("symbol,sector,name\nAAPL,Information Technology,Apple\n"
                        "JPM,Financials,JPMorgan\n")
    assert call(capsys, "ingest", prices, "--store", store, "--universe", universe)[0] == 0
    events = []
    Scanner(StoreSource(store), sectors=["Financials"]).run(events.append)
    assert [(event.symbol, event.kind) for event in events] == [("JPM", "result")]


def test_info_shows_symbols_bars_dates_and_the_last_update(capsys, prices, tmp_path):
    store = tmp_path / "bars.duckdb"
    call(capsys, "ingest", prices, "--store", store)
    status, out, _ = call(capsys, "info", store)
    assert status == 0
    lines = dict(line.split(None, 1) for line in out.splitlines())
    first, last = bars_frame(0).index[[0, -1]]
    assert lines["symbols"] == "3" and lines["bars"] == f"{3 * 260:,}"
    assert lines["dates"] == f"{first.date()} .. {last.date()}"
    assert lines["store"] == str(store) and lines["updated"].endswith(" UTC")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_gives_back_what_was_ingested(capsys, prices, tmp_path, fmt):
    store, out = tmp_path / "bars.duckdb", tmp_path / "out"
    call(capsys, "ingest", prices, "--store", store)
    status, printed, _ = call(capsys, "export", store, "--to", out, "--format", fmt)
    assert (status, printed) == (0, f"exported 3 symbols as {fmt} files to {out}\n")
    exported, original = FileSource(out), FileSource(prices)
    assert exported.symbols() == ["AAPL", "JPM", "XOM"]
    for symbol in exported.symbols():
        for name in ("dates", "open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(getattr(exported.bars(symbol), name),
                                          getattr(original.bars(symbol), name))


# --- universes -----------------------------------------------------------------------------


def test_universe_sp500_offline_fills_the_store_so_the_sector_filter_works(tmp_path):
    store = tmp_path / "bars.duckdb"
    done = run("universe", "sp500", "--store", store)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"universe sp500 (S&P 500): 503 symbols, 0 without a sector -> "
                           f"the universe table of {store}\n")
    with BarStore(store) as bar_store:
        rows = bar_store.connection.sql("SELECT count(*), count(DISTINCT sector) FROM universe")
        assert rows.fetchall() == [(503, 11)]
        bar_store.write({symbol: bars_frame(seed)
                         for seed, symbol in enumerate(("AAPL", "JPM", "XOM", "BAC"))})
    universe = StoreSource(store).universe().set_index("symbol")
    assert universe.loc[["AAPL", "JPM", "XOM"], "sector"].tolist() == [
        "Information Technology", "Financials", "Energy"]
    scan = subprocess.run([sys.executable, "-m", "technic_panel.cli", "--source", "store",
                           "--path", str(store), "--sectors", "Financials"],
                          capture_output=True, text=True, timeout=120)
    messages = [json.loads(line) for line in scan.stdout.splitlines()]
    results = {m["data"]["symbol"]: m["data"]["sector"] for m in messages
               if m["type"] == "result"}
    assert scan.returncode == 0 and results == {"BAC": "Financials", "JPM": "Financials"}


def test_universe_to_a_file_gives_filesource_real_sectors(capsys, prices, tmp_path):
    path = tmp_path / "dow30.csv"
    status, out, _ = call(capsys, "universe", "dow30", "--to", path)
    assert status == 0 and out.endswith(f"-> {path}\n")
    universe = FileSource(prices, universe_path=path).universe().set_index("symbol")
    assert universe.loc[["AAPL", "JPM"], "sector"].tolist() == [
        "Information Technology", "Financials"]
    assert universe.loc["XOM", "sector"] == "Unknown"  # not in the Dow any more


def test_universe_without_a_target_prints_csv_and_list_prints_the_indices(capsys):
    status, out, _ = call(capsys, "universe", "nasdaq100")
    frame = pd.read_csv(pd.io.common.StringIO(out))
    assert status == 0 and len(frame) == 101 and list(frame.columns)[:4] == [
        "symbol", "name", "sector", "industry"]
    status, out, _ = call(capsys, "universe", "--list")
    assert status == 0 and "sp500\tS&P 500\n" in out and "dow30\tDOW JONES\n" in out


def test_universe_from_a_users_list_keeps_its_columns(capsys, tmp_path):
    path, store = tmp_path / "mine.csv", tmp_path / "bars.duckdb"
    path.write_text("symbol,sector,note\nacme,Technology,watch\nbeta,,\n")
    status, out, _ = call(capsys, "universe", "--from", path, "--store", store)
    assert status == 0 and out.startswith(f"universe {path}: 2 symbols, 1 without a sector")
    with BarStore(store) as bar_store:
        rows = bar_store.connection.sql("SELECT symbol, sector, note FROM universe ORDER BY 1")
        assert rows.fetchall() == [("ACME", "Information Technology", "watch"),
                                   ("BETA", "Unknown", None)]


def test_a_bad_line_in_a_users_list_is_named(capsys, tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("AAPL\nnot a symbol\n")
    status, out, err = call(capsys, "universe", "--from", path)
    assert (status, out) == (1, "")
    assert "mine.txt line 2: a symbol is letters, digits" in one_line(err)


# --- fetch yahoo -----------------------------------------------------------------------------


def test_fetch_offline_fails_fast_with_one_line_and_touches_nothing(tmp_path):
    port, store = free_port(), tmp_path / "bars.duckdb"
    done = run("fetch", "yahoo", "--universe", "sp500", "--store", store,
               env={"HTTPS_PROXY": f"http://127.0.0.1:{port}"})
    assert done.returncode == 1 and done.stdout == ""
    assert one_line(done.stderr) == (
        f"technic-data: Yahoo Finance is unreachable (127.0.0.1:{port}: connection refused); "
        "check the network connection or proxy (HTTPS_PROXY), then run the same command "
        "again\n")
    assert not store.exists()


@pytest.fixture
def yahoo_answers(monkeypatch):
    """Point the probe at a listening loopback socket; yield a setter for the fake download."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        monkeypatch.setattr(yahoo, "PROBE_ADDRESS", server.getsockname()[:2])
        monkeypatch.delenv("HTTPS_PROXY", raising=False)
        monkeypatch.delenv("https_proxy", raising=False)

        def serve(fake: FakeYahoo) -> FakeYahoo:
            monkeypatch.setattr(yfinance, "download", fake)
            return fake

        yield serve


def fetch_args(tmp_path: Path, *symbols: str) -> list[object]:
    path = tmp_path / "mine.txt"
    path.write_text("\n".join(symbols) + "\n")
    return ["fetch", "yahoo", "--universe", path, "--store", tmp_path / "bars.duckdb",
            "--end", END, "--rate", "1000", "--batch", "2"]


def test_fetch_stores_the_universe_and_its_bars_then_only_whats_new(capsys, tmp_path,
                                                                   yahoo_answers):
    fake = yahoo_answers(FakeYahoo({s: history(s) for s in ("AAA", "BBB", "CCC")}))
    args = fetch_args(tmp_path, "AAA", "BBB", "CCC")
    status, out, err = call(capsys, *args)
    assert status == 0, err
    assert out.startswith("fetched 3 of 3 symbols from Yahoo Finance (adjusted prices) into ")
    assert "bars added in 2 batches, 3 requests; 0 already up to date; 0 failed\n" in out
    assert err.splitlines() == ["technic-data: fetch yahoo: 2/3 symbols",
                                "technic-data: fetch yahoo: 3/3 symbols"]
    assert fake.fetched() == [["AAA", "BBB"], ["CCC"]]
    with BarStore(tmp_path / "bars.duckdb") as store:
        assert store.connection.sql("SELECT symbol FROM universe ORDER BY 1").fetchall() == [
            ("AAA",), ("BBB",), ("CCC",)]
        assert store.last_dates()["CCC"] == pd.Timestamp("2024-06-28")
    status, out, _ = call(capsys, *args)
    assert status == 0 and "fetched 0 of 3 symbols" in out and "3 already up to date" in out
    assert len(fake.calls) == 2


def test_fetch_names_what_failed_and_why(capsys, tmp_path, yahoo_answers):
    yahoo_answers(FakeYahoo({"AAA": history("AAA")}))
    status, out, _ = call(capsys, *fetch_args(tmp_path, "AAA", "NOPE"))
    assert status == 0 and "; 1 failed\n" in out
    assert out.splitlines()[-1].startswith("  failed NOPE: possibly delisted; no price data")


def test_fetch_that_writes_nothing_fails(capsys, tmp_path, yahoo_answers):
    yahoo_answers(FakeYahoo({}))
    status, out, _ = call(capsys, *fetch_args(tmp_path, "NOPE"))
    assert status == 1 and "fetched 0 of 1 symbols" in out and "failed NOPE" in out


def test_ctrl_c_during_a_fetch_keeps_the_batches_written(capsys, tmp_path, yahoo_answers):
    yahoo_answers(FakeYahoo({s: history(s) for s in ("AAA", "BBB", "CCC")},
                            script=[{}, {"raise": KeyboardInterrupt()}]))
    status, out, err = call(capsys, *fetch_args(tmp_path, "AAA", "BBB", "CCC"))
    assert (status, out) == (130, "")
    assert one_line(err.splitlines(keepends=True)[-1]) == (
        "technic-data: interrupted; what was written stays written\n")
    with BarStore(tmp_path / "bars.duckdb") as store:
        assert sorted(store.last_dates()) == ["AAA", "BBB"]


def test_a_terminal_gets_a_progress_bar(capsys, tmp_path, yahoo_answers, monkeypatch):
    yahoo_answers(FakeYahoo({s: history(s) for s in ("AAA", "BBB", "CCC")}))
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with os.fdopen(follower, "w") as terminal, os.fdopen(leader, "rb", buffering=0) as screen:
        monkeypatch.setattr(sys, "stderr", terminal)
        assert main([str(arg) for arg in fetch_args(tmp_path, "AAA", "BBB", "CCC")]) == 0
        terminal.flush()
        drawn = b""
        while select.select([screen], [], [], 0.5)[0]:
            drawn += screen.read(65536)
    drawn = drawn.decode()
    assert "fetch yahoo:" in drawn and "3/3" in drawn and "symbol/s" in drawn, drawn
    assert "technic-data: fetch yahoo: 2/3 symbols" not in drawn
