"""technic-scan: end to end through a real process, and in-process for the details."""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from technic_panel import cli
from technic_panel.config import ScanConfig
from technic_panel.streaming.jsonsafe import from_json

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "technic_panel.cli"]
SAMPLE_SYMBOLS = {"AAPL", "FB", "GOOG", "IBM", "MSFT"}


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
    done = run_cli("--symbols", "400", "--max-signals", "5")
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
    (["--executor", "gpu"], ["--executor", "invalid choice", "'gpu'"]),
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


def test_a_closed_stdout_stops_the_scan_quietly():
    process = subprocess.Popen([*COMMAND, "--symbols", "3000", "--latency-ms", "20"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert process.stdout.readline()
        process.stdout.close()  # like `technic-scan | head -1`
        stderr = process.stderr.read()
        returncode = process.wait(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert returncode == 1
    assert b"Traceback" not in stderr and b"BrokenPipeError" not in stderr


def test_the_console_script_is_installed():
    script = Path(sys.executable).with_name("technic-scan")
    if not script.exists():
        pytest.skip("the package is not installed with its console scripts")
    done = subprocess.run([str(script), "--symbols", "20"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert parse_stream(done.stdout)[-1]["data"]["status"] == "completed"


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
        action = flags[name]
        assert action.option_strings == ["--" + name.replace("_", "-")]
        assert action.help.startswith(ScanConfig.param[name].doc.replace("%", "%%"))
    assert flags["executor"].choices == ["thread", "process", "dask"]
    assert flags["format"].choices == ("ndjson", "table")


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--max-signals N", "--quality-signals STRONG_BUY,BUY", "--timeout SECONDS",
                 "--format {ndjson,table}", "--sectors SECTOR,..."):
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
     "technic-scan: --format: invalid choice: 'xml' (choose from 'ndjson', 'table')"),
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
    assert last[2].startswith("STRONG_BUY ") and "| errors " in last[2]
    assert int(last[2].rsplit(" ", 1)[1]) > 0
    assert last[4].split()[:2] == ["#", "symbol"]
    assert len(last) == 5 + 20 + 1
    assert last[-1].startswith("completed: 600/600 processed")
    live = frames[0].splitlines()
    assert live[0].endswith("running")
    assert len(live) <= 5 + 10


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


def test_python_dash_m_entry_point(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["technic-scan", "--symbols", "10"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the module is imported already
        with pytest.raises(SystemExit) as info:
            runpy.run_module("technic_panel.cli", run_name="__main__")
    assert info.value.code == 0
    assert parse_stream(capsys.readouterr().out)[-1]["data"]["processed"] == 10
