"""Bar-store benchmark: reading straight from DuckDB against the memory-mapped generation,
writes, the first result of a store scan from 1,000 to 100,000 symbols, and a process scan
of a 5,000-symbol store against the raw TA-Lib floor measured in the same run, and the
streaming overhead of scans of that store on threads and processes.

Writes the "Bar store" section of BENCHMARKS.md; ``--print`` only prints it, and
``--sizes 1000,5000`` measures fewer universes. Run with `make bench`.
"""

from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import talib_floor  # noqa: E402
from bench_stream import overheads  # noqa: E402
from report import rss_mb, write_section  # noqa: E402

from technic_panel.data.base import Bars  # noqa: E402
from technic_panel.data.store import BarStore, StoreSource  # noqa: E402
from technic_panel.data.store_layout import Generation, current_name, read_dir  # noqa: E402
from technic_panel.data.synthetic import SyntheticSource  # noqa: E402
from technic_panel.engine.executors import close_shared_workers  # noqa: E402
from technic_panel.engine.scanner import Scanner  # noqa: E402

SIZES = (1_000, 5_000, 20_000, 100_000)
READS = 5_000
"""The universe the read and process-scan figures use (504 bars a symbol)."""
RUNS = 5
DUCKDB_SAMPLE = 500
"""Symbols read one query each from DuckDB (all 5,000 would take as long again)."""
OVERHEAD_ROUNDS = 15
"""Rounds of the streaming-overhead scans per executor: bare, replay floor, streamed."""


def build(folder: Path, symbols: int) -> tuple[Path, float, float]:
    """Write a store of ``symbols`` synthetic symbols, then append their last day.

    Returns the store's path, the seconds of the first write (503 bars a symbol, in
    batches of 5,000 symbols, one transaction) and of the one-day append.
    """
    source = SyntheticSource(symbols)
    names = source.universe()["symbol"].tolist()
    path = folder / f"store-{symbols}.duckdb"
    with BarStore(path, create=True) as store:
        start = time.perf_counter()
        with store.transaction() as tx:
            for first in range(0, symbols, 5_000):
                tx.write({s: Bars(*(a[:-1] for a in source.bars(s)))
                          for s in names[first:first + 5_000]})
        created = time.perf_counter() - start
        last = {s: source.bars(s) for s in names}
        start = time.perf_counter()
        store.write(last)
        appended = time.perf_counter() - start
    del source, last
    gc.collect()
    return path, created, appended


def first_result(path: Path) -> float:
    """Seconds from Scanner.run to the first result of a thread scan of the store."""
    scanner = Scanner(StoreSource(path))
    summary = scanner.run(lambda event: scanner.stop())
    assert summary.first_event_after is not None
    return summary.first_event_after


def duckdb_reads(path: Path, symbols: list[str]) -> tuple[float, float]:
    """Return (ms a symbol, one query each; s for every bar in one ordered query) from DuckDB."""
    con = duckdb.connect(str(path), read_only=True)
    sample = symbols[:DUCKDB_SAMPLE]
    start = time.perf_counter()
    for symbol in sample:
        columns = con.execute("SELECT date, open, high, low, close, volume FROM bars "
                              "WHERE symbol = ? ORDER BY date", [symbol]).fetchnumpy()
        Bars(*(np.asarray(columns[name]) for name in columns))
    per_symbol = (time.perf_counter() - start) / len(sample)
    start = time.perf_counter()
    columns = con.sql("SELECT symbol, date, open, high, low, close, volume FROM bars "
                      "ORDER BY symbol, date").fetchnumpy()
    keys = np.asarray(columns["symbol"])
    bounds = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    arrays = [np.asarray(columns[name]) for name in ("date", "open", "high", "low", "close",
                                                     "volume")]
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(keys)], strict=True):
        Bars(*(a[lo:hi] for a in arrays)).close.sum()
    whole = time.perf_counter() - start
    con.close()
    return per_symbol * 1000, whole


def mapped_reads(path: Path, symbols: list[str]) -> tuple[float, float, float]:
    """Return (ms to map the generation; us a symbol; s to read every bar) from the layout.

    The generation is mapped anew (a source maps it once a process), so the whole read
    counts the page faults of a first touch (the files are in the page cache).
    """
    directory = read_dir(path) / str(current_name(read_dir(path)))
    start = time.perf_counter()
    generation = Generation(directory)
    opened = time.perf_counter() - start
    start = time.perf_counter()
    for symbol in symbols:
        generation.bars(symbol).close.sum()
    whole = time.perf_counter() - start
    start = time.perf_counter()
    for symbol in symbols:
        generation.bars(symbol)
    per_symbol = (time.perf_counter() - start) / len(symbols)
    return opened * 1000, per_symbol * 1e6, whole


def scan_seconds(path: Path, executor: str) -> float:
    start = time.perf_counter()
    Scanner(StoreSource(path), executor=executor).run(lambda event: None)
    return time.perf_counter() - start


def _overhead_row(executor: str, figures: dict[str, float], target: str) -> str:
    return (f"| {executor} | {figures['bare']:.3f} s | {figures['streamed']:.3f} s | "
            f"{figures['overhead']:+.1f}% ({figures['low']:+.1f} to {figures['high']:+.1f}%) | "
            f"{figures['floor']:+.1f}% | {figures['overhead'] - figures['floor']:+.1f} points | "
            f"{target} |")


def size_rows(folder: Path, sizes: tuple[int, ...]) -> tuple[list[str], dict[int, Path]]:
    rows, paths = [], {}
    for symbols in sizes:
        path, created, appended = build(folder, symbols)
        paths[symbols] = path
        first_result(path)  # warm: the files in the page cache, the modules imported
        firsts = [first_result(path) for _ in range(RUNS)]
        first_part = statistics.median(_first_part(path) for _ in range(RUNS))
        generation = read_dir(path) / str(current_name(read_dir(path)))
        size = sum(f.stat().st_size for f in generation.iterdir())
        rows.append(f"| {symbols:,} | {created:.1f} s | {appended:.2f} s | "
                    f"{path.stat().st_size / 2**20:,.0f} MB + {size / 2**20:,.0f} MB | "
                    f"{first_part * 1000:.1f} ms | {statistics.median(firsts) * 1000:.1f} ms "
                    f"(max {max(firsts) * 1000:.1f}) |")
        print(rows[-1], f"rss {rss_mb():.0f} MB", flush=True)
    return rows, paths


def _first_part(path: Path) -> float:
    start = time.perf_counter()
    next(StoreSource(path).plan_parts())
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    sizes = SIZES
    if "--sizes" in argv:
        sizes = tuple(int(n) for n in argv[argv.index("--sizes") + 1].split(","))
    with tempfile.TemporaryDirectory(prefix="bench-store-") as temporary:
        folder = Path(temporary)
        rows, paths = size_rows(folder, tuple(sorted(set(sizes) | {READS})))
        path = paths[READS]
        symbols = StoreSource(path).symbols()
        db_symbol, db_whole = duckdb_reads(path, symbols)
        opened, mapped_symbol, mapped_whole = mapped_reads(path, symbols)
        source = StoreSource(path)
        bars = [source.bars(s) for s in symbols]
        floor = statistics.median(talib_floor(bars) for _ in range(RUNS))
        scan_seconds(path, "process")  # warm: the shared process pool
        process = statistics.median(scan_seconds(path, "process") for _ in range(RUNS))
        thread = statistics.median(scan_seconds(path, "thread") for _ in range(RUNS))
        streaming = {executor: overheads(StoreSource(path), executor, OVERHEAD_ROUNDS)
                     for executor in ("thread", "process")}
        close_shared_workers()
    body = "\n".join([
        "A store of N synthetic symbols: the first write holds 503 daily bars a symbol (one "
        "transaction, batches of 5,000 symbols), then one append adds each symbol's last day. "
        "Size: the DuckDB file + the current read generation. First plan part: StoreSource "
        f"opened and its first `plan_parts()` frame (256 rows), median of {RUNS}. First result: "
        f"`Scanner.run` to the first result of a thread scan, median (and max) of {RUNS} "
        "after one warm-up scan.",
        "",
        "| symbols | first write | one-day append | size | first plan part | first result |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Reads of the {READS:,}-symbol store (504 bars a symbol), straight from DuckDB "
        "(a read-only connection, which fails while a writer holds the file) against the "
        "memory-mapped Arrow generation that scans read:",
        "",
        "| read | DuckDB | mapped generation |",
        "|---|---|---|",
        f"| one symbol's bars | {db_symbol:.2f} ms (one query each, {DUCKDB_SAMPLE} "
        f"symbols) | {mapped_symbol:.1f} us |",
        f"| every bar of every symbol | {db_whole:.2f} s (one ordered query, split) | "
        f"{mapped_whole:.3f} s (mapping it: {opened:.1f} ms) |",
        "",
        f"Scan of the {READS:,}-symbol store, median of {RUNS} after a warm-up: thread "
        f"{thread:.3f} s, process {process:.3f} s; raw TA-Lib floor {floor:.3f} s; "
        f"process scan / floor = {process / floor:.2f}x (target <= 1.1x).",
        "",
        f"Streaming overhead on the {READS:,}-symbol store: {OVERHEAD_ROUNDS} rounds per "
        "executor, each a bare scan, the replay floor (the same scan keeping each event's "
        "data in a message envelope, nothing else) and the scan with every event through a "
        "ResultStreamer read by a subscriber thread, back to back (on threads also the "
        "streamed scan with no reader); figures are medians, overheads the medians of the "
        "rounds' ratios to the bare scan (their middle half in brackets).",
        "",
        "| executor | bare scan | streamed scan | streaming overhead | replay floor | "
        "above the floor | target |",
        "|---|---|---|---|---|---|---|",
        *(_overhead_row(executor, figures, target) for (executor, figures), target
          in zip(streaming.items(), ("<= 3 points above the floor", "<= 2%"), strict=True)),
    ])
    if "--print" in argv:
        print(body)
    else:
        write_section("Bar store", body)


if __name__ == "__main__":
    main(sys.argv[1:])
