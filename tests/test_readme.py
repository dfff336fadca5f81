"""The README, run: every code block in it is exercised here, so the front door cannot rot.

Each block is claimed by exactly one test (:data:`CLAIMS`); a new block that no test
claims fails :func:`test_every_code_block_is_claimed_by_a_test`. Commands run as written,
from the project root, against the server ``make serve`` starts, with only its port
(and the example scan id) swapped for the real ones.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import panel as pn
import pytest
from browser_helpers import wait_answers
from helpers import free_port

from technic_panel.config import ScanConfig
from technic_panel.streaming.contract import validate_message

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXAMPLE_PORT = "5006"
EXAMPLE_SCAN_ID = "scan_3f2a9c1b7d4e"

CLAIMS = {
    "the two commands": lambda lang, code: code.startswith("make serve"),
    "the notebook view": lambda lang, code: lang == "python" and "Dashboard(controller)" in code,
    "the notebook run": lambda lang, code: lang == "python" and ").run()" in code,
    "the Python client": lambda lang, code: lang == "python" and "ScanClient" in code,
    "the command line": lambda lang, code: (lang == "bash" and "technic-scan" in code
                                            and "technic-data" not in code),
    "scan the S&P 500": lambda lang, code: lang == "bash" and "technic-data fetch yahoo" in code,
    "curl": lambda lang, code: lang == "bash" and code.startswith("curl"),
    "a message": lambda lang, code: lang == "json",
    "the data-flow picture": lambda lang, code: lang == "" and "DataSource ->" in code,
}
"""Which test exercises which block: the name of the claim, and how it knows its block."""


def code_blocks() -> list[tuple[str, str]]:
    """Return every fenced block of the README as (language, code)."""
    return [(match[1], match[2]) for match in BLOCK.finditer(README)]


def block(claim: str) -> str:
    """Return the code of the one block ``claim`` names."""
    (code,) = [code for lang, code in code_blocks() if CLAIMS[claim](lang, code)]
    return code


def commands(code: str) -> list[str]:
    """Return a shell block's commands, comments stripped and continued lines joined."""
    lines = (line.split("  #")[0].strip() for line in code.replace("\\\n", " ").splitlines())
    return [line for line in lines if line]


def run_cell(code: str, namespace: dict) -> object:
    """Run ``code`` as a notebook cell does: the statements, then the last expression's value."""
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<README>", "exec"), namespace)  # noqa: S102 - the README's own code
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), "<README>", "eval"), namespace)  # noqa: S307


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


# --- the served app, as `make serve` starts it ------------------------------------------------

@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """Run ``make serve`` on a free port; yield ``host:port`` once the API answers."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a full pipe blocks the server
        process = subprocess.Popen(["make", "--no-print-directory", "serve", f"PORT={port}"],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
                                   start_new_session=True)
        try:
            wait_answers(f"http://{address}/health", process, log, 120, name="make serve")
            yield address
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def on_port(code: str, address: str) -> str:
    """Point the README's examples at ``address`` instead of the default port."""
    return code.replace(f"127.0.0.1:{EXAMPLE_PORT}", address).replace(
        f"localhost:{EXAMPLE_PORT}", address)


# --- the blocks ---------------------------------------------------------------------------------

def test_every_code_block_is_claimed_by_a_test():
    for lang, code in code_blocks():
        claimed = [name for name, claims in CLAIMS.items() if claims(lang, code)]
        assert len(claimed) == 1, f"README block claimed by {claimed}, not one test:\n{code}"
    for name in CLAIMS:
        block(name)  # every claim finds its block


def test_the_readme_opens_with_the_two_commands():
    title, first = README.split("\n\n", 2)[:2]
    assert title == "# technic-panel"
    assert first == f"```bash\n{block('the two commands')}```"
    assert [line.split()[:2] for line in commands(block("the two commands"))] == [
        ["make", "serve"], ["make", "test"]]


def test_make_serve_serves_the_dashboard_and_the_api(served):
    status, page = get(f"http://{served}/app")
    assert status == 200 and b"Bokeh" in page
    health = json.loads(get(f"http://{served}/health")[1])
    assert health["status"] == "ok"


def test_make_test_runs_lint_every_test_the_notebooks_and_the_coverage_gate():
    # `make test` itself is what runs this module; here its recipe is checked, not re-run.
    recipe = subprocess.run(["make", "-n", "--no-print-directory", "test"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    assert "ruff check" in recipe and "--nbval-lax" in recipe and "notebooks/" in recipe
    assert "mypy technic_panel/engine technic_panel/data technic_panel/streaming" in recipe
    assert "--fail-under=100" in recipe and "tests" in recipe


def test_make_serve_installs_the_runtime_and_the_dask_extra_only(tmp_path):
    recipe = subprocess.run(["make", "-n", "--no-print-directory", "serve",
                             f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    installs = [line.split(" install ", 1)[1] for line in recipe.splitlines()
                if " -m pip install " in line]
    assert "--quiet -e '.[dask]'" in installs, recipe
    assert not any("test" in line or "yahoo" in line for line in installs), installs


def test_building_the_package_gives_no_deprecation_warning(tmp_path):
    # A `license = {text=...}` table, say, makes setuptools warn while pip builds the package.
    for name in ("pyproject.toml", "README.md"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    shutil.copytree(ROOT / "technic_panel", tmp_path / "technic_panel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "--isolated", "wheel", "--no-deps",
                            "-v", "-w", "dist", "."], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    log = build.stdout + build.stderr
    assert build.returncode == 0, log[-2000:]
    assert [line for line in log.splitlines() if "deprecat" in line.lower()] == []
    assert list((tmp_path / "dist").glob("technic_panel-*.whl"))


def test_the_notebook_view_example_builds_the_dashboard(panel_state):
    dashboard = run_cell(block("the notebook view"), {})
    assert isinstance(dashboard, pn.viewable.Viewer)  # a notebook displays it as this view:
    view = pn.panel(dashboard)
    assert isinstance(view, pn.viewable.Viewable)
    assert "results-table" in {model.name for model in view.get_root().references()}


def test_the_notebook_run_example_gives_the_top_five():
    top = run_cell(block("the notebook run"), {})
    assert isinstance(top, pd.DataFrame)
    assert list(top.columns) == ["symbol", "signal", "tech_rating", "alpha_score"]
    assert len(top) == 5 and top["tech_rating"].is_monotonic_decreasing


@pytest.mark.parametrize("command", commands(block("the command line")))
def test_the_command_line_examples_run(command):
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    if "--format table" in command:
        assert "completed: 5000/5000 processed" in done.stdout
        return
    messages = [validate_message(json.loads(line)) for line in done.stdout.splitlines()]
    assert [msg["metadata"]["seq"] for msg in messages] == list(range(1, len(messages) + 1))
    assert messages[-1]["type"] == "final" and any(m["type"] == "result" for m in messages)


def test_the_exit_code_example_is_what_a_bad_argument_prints():
    quoted = re.search(r"e\.g\. `(technic-scan: .*?)`", README, re.DOTALL)[1]
    expected = " ".join(quoted.split())
    done = subprocess.run([str(Path(sys.executable).parent / "technic-scan"),
                           "--max-fraction", "1.5"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == expected


def test_the_message_example_keeps_the_contract():
    message = validate_message(json.loads(block("a message")))
    assert message["type"] == "result" and message["metadata"]["scan_id"] == EXAMPLE_SCAN_ID


def test_the_curl_examples_start_watch_and_stop_a_scan(served):
    start, watch, stop = commands(on_port(block("curl"), served))

    def run(command: str) -> str:
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                              timeout=120, check=True)
        return done.stdout

    scan_id = json.loads(run(start))["scan_id"]
    events = run(watch.replace(EXAMPLE_SCAN_ID, scan_id))
    assert events.startswith("retry:") and "event: result" in events
    assert events.rstrip().splitlines()[-1].startswith("data: ")
    assert "event: final" in events
    stopped = json.loads(run(stop.replace(EXAMPLE_SCAN_ID, scan_id)))
    assert stopped["scan_id"] == scan_id and "error" not in stopped


def test_the_python_client_example_streams_a_scan_to_its_final(served):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_cell(on_port(block("the Python client"), served), {})
    lines = printed.getvalue().splitlines()
    assert lines[-1] == "final None"
    assert lines[0].startswith("result ") and len(lines) > 10


def test_the_data_flow_picture_names_real_parts():
    import technic_panel.data
    import technic_panel.engine.scanner
    import technic_panel.streaming.manager
    import technic_panel.streaming.streamer
    import technic_panel.ui.controller

    names = {"DataSource": technic_panel.data, "Scanner": technic_panel.engine.scanner,
             "ResultStreamer": technic_panel.streaming.streamer,
             "StreamManager": technic_panel.streaming.manager,
             "ScanController": technic_panel.ui.controller}
    picture = block("the data-flow picture")
    for name, module in names.items():
        assert name in picture and hasattr(module, name)


# --- the prose around the blocks ----------------------------------------------------------------

def test_the_settings_table_lists_every_scan_setting():
    table = README.split("## Scan settings", 1)[1].split("\n\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    listed = {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert listed == set(ScanConfig.param) - {"name"}


def test_the_endpoints_listed_are_the_ones_served(served):
    spec = json.loads(get(f"http://{served}/openapi.json")[1])
    listed = set(re.findall(r"`(?:GET|POST|WS) (/[\w/{}.]+)", README))
    assert listed == set(spec["paths"])


def test_the_modules_and_settings_named_exist():
    for path in set(re.findall(r"`(technic_panel/[\w/]+\.py|technic_panel/\w+/)`", README)):
        assert (ROOT / path).exists(), path
    for module in set(re.findall(r"`(\w+\.py)`", README)):
        assert list(ROOT.glob(f"**/{module}")), module
    source = "".join(path.read_text() for path in (ROOT / "technic_panel").glob("*.py"))
    for variable in set(re.findall(r"`(TECHNIC_\w+)", README)):
        assert variable in source, variable


@functools.cache
def benchmarks_report():
    """Import ``benchmarks/report.py``, which writes BENCHMARKS.md and README's table."""
    name = "benchmarks_report"
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "report.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_performance_table_is_the_one_benchmarks_md_gives():
    # `make bench` regenerates the block after each section; a hand edit or a stale block
    # fails here. To refresh it from BENCHMARKS.md alone: python benchmarks/report.py
    report = benchmarks_report()
    benchmarks = (ROOT / "BENCHMARKS.md").read_text()
    assert report.with_performance(README, benchmarks) == README, \
        "README's perf block is stale: run python benchmarks/report.py"
    assert README.count(report.PERF_START) == README.count(report.PERF_END) == 1


def test_the_performance_figures_are_quoted_from_benchmarks_md():
    benchmarks = (ROOT / "BENCHMARKS.md").read_text()
    table = README.split("<!-- perf:start -->", 1)[1].split("<!-- perf:end -->", 1)[0]
    rows = [line.split("|")[2] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| measure")]
    assert len(rows) == len(benchmarks_report().HEADLINES)
    for result in rows:
        assert "not measured" not in result, result
        for figure in re.findall(r"\d[\d,.]*(?: ?(?:ms|s|MB|%|x))?", result):
            assert figure in benchmarks, f"{figure!r} (README) is not in BENCHMARKS.md"


def test_a_benchmark_run_rewrites_the_performance_table(tmp_path, monkeypatch):
    # What `make bench` does, on copies: a script writes its section, README's table follows.
    report = benchmarks_report()
    for name in ("BENCHMARKS", "README"):
        copy = tmp_path / getattr(report, name).name
        copy.write_text(getattr(report, name).read_text())
        monkeypatch.setattr(report, name, copy)
    engine = report.sections(report.BENCHMARKS.read_text())["Scan engine"]
    body = engine.split(".\n\n", 1)[1]  # what follows the "Measured <when> on <machine>." line
    rerun = re.sub(r"^\| thread \| [^|]+ \| [^|]+ \|", "| thread | 9.9 ms | 1.444 s |", body,
                   count=1, flags=re.M)
    assert rerun != body
    report.write_section("Scan engine", rerun)
    table = report.README.read_text().split("<!-- perf:start -->")[1].split("<!-- perf:end")[0]
    assert "| full 5,000-symbol scan, thread executor | 1.444 s (" in table
    assert "| <= 1.0 s, <= 2x floor (not met) |" in table and "| 9.9 ms; " in table
    assert report.README.read_text().replace(table, "") == README.replace(
        README.split("<!-- perf:start -->")[1].split("<!-- perf:end")[0], "")


def test_scan_the_sp500_runs_offline_and_fetch_fails_fast(tmp_path):
    universe, fetch, scan = commands(block("scan the S&P 500"))
    env = {**os.environ, "HTTPS_PROXY": f"http://127.0.0.1:{free_port()}"}

    def run(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", command.replace(".venv/bin/", f"{ROOT}/.venv/bin/")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)

    done = run(universe)
    assert done.returncode == 0 and "503 symbols, 0 without a sector" in done.stdout
    done = run(fetch)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "Yahoo Finance is unreachable" in done.stderr
    done = run(scan)
    assert done.returncode == 0 and "completed: 0/0 processed" in done.stdout
