"""Shared helpers of the benchmark scripts: machine facts, BENCHMARKS.md and README's table.

Each script replaces its own section of BENCHMARKS.md (:func:`write_section`), which then
regenerates README's performance table, the block between ``<!-- perf:start -->`` and
``<!-- perf:end -->``, from BENCHMARKS.md as it now stands (:func:`write_readme_performance`):
each row of that table is a :class:`Headline` that copies its figures out of one section, so
README never quotes a figure by hand. ``python benchmarks/report.py`` regenerates the block
alone.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
README = ROOT / "README.md"
PERF_START, PERF_END = "<!-- perf:start -->", "<!-- perf:end -->"
HEADER = "# Benchmarks\n\nWritten by `make bench` (scripts in `benchmarks/`); each section is " \
         "replaced by its script's latest run.\n"


def machine() -> str:
    """Describe the machine in one line: CPU, cores, memory, Python, key libraries."""
    import numpy
    import pandas
    import talib

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [line.split(":", 1)[1].strip() for line in info
                     if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    memory = psutil.virtual_memory().total / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, Python "
            f"{platform.python_version()}, TA-Lib {talib.__version__}, numpy {numpy.__version__}, "
            f"pandas {pandas.__version__}")


def median_of(runs: int, measure: Callable[[], float]) -> float:
    """Return the median of ``runs`` calls of ``measure``."""
    return statistics.median(measure() for _ in range(runs))


def percentile(values: list[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) of ``values``, nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def rss_mb() -> float:
    """Return this process's resident memory in MB."""
    return psutil.Process().memory_info().rss / 2**20


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of BENCHMARKS.md with ``body``."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = (f"<!-- {name}:start -->\n## {name}\n\nMeasured {stamp} on {machine()}.\n\n"
               f"{body.strip()}\n<!-- {name}:end -->")
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->",
                         re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else \
        f"{text.rstrip()}\n\n{section}\n"
    BENCHMARKS.write_text(text)
    write_readme_performance()
    print(section)


# --- README's performance table -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Headline:
    """One row of README's performance table, read from the section ``section`` of BENCHMARKS.md.

    ``read`` takes the section's text and returns the result, quoted from it, and whether the
    target is met (``True``) or what falls short of it (a note such as ``"not met"``).
    """

    section: str
    measure: str
    target: str
    read: Callable[[str], tuple[str, bool | str]]

    def row(self, sections: dict[str, str]) -> str:
        """Return the Markdown row; "not measured" while BENCHMARKS.md lacks the section."""
        if self.section not in sections:
            return f"| {self.measure} | not measured yet (`make bench`) | {self.target} |"
        result, met = self.read(sections[self.section])
        short = "" if met is True else f" ({met or 'not met'})"
        return f"| {self.measure} | {result} | {self.target}{short} |"


def sections(text: str) -> dict[str, str]:
    """Return each section of BENCHMARKS.md text by name."""
    return dict(re.findall(r"<!-- (.+?):start -->\n(.*?)<!-- \1:end -->", text, re.S))


def cell(section: str, row: str, column: int = 1) -> str:
    """Return a cell of the first table row of ``section`` whose first cell starts with ``row``."""
    for line in section.splitlines():
        cells = [text.strip() for text in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0].startswith(row):
            return cells[column]
    raise LookupError(f"BENCHMARKS.md has no table row starting {row!r} in:\n{section[:200]}")


def quote(section: str, pattern: str) -> str:
    """Return the first group of ``pattern`` in ``section``; LookupError naming it if absent."""
    match = re.search(pattern, section, re.S)
    if match is None:
        raise LookupError(f"BENCHMARKS.md does not say {pattern!r} in:\n{section[:200]}")
    return match[1]


def figures(text: str) -> list[str]:
    """Return the numbers written in ``text``, as written (``"1,234"``, ``"+6.7"``)."""
    return re.findall(r"[+-]?\d[\d,]*(?:\.\d+)?", text)


def value(text: str, index: int = 0) -> float:
    """Return the ``index``-th number written in ``text`` as a float."""
    return float(figures(text)[index].replace(",", ""))


def _full_scan(section: str) -> tuple[str, bool]:
    full = cell(section, "thread", 2)
    ratio = quote(section, r"thread scan / floor = ([\d.]+x)")
    return f"{full} ({ratio} the raw TA-Lib floor)", value(full) <= 1.0 and value(ratio) <= 2


def _first_result(section: str) -> tuple[str, bool]:
    first = cell(section, "thread", 1)
    latent = quote(section, r"`latency_ms=50`.*?first result ([\d.]+ ms)")
    return f"{first}; {latent} with 50 ms provider latency", \
        value(first) <= 20 and value(latent) <= 100


def _top_20(section: str) -> tuple[str, bool]:
    prioritised = cell(section, "prioritised by snapshot (arrival order")
    shuffled = cell(section, "random order")
    return f"{prioritised} prioritised, {shuffled} random", value(prioritised) >= 60


def _overhead(section: str) -> tuple[str, bool]:
    overhead = cell(section, "streaming overhead").split()[0]
    floor = cell(section, "the floor of a replayable stream")
    return f"{overhead} (keeping the messages for replay alone: {floor})", value(overhead) <= 5


def _delivery(section: str) -> tuple[str, bool | str]:
    coroutines = figures(cell(section, "the same, 100 `async for` subscribers"))[1]
    threads = figures(cell(section, "delivery latency, add to receipt"))[1]
    late = [name for name, p99 in (("async", coroutines), ("threads", threads))
            if float(p99) > 4]
    met: bool | str = True if not late else "not met" if len(late) == 2 else f"{late[0]}: not met"
    return f"{coroutines} / {threads} ms", met


def _scan_memory(section: str) -> tuple[str, bool]:
    growth = quote(cell(section, "resident memory across 500"), r"([+-][\d.]+ MB)$")
    return growth, abs(value(growth)) <= 6


def _dashboard(section: str) -> tuple[str, bool]:
    first = cell(section, "click to first row").split(" (")[0]
    rows = cell(section, "click to all 5,000 rows")
    return f"{first}; {rows}", value(first) <= 300 and value(rows) <= 3


def _api(section: str) -> tuple[str, bool]:
    first = cell(section, "first result at the client")
    p99 = figures(cell(section, "stream latency, emission to client receipt, 200 "))[1]
    return f"{first}; {p99} ms", value(first) <= 50 and float(p99) <= 40


def _live(section: str) -> tuple[str, bool]:
    here = figures(cell(section, "feed-to-message p50 / p99, in process"))[1]
    sse = figures(cell(section, "feed-to-SSE-client p50 / p99, 5,000"))[1]
    cpu = figures(cell(section, "server CPU, 5,000"))[0]
    rows = [figures(cell(section, f"feed-to-row in the browser p50 / p99, {symbols}"))[1]
            for symbols in ("5,000", "1,000")]
    return (f"{here} ms; {sse} ms; {cpu}% of a core; {rows[0]} ms ({rows[1]} ms at 1,000 "
            "symbols x 4 ticks)", float(here) <= 50 and float(sse) <= 100 and float(cpu) <= 60
            and value(rows[0]) <= 250)


HEADLINES = (
    Headline("Scan engine", "full 5,000-symbol scan, thread executor", "<= 1.0 s, <= 2x floor",
             _full_scan),
    Headline("Scan engine", "first result after the scan starts", "<= 20 ms; <= 100 ms",
             _first_result),
    Headline("Scan engine", "final top-20 arriving in the first 20% of the scan", ">= 60%",
             _top_20),
    Headline("Streaming core", "streaming overhead over the bare scan", "<= 5%", _overhead),
    Headline("Streaming core",
             "delivery latency p99, 100 `async for` subscribers / 100 subscriber threads",
             "<= 4 ms", _delivery),
    Headline("Streaming core", "memory across 500 consecutive scans", "within 6 MB",
             _scan_memory),
    Headline("Dashboard", "dashboard: click to first row in the browser; all 5,000 rows",
             "<= 300 ms; <= 3 s", _dashboard),
    Headline("HTTP API",
             "HTTP API: first result at the client after the POST; stream p99 at 200 streams",
             "<= 50 ms; <= 40 ms", _api),
    Headline("Live scan",
             "live, 5,000 bars/s: feed-to-message p99; feed-to-SSE p99; server CPU; "
             "feed-to-row p99 in the browser", "<= 50 ms; <= 100 ms; <= 60%; <= 250 ms", _live),
)
"""README's performance table, row by row."""


def performance_table(benchmarks: str) -> str:
    """Return README's performance table (with its markers) for BENCHMARKS.md text."""
    found = sections(benchmarks)
    rows = [headline.row(found) for headline in HEADLINES]
    return "\n".join([PERF_START, "| measure | result | target |", "|---|---|---|", *rows,
                      PERF_END])


def with_performance(readme: str, benchmarks: str) -> str:
    """Return README text with its performance block replaced by the table for ``benchmarks``."""
    block = re.compile(rf"{re.escape(PERF_START)}.*?{re.escape(PERF_END)}", re.S)
    if block.search(readme) is None:
        raise LookupError(f"README.md has no {PERF_START} ... {PERF_END} block")
    return block.sub(lambda _: performance_table(benchmarks), readme)


def write_readme_performance() -> None:
    """Rewrite README's performance block from BENCHMARKS.md as it stands."""
    readme = README.read_text()
    updated = with_performance(readme, BENCHMARKS.read_text())
    if updated != readme:
        README.write_text(updated)


if __name__ == "__main__":
    write_readme_performance()
