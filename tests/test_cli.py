"""technic-scan: end to end through a real process, and in-process for the details."""

from __future__ import annotations

import csv
import importlib.util
import io
import logging
import os
import re
import runpy
import signal
import subprocess
import sys
import threading
import time
import warnings
from datetime import date
from importlib import metadata
from pathlib import Path

import param
import pytest

from technic_panel import cli, cli_views
from technic_panel.config import ScanConfig
from technic_panel.data import SyntheticSource
from technic_panel.streaming.jsonsafe import from_json

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "technic_panel.cli"]
SAMPLE_SYMBOLS = {"AAPL", "FB", "GOOG", "IBM", "MSFT"}
HAVE_DISTRIBUTED = importlib.util.find_spec("distributed") is not None


# --- helpers --------------------------------------------------------------------------------

def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def parse_stream(stdout: str) -> list[dict]:
    """Parse every line with the contract's parser and check seqs and the one final."""
    lines = stdout.splitlines()
    assert lines, "no output"
    messages = [from_json(line) for line in lines]
    assert [msg["metadata"]["seq"] for msg in messages] == list(range(1, len(messages) + 1))
    assert [msg["type"] for msg in messages].count("final") == 1
    assert messages[-1]["type"] == "final"
    return messages


def results(messages: list[dict]) -> list[dict]:
    return [msg["data"] for msg in messages if msg["type"] == "result"]


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("technic-scan: ")
    return lines[0]


def run_csv(*args: str) -> subprocess.CompletedProcess:
    """Run ``--format csv``; the text keeps its CRLF row ends (no newline translation)."""
    done = subprocess.run([*COMMAND, *args, "--format", "csv"], capture_output=True,
                          timeout=60, cwd=ROOT)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())


def csv_rows(stdout: str) -> list[dict]:
    """Parse ``--format csv`` output, checking its header and CRLF row ends."""
    assert stdout.endswith("\r\n")
    reader = csv.DictReader(io.StringIO(stdout, newline=""))
    rows = list(reader)
    assert tuple(reader.fieldnames) == cli_views.CSV_COLUMNS
    return rows


def write_prices(folder: Path, symbols: list[str], seed: int = 1) -> Path:
    """Write one synthetic symbol's daily bars to ``folder/<symbol>.csv`` per name."""
    source = SyntheticSource(len(symbols), seed=seed)
    for symbol, generated in zip(symbols, source.universe()["symbol"], strict=True):
        source.bars(generated).to_frame().to_csv(folder / f"{symbol}.csv")
    return folder


def decimals(text: str) -> int:
    return len(text.partition(".")[2])


# --- end to end: a real process -------------------------------------------------------------

def test_ndjson_stream_of_a_completed_scan():
    done = run_cli("--symbols", "60")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    messages = parse_stream(done.stdout)
    final = messages[-1]["data"]
    assert (final["status"], final["reason"]) == ("completed", None)
    assert final["processed"] == final["total"] == 60
    assert len(results(messages)) == 60
    assert len({row["symbol"] for row in results(messages)}) == 60


def test_max_signals_end_to_end():
    # The recalibrated scoring rates about 2% STRONG_BUY: 1,000 symbols hold about 20.
    done = run_cli("--symbols", "1000", "--max-signals", "5")
    assert done.returncode == 0, done.stderr
    final = parse_stream(done.stdout)[-1]["data"]
    assert (final["status"], final["reason"]) == ("terminated", "max_signals")
    assert final["quality_signals"] >= 5
    assert final["processed"] < final["total"]


def test_max_fraction_end_to_end():
    done = run_cli("--symbols", "200", "--max-fraction", "0.2")
    assert done.returncode == 0, done.stderr
    final = parse_stream(done.stdout)[-1]["data"]
    assert (final["status"], final["reason"]) == ("terminated", "max_fraction")
    assert final["total"] == 200
    assert 40 <= final["processed"] <= 45  # about 20%


def test_timeout_end_to_end_fires_without_waiting_for_results():
    started = time.monotonic()
    done = run_cli("--symbols", "2000", "--timeout", "0.5", "--latency-ms", "200")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    final = parse_stream(done.stdout)[-1]["data"]
    assert (final["status"], final["reason"]) == ("terminated", "timeout")
    assert final["processed"] < final["total"]
    assert elapsed < 10


def test_ctrl_c_stops_the_scan_prints_the_final_and_exits_130():
    process = subprocess.Popen([*COMMAND, "--symbols", "3000", "--latency-ms", "50"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT)
    try:
        first = process.stdout.readline()
        assert first, process.stderr.read()
        process.send_signal(signal.SIGINT)
        rest = process.stdout.read()  # the same buffered reader: nothing read ahead is lost
        stderr = process.stderr.read()
        returncode = process.wait(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert returncode == 130, stderr
    assert stderr == ""
    messages = parse_stream(first + rest)
    final = messages[-1]["data"]
    assert (final["status"], final["reason"]) == ("stopped", "manual")
    assert final["processed"] < final["total"] == 3000


@pytest.mark.parametrize(("args", "words"), [
    (["--max-fraction", "1.5"], ["--max-fraction", "at most 1", "1.5"]),
    (["--filter", "nope < 3"], ["--filter", "unknown column 'nope'"]),
    (["--executor", "gpu"], ["--executor", "'gpu' is not an executor", "thread, process, dask"]),
    (["--symbols", "x"], ["--symbols", "must be an integer", "'x'"]),
    (["--bogus", "1"], ["unrecognized arguments", "--bogus"]),
])
def test_bad_arguments_exit_2_with_one_line_naming_the_flag(args, words):
    done = run_cli(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    line = one_error_line(done.stderr)
    for word in words:
        assert word in line


def test_table_format_without_a_terminal_prints_one_table_with_the_top_symbol():
    ndjson = run_cli("--symbols", "80", "--seed", "3")
    ratings = {row["symbol"]: row["tech_rating"] for row in results(parse_stream(ndjson.stdout))}
    top = max(ratings, key=ratings.get)
    done = run_cli("--symbols", "80", "--seed", "3", "--format", "table")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["#", "symbol", "signal", "tech_rating", "alpha_score", "price",
                                "sector"]
    assert lines[1].split()[:2] == ["1", top]
    assert len(lines) == 1 + 20 + 1  # header, top 20, summary
    assert lines[-1].startswith("completed: 80/80 processed, 80 results, 0 errors")
    assert "\x1b[" not in done.stdout


def test_sample_source_end_to_end():
    done = run_cli("--source", "sample")
    assert done.returncode == 0, done.stderr
    messages = parse_stream(done.stdout)
    assert messages[-1]["data"]["status"] == "completed"
    assert {row["symbol"] for row in results(messages)} <= SAMPLE_SYMBOLS
    assert len(results(messages)) >= 4


def test_a_closed_stdout_stops_the_scan_quietly_and_exits_0():
    # the whole scan would take about 3000 * 0.4 s / 32 threads = 37 s
    process = subprocess.Popen([*COMMAND, "--symbols", "3000", "--latency-ms", "400"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert process.stdout.readline()
        process.stdout.close()  # like `technic-scan | head -1`
        closed = time.monotonic()
        stderr = process.stderr.read()
        returncode = process.wait(timeout=30)
        elapsed = time.monotonic() - closed
    finally:
        process.kill()
        process.wait()
    assert (returncode, stderr) == (0, b"")
    assert elapsed < 15, "the scan was stopped, not run to its end"


@pytest.mark.parametrize(("reader", "lines"), [("head -2", 2), ("true", 0)])
@pytest.mark.parametrize("fmt", ["ndjson", "csv", "table"])
def test_a_reader_that_stops_early_under_pipefail_exits_0_with_no_traceback(fmt, reader, lines):
    # `true` reads nothing and is gone before the first write: every format meets EPIPE
    # (a table or CSV written in one go may fit in what head has read). dash, sh on
    # Debian, has no pipefail: bash runs the pipeline, as a script would.
    pipeline = (f"set -o pipefail; {sys.executable} -m technic_panel.cli --symbols 2000 "
                f"--format {fmt} | {reader}")
    done = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert (done.returncode, done.stderr) == (0, "")
    assert len(done.stdout.splitlines()) == lines


def test_the_console_script_is_installed():
    script = Path(sys.executable).with_name("technic-scan")
    if not script.exists():
        pytest.skip("the package is not installed with its console scripts")
    done = subprocess.run([str(script), "--symbols", "20"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert parse_stream(done.stdout)[-1]["data"]["status"] == "completed"


def test_version_is_the_installed_packages():
    done = run_cli("--version")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"technic-scan {metadata.version('technic-panel')}\n"


def test_csv_format_has_one_rounded_row_per_result_best_first():
    ndjson = {row["symbol"]: row for row in results(parse_stream(run_cli(
        "--symbols", "80", "--seed", "3").stdout))}
    done = run_csv("--symbols", "80", "--seed", "3")
    assert (done.returncode, done.stderr) == (0, "")
    rows = csv_rows(done.stdout)
    assert sorted(row["symbol"] for row in rows) == sorted(ndjson)
    assert [int(row["rank"]) for row in rows] == list(range(1, 81))
    ratings = [float(row["tech_rating"]) for row in rows]
    assert ratings == sorted(ratings, reverse=True)
    assert {row["date"] for row in rows} == {date.today().isoformat()}
    for row in rows:
        full = ndjson[row["symbol"]]
        assert (row["signal"], row["sector"], row["side"]) == (
            full["signal"], full["sector"], full["side"])
        assert float(row["tech_rating"]) == round(full["tech_rating"], 2)
        assert float(row["rsi_14"]) == round(full["rsi_14"], 2)
        assert decimals(row["price"]) <= 2 and decimals(row["alpha_score"]) <= 4
        assert row["market_cap"] == str(round(full["market_cap"]))  # whole dollars


def test_csv_neutralises_formula_symbols_and_says_on_stderr_what_failed(tmp_path):
    write_prices(tmp_path, ["=HYPERLINK", "-1+1", "@SUM", "PLAIN"])
    (tmp_path / "BAD.csv").write_text("date,close\nnot a date,1\n")
    done = run_csv("--source", "files", "--path", str(tmp_path))
    assert done.returncode == 0
    rows = csv_rows(done.stdout)
    assert sorted(row["symbol"] for row in rows) == ["'-1+1", "'=HYPERLINK", "'@SUM", "PLAIN"]
    assert all(float(row["tech_rating"]) >= 0 for row in rows)  # numbers stay numbers
    line = one_error_line(done.stderr)
    assert line.startswith("technic-scan: completed: 5/5 processed, 4 results, 1 errors")


def test_long_symbols_keep_the_table_aligned(tmp_path):
    write_prices(tmp_path, ["A", "VERYLONGSYMBOL", "MID"])
    done = run_cli("--source", "files", "--path", str(tmp_path), "--format", "table")
    assert done.returncode == 0, done.stderr
    header, *rows, summary = done.stdout.splitlines()
    assert len(rows) == 3 and summary.startswith("completed")
    assert {row.split()[1] for row in rows} == {"A", "VERYLONGSYMBOL", "MID"}
    rating_end = header.index("tech_rating") + len("tech_rating")
    for row in rows:
        _, symbol, signal, rating, *_ = row.split()
        at = row.index(signal, row.index(symbol) + len(symbol))
        assert at == header.index("signal"), (header, row)  # left-aligned under its title
        assert row.index(rating, at + len(signal)) + len(rating) == rating_end, (header, row)


def test_a_failed_scan_logs_one_line_and_its_traceback_only_with_verbose(tmp_path):
    quiet = run_cli("--source", "files", "--path", str(tmp_path))  # an empty folder
    assert quiet.returncode == 1
    line = one_error_line(quiet.stderr)
    assert line.startswith("technic-scan: WARNING: scan scan_") and "no .csv or .parquet" in line
    verbose = run_cli("-v", "--source", "files", "--path", str(tmp_path))
    assert verbose.returncode == 1
    assert "Traceback (most recent call last)" in verbose.stderr


@pytest.mark.dask
@pytest.mark.skipif(not HAVE_DISTRIBUTED, reason="needs dask.distributed")
def test_dask_library_logs_are_quiet_unless_verbose():
    quiet = run_cli("--executor", "dask", "--symbols", "50", timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert parse_stream(quiet.stdout)[-1]["data"]["processed"] == 50
    assert [line for line in quiet.stderr.splitlines() if "INFO" in line] == []
    assert "Traceback" not in quiet.stderr
    verbose = run_cli("-v", "--executor", "dask", "--symbols", "50", timeout=120)
    assert verbose.returncode == 0, verbose.stderr
    assert "technic-scan: INFO: " in verbose.stderr  # the same run shows them with -v


# --- in process -----------------------------------------------------------------------------

def test_main_streams_ndjson(capsys):
    assert cli.main(["--symbols", "20"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    messages = parse_stream(out)
    assert messages[-1]["data"]["processed"] == 20


def test_every_scan_setting_is_a_flag_with_its_doc():
    parser = cli.build_parser()
    flags = {action.dest: action for action in parser._actions if action.option_strings}
    for name in ScanConfig.setting_names():
        action, flag = flags[name], "--" + name.replace("_", "-")
        switch = isinstance(ScanConfig.param[name], param.Boolean)
        assert action.option_strings == ([flag, flag.replace("--", "--no-")] if switch
                                         else [flag])
        assert action.help.startswith(ScanConfig.param[name].doc.replace("%", "%%"))
    assert flags["executor"].choices == ["thread", "process", "dask"]
    assert flags["format"].choices == ("ndjson", "table", "csv")


def test_a_boolean_setting_is_a_switch_and_its_negation():
    booleans = [name for name in ScanConfig.setting_names()
                if isinstance(ScanConfig.param[name], param.Boolean)]
    if not booleans:
        pytest.skip("ScanConfig has no Boolean setting")
    name = booleans[0]
    flag = "--" + name.replace("_", "-")
    parser = cli.build_parser()
    assert cli._settings(parser.parse_args([flag])) == {name: True}
    assert cli._settings(parser.parse_args([flag.replace("--", "--no-")])) == {name: False}
    assert cli._settings(parser.parse_args([])) == {}
    with pytest.raises(cli.UsageError, match=f"^{flag}/--no-.*: ignored explicit argument 'yes'"):
        parser.parse_args([f"{flag}=yes"])


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--max-signals N", "--quality-signals STRONG_BUY,BUY", "--timeout SECONDS",
                 "--format {ndjson,table,csv}", "--sectors SECTOR,...", "-v, --verbose",
                 "--version", "--executor {thread,process,dask}"):
        assert flag in out


def test_only_given_flags_reach_the_config_and_values_are_converted(capsys, monkeypatch):
    seen: list = []
    real = cli.StreamManager.start_stream

    def spy(self, config, **kwargs):
        seen.append(config)
        return real(self, config, **kwargs)

    monkeypatch.setattr(cli.StreamManager, "start_stream", spy)
    argv = ["--symbols", "30", "--min-rating", "10", "--quality-signals", "BUY, STRONG_BUY",
            "--sectors", "Energy,Utilities", "--executor", "thread"]
    assert cli.main(argv) == 0
    assert seen == [{"symbols": 30, "min_rating": 10.0, "quality_signals": ["BUY", "STRONG_BUY"],
                     "sectors": ["Energy", "Utilities"], "executor": "thread"}]
    rows = results(parse_stream(capsys.readouterr().out))
    assert rows and {row["sector"] for row in rows} <= {"Energy", "Utilities"}


@pytest.mark.parametrize(("argv", "line"), [
    (["--max-fraction", "1.5"],
     "technic-scan: --max-fraction: Number parameter 'ScanConfig.max_fraction' must be at most "
     "1, not 1.5."),
    (["--symbols", "x"], "technic-scan: --symbols: must be an integer, not 'x'"),
    (["--min-price", "cheap"], "technic-scan: --min-price: must be a number, not 'cheap'"),
    (["--symbols"], "technic-scan: --symbols: expected one argument"),
    (["--format", "xml"],
     "technic-scan: --format: 'xml' is not a format; choose from: ndjson, table, csv"),
    (["--sectors", "Tech"],
     "technic-scan: --sectors: 'Tech' is not a sector; choose from: "
     f"{', '.join(ScanConfig.param['sectors'].objects)}"),
    (["--quality-signals", "BUY,NOPE"],
     "technic-scan: --quality-signals: 'NOPE' is not a quality signal; choose from: "
     "STRONG_BUY, BUY, HOLD, SELL, STRONG_SELL"),
    (["--source", "csv"],
     "technic-scan: --source: 'csv' is not a source; choose from: "
     f"{', '.join(ScanConfig.param['source'].objects)}"),
    (["--max-sig", "3"], "technic-scan: unrecognized arguments: --max-sig 3"),  # no abbreviations
    (["--source", "files"],
     "technic-scan: --path: ScanConfig.path is required when source='files' (a folder of CSV "
     "or Parquet files)"),
])
def test_usage_errors_in_process(capsys, argv, line):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert one_error_line(err) == line


def test_a_rule_only_the_criteria_check_is_still_a_usage_error(capsys):
    assert cli.main(["--max-signals", "2", "--quality-signals", ","]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "quality_signals" in one_error_line(err)


def test_a_failed_scan_exits_1_after_its_final(capsys, tmp_path):
    assert cli.main(["--source", "files", "--path", str(tmp_path)]) == 1  # an empty folder
    messages = parse_stream(capsys.readouterr().out)
    assert [msg["type"] for msg in messages][0] == "error"
    assert messages[-1]["data"]["status"] == "failed"


def test_a_failed_scan_as_a_table_says_why(capsys, tmp_path):
    assert cli.main(["--source", "files", "--path", str(tmp_path), "--format", "table"]) == 1
    summary = capsys.readouterr().out.splitlines()[-1]
    assert summary.startswith("failed: 0/0 processed")
    assert "no .csv or .parquet file" in summary


def test_table_format_on_a_terminal_redraws_a_live_view(capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    argv = ["--symbols", "600", "--latency-ms", "40", "--error-rate", "0.1", "--format", "table"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    frames = out.split("\x1b[H\x1b[2J")[1:]
    assert len(frames) >= 2, "a live view and a last one"
    last = frames[-1].splitlines()
    assert last[0].startswith("technic-scan  scan_") and last[0].endswith("completed")
    assert last[1].startswith("[" + "#" * 30 + "] 600/600 100.0%")
    assert "ETA" not in last[1]  # over: the summary gives the elapsed time
    assert last[2].startswith("STRONG_BUY ") and "| errors " in last[2]
    assert int(last[2].rsplit(" ", 1)[1]) > 0
    assert last[4].split()[:2] == ["#", "symbol"]
    assert len(last) == 5 + 20 + 1
    assert last[-1].startswith("completed: 600/600 processed")
    live = frames[0].splitlines()
    assert live[0].endswith("running")
    assert len(live) <= 5 + 10
    etas = [frame.splitlines()[1].rpartition("  ETA ")[2] for frame in frames[:-1]]
    assert all(eta == "-" or re.fullmatch(r"\d+:\d\d", eta) for eta in etas), etas
    assert any(eta != "-" for eta in etas), "a rate is known once symbols are processed"


def test_ctrl_c_in_process_stops_and_returns_130(capsys):
    timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code = cli.main(["--symbols", "3000", "--latency-ms", "50"])
    finally:
        timer.cancel()
        timer.join()
    assert code == 130
    final = parse_stream(capsys.readouterr().out)[-1]["data"]
    assert (final["status"], final["reason"]) == ("stopped", "manual")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_main_off_the_main_thread_leaves_signals_alone(capsys):
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(cli.main(["--symbols", "15"])))
    thread.start()
    thread.join(60)
    assert codes == [0]
    assert parse_stream(capsys.readouterr().out)[-1]["data"]["status"] == "completed"


@pytest.fixture
def library_log_levels():
    """Restore the levels configure_logging sets, so no other test logs differently."""
    names = [None, *cli.LIBRARY_LOGGERS, "tornado"]
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("library_log_levels")
def test_library_loggers_warn_by_default_inform_with_v_and_debug_with_vv():
    logging.getLogger("tornado").setLevel(logging.CRITICAL)
    cli.configure_logging(0)
    levels = {name: logging.getLogger(name).level for name in cli.LIBRARY_LOGGERS}
    assert levels == {"distributed": logging.WARNING, "bokeh": logging.WARNING,
                      "tornado": logging.CRITICAL, "asyncio": logging.WARNING}  # never louder
    cli.configure_logging(1)
    assert {logging.getLogger(name).level for name in cli.LIBRARY_LOGGERS} == {logging.INFO}
    cli.configure_logging(3)
    assert {logging.getLogger(name).level for name in cli.LIBRARY_LOGGERS} == {logging.DEBUG}


def test_version_without_an_installed_package_is_the_sources(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(cli.metadata, "version", missing)
    assert cli._version() == f"{cli.__version__} (not installed)"


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0.2, "0:00"), (5.6, "0:06"), (65, "1:05"), (3725, "1:02:05")])
def test_eta_reads_as_a_clock(seconds, text):
    assert cli_views._duration(seconds) == text


def test_python_dash_m_entry_point(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["technic-scan", "--symbols", "10"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the module is imported already
        with pytest.raises(SystemExit) as info:
            runpy.run_module("technic_panel.cli", run_name="__main__")
    assert info.value.code == 0
    assert parse_stream(capsys.readouterr().out)[-1]["data"]["processed"] == 10


# --- strategy settings are flags ------------------------------------------------------------

def test_strategy_flags_score_the_scan_end_to_end():
    from technic_panel.engine.scoring import Strategy

    done = run_cli("--symbols", "80", "--weight-trend", "2", "--stop-atr", "1.5",
                   "--strong-buy-threshold", "76")
    assert done.returncode == 0, done.stderr
    rows = results(parse_stream(done.stdout))
    assert len(rows) == 80
    configured = Strategy(weight_trend=2.0, stop_atr=1.5, strong_buy_threshold=76.0)
    assert all(configured.rescore(row) == row for row in rows)  # scored with these settings
    assert any(Strategy().rescore(row) != row for row in rows)  # not with the defaults


@pytest.mark.parametrize(("argv", "words"), [
    (["--buy-threshold", "90"], ["--buy-threshold:", "buy_threshold < strong_buy_threshold",
                                 "90.0"]),
    (["--weight-trend", "-1"], ["--weight-trend:", "weight_trend", "-1"]),
    (["--stop-atr", "tight"], ["--stop-atr:", "must be a number", "'tight'"]),
])
def test_a_bad_strategy_flag_exits_2_naming_it(capsys, argv, words):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    line = one_error_line(err)
    assert out == "" and all(word in line for word in words), line


def test_universe_path_flag_gives_the_files_their_metadata(capsys, tmp_path):
    prices = tmp_path / "prices"
    prices.mkdir()
    write_prices(prices, ["ACME", "BETA"])
    universe = tmp_path / "universe.csv"
    universe.write_text("symbol,name,sector,industry\nACME,Acme Corp,Energy,Oil & Gas\n")
    argv = ["--source", "files", "--path", str(prices), "--universe-path", str(universe)]
    assert cli.main(argv) == 0
    rows = {row["symbol"]: row for row in results(parse_stream(capsys.readouterr().out))}
    assert {symbol: (row["name"], row["sector"], row["industry"])
            for symbol, row in rows.items()} == {"ACME": ("Acme Corp", "Energy", "Oil & Gas"),
                                                 "BETA": ("BETA", "Unknown", "Unknown")}
    assert cli.main([*argv, "--sectors", "Energy"]) == 0
    assert [row["symbol"] for row in results(parse_stream(capsys.readouterr().out))] == ["ACME"]


def test_a_missing_universe_path_exits_2_naming_the_flag(capsys, tmp_path):
    write_prices(tmp_path, ["ACME"])
    missing = str(tmp_path / "nowhere.csv")
    assert cli.main(["--source", "files", "--path", str(tmp_path),
                     "--universe-path", missing]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert one_error_line(err) == ("technic-scan: --universe-path: ScanConfig.universe_path must "
                                   f"be an existing file, not {missing!r}")


def test_a_store_is_scanned_with_source_store_and_its_path(tmp_path):
    import pandas as pd
    from helpers import daily_bars

    from technic_panel.data import BarStore

    with BarStore(tmp_path / "bars.duckdb", create=True) as store:
        store.write({f"S{i}": daily_bars(250, seed=i) for i in range(12)})
        store.set_universe(pd.DataFrame({"symbol": ["S3"], "sector": ["Energy"]}))
    done = run_cli("--source", "store", "--path", str(tmp_path / "bars.duckdb"))
    assert done.returncode == 0, done.stderr
    messages = parse_stream(done.stdout)
    assert sorted(row["symbol"] for row in results(messages)) == sorted(f"S{i}" for i in range(12))
    assert messages[-1]["data"]["processed"] == 12
    assert [row["sector"] for row in results(messages) if row["symbol"] == "S3"] == ["Energy"]
    done = run_cli("--source", "store", "--path", str(tmp_path / "bars.duckdb"), "--sectors",
                   "Energy")
    assert [row["symbol"] for row in results(parse_stream(done.stdout))] == ["S3"]


def test_a_store_path_that_is_not_a_store_fails_the_scan_saying_why(capsys, tmp_path):
    (tmp_path / "plain.duckdb").write_text("not a store")
    assert cli.main(["--source", "store", "--path", str(tmp_path / "plain.duckdb")]) == 1
    messages = parse_stream(capsys.readouterr().out)
    assert "must be a bar store" in messages[0]["data"]["message"]
    assert messages[-1]["data"]["status"] == "failed"
