"""Files benchmark: `technic-scan --source files` on 5,000 symbols x 504 bars, three layouts.

A folder of CSV files, a folder of per-symbol Parquet files and one long Parquet table
(every symbol in one file), all exported from the scale benchmark's cached 5,000-symbol
store (see ``bench_scale.py``; ``--cache DIR`` as there). For each: the ``final``
message's first result and full scan, against the time to read every file once with
:class:`~technic_panel.data.files.FileSource` and against the figures the bar-store
issue started from.

Writes the "Files" section of BENCHMARKS.md; ``--print`` only prints it. Run with
`make bench`.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import CLI, cache_dir, store_path, timed_process  # noqa: E402
from report import write_section  # noqa: E402

from technic_panel.data.files import FileSource  # noqa: E402
from technic_panel.data.store import StoreSource  # noqa: E402

SYMBOLS = 5_000
RUNS = 3
BEFORE = {"csv": (7.1, 7.6), "parquet": (7.3, 7.9), "long": (19.1, 19.7)}
"""First result and full scan (s) of each layout before the bar-store issue (its text)."""
LABELS = {"csv": "folder of 5,000 CSV files", "parquet": "folder of 5,000 Parquet files",
          "long": "one long Parquet table"}
TARGETS = {"csv": "first <= 300 ms; full <= 1.3x read once", "parquet": "",
           "long": "full <= 1.5 s"}


def layouts(cache: Path) -> dict[str, Path]:
    """Return each layout's path, exporting it from the cached store once (``.done`` marks)."""
    source = StoreSource(store_path(cache, SYMBOLS))
    paths = {"csv": cache / f"csv-{SYMBOLS}", "parquet": cache / f"parquet-{SYMBOLS}",
             "long": cache / f"long-{SYMBOLS}.parquet"}
    for kind, path in paths.items():
        done = path.with_name(path.name + ".done")
        if done.exists():
            continue
        if kind == "long":
            pq.write_table(long_table(source), path)
        else:
            source.export(path, format=kind)
        done.touch()
    return paths


def long_table(source: StoreSource) -> pa.Table:
    """Return every symbol's bars as one table with a ``symbol`` column, symbol by symbol."""
    parts = []
    for symbol in source.symbols():
        frame = source.history(symbol).reset_index()
        frame.insert(0, "symbol", symbol)
        parts.append(pa.Table.from_pandas(frame, preserve_index=False))
    return pa.concat_tables(parts)


def read_once(path: Path) -> float:
    """Seconds for a new FileSource to read every symbol's bars once (the files cached)."""
    start = time.perf_counter()
    source = FileSource(path)
    for symbol in source.symbols():
        source.bars(symbol)
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    paths = layouts(cache_dir(argv))
    before = os.getloadavg()
    firsts: dict[str, list[float]] = {kind: [] for kind in paths}
    fulls: dict[str, list[float]] = {kind: [] for kind in paths}
    reads: dict[str, list[float]] = {kind: [] for kind in paths}
    for _ in range(RUNS):
        for kind, path in paths.items():
            run = timed_process([str(CLI), "--source", "files", "--path", str(path)])
            if run.processed != SYMBOLS:
                raise ValueError(f"{kind}: processed {run.processed} of {SYMBOLS} symbols")
            firsts[kind].append(run.first)
            fulls[kind].append(run.elapsed)
            reads[kind].append(read_once(path))
            print(kind, run, f"read once {reads[kind][-1]:.2f} s", flush=True)
    rows = []
    for kind in paths:
        first, full = statistics.median(firsts[kind]), statistics.median(fulls[kind])
        read = statistics.median(reads[kind])
        was_first, was_full = BEFORE[kind]
        rows.append(f"| {LABELS[kind]} | {first * 1000:,.0f} ms (was {was_first} s) | "
                    f"{full:.2f} s (was {was_full} s) | {read:.2f} s | {full / read:.2f}x | "
                    f"{TARGETS[kind]} |")
    body = "\n".join([
        f"{SYMBOLS:,} synthetic symbols x 504 daily bars (exported from the scale "
        "benchmark's store; sector Unknown), read by `technic-scan --source files --path "
        "PATH` (thread executor, NDJSON to a pipe), each run a fresh process: first result "
        "and full scan are the `final` message's `first_result_after` (from the scan's "
        "start, planning included) and `elapsed`. Read once: a new `FileSource` reading "
        "every symbol's bars once, in this process. The files are in the page cache. "
        f"Medians of {RUNS} interleaved runs; load average (1 min) {before[0]:.1f} at the "
        f"start and {os.getloadavg()[0]:.1f} at the end, on a 2-core machine shared with "
        "other work. \"was\": the figures the bar-store issue started from.",
        "",
        "| layout | first result | full scan | read once | full / read once | target |",
        "|---|---|---|---|---|---|",
        *rows,
    ])
    if "--print" in argv:
        print(body)
    else:
        write_section("Files", body)


if __name__ == "__main__":
    main(sys.argv[1:])
