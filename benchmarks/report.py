"""Shared helpers of the benchmark scripts: machine facts and BENCHMARKS.md sections."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import psutil

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
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
    print(section)
