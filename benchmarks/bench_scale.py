"""Scale benchmark: `technic-scan` from 1,000 to 100,000 symbols, synthetic and store sources,
thread and process executors, each run a fresh CLI process as a user starts it.

For each run: the ``final`` message's ``first_result_after`` (from the scan's start,
planning included) and ``elapsed`` (the full scan), symbols per second, and the peak
resident memory of the CLI process and its workers together (sampled every 20 ms).
Stores are built once into a cache folder (``--cache DIR``, default
``~/.cache/technic-panel/bench-scale``) and reused: writing 100,000 symbols takes minutes.

Writes the "Scale" section of BENCHMARKS.md; ``--print`` only prints it; ``--full`` adds
50,000 symbols and more runs; ``--sizes 1000,5000`` measures fewer. Run with `make bench`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import write_section  # noqa: E402

from technic_panel.data.base import Bars  # noqa: E402
from technic_panel.data.store import BarStore  # noqa: E402
from technic_panel.data.store_layout import current_name, read_dir  # noqa: E402
from technic_panel.data.synthetic import SyntheticSource  # noqa: E402

CLI = Path(sys.executable).with_name("technic-scan")
SIZES = (1_000, 5_000, 20_000, 100_000)
FULL_SIZES = (1_000, 5_000, 20_000, 50_000, 100_000)
RUNS = 3
"""Runs of each size below :data:`ONE_RUN` (medians); one at or above it."""
ONE_RUN = 20_000
FULL_RUNS, FULL_ONE_RUN = 5, 100_000
"""``--full``: runs of each size below 100,000 symbols; 100,000 symbols once."""
BATCH = 5_000
"""Symbols a store write stages at once."""
SAMPLE_SECONDS = 0.02


@dataclass(frozen=True)
class Run:
    """One CLI scan: its ``final`` message's figures and the peak RSS of its process tree."""

    first: float
    elapsed: float
    processed: int
    peak_mb: float


def build_store(path: Path, symbols: int) -> Path:
    """Write the synthetic universe of ``symbols`` (504 bars each) into a store at ``path``.

    One transaction, :data:`BATCH` symbols a write; a ``.done`` marker beside it says the
    build finished, so a killed build is redone.
    """
    done = path.with_name(path.name + ".done")
    if done.exists():
        return path
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(read_dir(path), ignore_errors=True)
    source = SyntheticSource(symbols)
    names = source.symbols()
    with BarStore(path, create=True) as store, store.transaction() as tx:
        for first in range(0, symbols, BATCH):
            tx.write({s: Bars(*source.bars(s)) for s in names[first:first + BATCH]})
    done.touch()
    return path


def tree_rss_mb(process: psutil.Process) -> float:
    """Return the resident memory of ``process`` and all its descendants, in MB."""
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def timed_process(command: list[str]) -> Run:
    """Run ``command`` to its end, sampling its tree's RSS; return the figures it printed last.

    The last line is `technic-scan`'s ``final`` message, or the JSON :func:`child` prints.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    watched, peak, ended = psutil.Process(process.pid), [0.0], threading.Event()

    def sample() -> None:
        while not ended.wait(SAMPLE_SECONDS):
            peak[0] = max(peak[0], tree_rss_mb(watched))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    last = ""
    assert process.stdout is not None and process.stderr is not None
    for line in process.stdout:
        last = line
    process.wait()
    ended.set()
    sampler.join()
    data = json.loads(last) if last.startswith("{") else {}
    data = data.get("data", data)
    if process.returncode != 0 or "first_result_after" not in data:
        raise ValueError(f"{' '.join(command)} failed ({process.returncode}): "
                         f"{process.stderr.read()[-2000:]}")
    return Run(data["first_result_after"], data["elapsed"], data["processed"], peak[0])


def child(source_name: str, executor: str, symbols: int, cache: Path) -> None:
    """Scan once with the engine after a one-symbol scan that starts the workers; print JSON.

    What a server or a notebook sees on its second scan: the process pool is up.
    """
    from technic_panel.data.store import StoreSource
    from technic_panel.engine.executors import close_shared_workers
    from technic_panel.engine.scanner import Scanner

    source = (SyntheticSource(symbols) if source_name == "synthetic"
              else StoreSource(store_path(cache, symbols)))
    Scanner(source, executor=executor, symbols=source.symbols()[:1]).run(lambda event: None)
    summary = Scanner(source, executor=executor).run(lambda event: None)
    close_shared_workers()
    print(json.dumps({"first_result_after": summary.first_event_after,
                      "elapsed": summary.elapsed, "processed": summary.processed}))


def cache_dir(argv: list[str]) -> Path:
    """Return the folder the benchmark stores are kept in (``--cache DIR`` or the default)."""
    if "--cache" in argv:
        folder = Path(argv[argv.index("--cache") + 1])
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
            "technic-panel" / "bench-scale"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def warm_page_cache(path: Path) -> None:
    """Read every file of the store's current generation once, so runs read the page cache."""
    generation = read_dir(path) / str(current_name(read_dir(path)))
    for file in generation.iterdir():
        with open(file, "rb") as handle:
            while handle.read(1 << 22):
                pass


def store_path(cache: Path, symbols: int) -> Path:
    """Return the cached store of ``symbols`` synthetic symbols, building it if need be."""
    return build_store(cache / f"store-{symbols}.duckdb", symbols)


def command(source: str, executor: str, symbols: int, cache: Path, *, cold: bool) -> list[str]:
    """Return the command of one run: `technic-scan` (``cold``) or :func:`child` (warm pool)."""
    if not cold:
        return [sys.executable, __file__, "--child", source, executor, str(symbols),
                "--cache", str(cache)]
    where = (["--symbols", str(symbols)] if source == "synthetic"
             else ["--source", "store", "--path", str(store_path(cache, symbols))])
    return [str(CLI), *where, "--executor", executor]


Cell = tuple[str, str, int]
"""(source, executor, symbols)."""


def cells_of(sizes: tuple[int, ...], one_run: int, full: bool) -> list[Cell]:
    """Return the cells to measure; by default the synthetic universe on the process executor
    only below ``one_run`` symbols (each worker generates it again: slow, and not a target)."""
    return [(source, executor, size) for size in sizes for source in ("synthetic", "store")
            for executor in ("thread", "process")
            if full or size < one_run or (source, executor) != ("synthetic", "process")]


def measure(cells: list[Cell], runs: int, cache: Path,
            one_run: int) -> tuple[dict[Cell, list[Run]], dict[Cell, Run]]:
    """Run every cell, interleaved round by round; return its runs and the cold process runs.

    Thread runs are `technic-scan` runs; process runs are :func:`child` runs on a started
    pool, plus one cold `technic-scan` run per size below ``one_run``. Sizes of
    ``one_run`` symbols and more run once.
    """
    for size in sorted({cell[2] for cell in cells}):
        warm_page_cache(store_path(cache, size))
    found: dict[Cell, list[Run]] = {cell: [] for cell in cells}
    cold: dict[Cell, Run] = {}
    for round_ in range(runs):
        for cell in cells:
            if round_ and cell[2] >= one_run:
                continue
            if cell[1] == "process" and not round_ and cell[2] < one_run:
                cold[cell] = checked(cell, timed_process(command(*cell, cache, cold=True)))
            found[cell].append(checked(cell, timed_process(
                command(*cell, cache, cold=cell[1] == "thread"))))
            print(cell, found[cell][-1], f"load {os.getloadavg()[0]:.1f}", flush=True)
    return found, cold


def checked(cell: Cell, run: Run) -> Run:
    """Return ``run``; ValueError if it did not process the whole universe."""
    if run.processed != cell[2]:
        raise ValueError(f"{cell}: processed {run.processed} of {cell[2]} symbols")
    return run


def row(cell: Cell, runs: list[Run], cold: Run | None) -> str:
    """Return the table row of one cell: medians of its runs."""
    source, executor, size = cell
    first = statistics.median(r.first for r in runs)
    elapsed = statistics.median(r.elapsed for r in runs)
    peak = statistics.median(r.peak_mb for r in runs)
    how = "CLI" if executor == "thread" else "warm pool"
    cold_text = "" if cold is None else f"{cold.first * 1000:,.0f} ms / {cold.elapsed:.2f} s"
    return (f"| {source} | {executor} ({how}) | {size:,} | {len(runs)} | "
            f"{first * 1000:.0f} ms (max {max(r.first for r in runs) * 1000:.0f}) | "
            f"{elapsed:.2f} s | {size / elapsed:,.0f} | {peak:,.0f} MB | "
            f"{peak / size * 1000:.1f} MB | {cold_text} |")


def verdicts(found: dict[Cell, list[Run]]) -> list[str]:
    """Return the rows comparing the medians with the issue's targets."""
    def median(cell: Cell, field: str) -> float:
        return statistics.median(getattr(r, field) for r in found[cell])

    lines = []
    for source in ("synthetic", "store"):
        for executor in ("thread", "process"):
            sizes = tuple(n for s, e, n in found if (s, e) == (source, executor))
            firsts = [median((source, executor, n), "first") * 1000 for n in sizes]
            rates = [n / median((source, executor, n), "elapsed") for n in sizes if n >= 5_000]
            spread = f"{max(rates) / min(rates) - 1:.0%}" if len(rates) > 1 else "n/a"
            low, high = (median((source, executor, n), "peak_mb") for n in (min(sizes),
                                                                             max(sizes)))
            growth = (high - low) / max(max(sizes) - min(sizes), 1) * 1000
            lines.append(f"| {source}, {executor} | {min(firsts):.0f} to {max(firsts):.0f} ms "
                         f"({min(sizes):,} to {max(sizes):,}) "
                         f"| {spread} | {high:,.0f} MB ({max(sizes):,}) | {growth:.1f} MB |")
    return lines


def main(argv: list[str]) -> None:
    cache = cache_dir(argv)
    full = "--full" in argv
    sizes, runs, one_run = ((FULL_SIZES, FULL_RUNS, FULL_ONE_RUN) if full
                            else (SIZES, RUNS, ONE_RUN))
    if "--sizes" in argv:
        sizes = tuple(int(n) for n in argv[argv.index("--sizes") + 1].split(","))
    before = os.getloadavg()
    started = time.perf_counter()
    found, cold = measure(cells_of(sizes, one_run, full), runs, cache, one_run)
    wall = time.perf_counter() - started
    after = os.getloadavg()
    body = "\n".join([
        "Thread rows: each run is a fresh `technic-scan` process, as a user starts it, so "
        "cold (the synthetic universe generated, the store mapped): `technic-scan --symbols N` "
        "or `--source store --path FILE`, NDJSON to a pipe; first result is the `final` "
        "message's `first_result_after` (from the scan's start, planning included), full "
        "scan its `elapsed`. Process rows: each run is a fresh Python process that starts "
        "the shared process pool with a one-symbol scan, then runs the scan through "
        "`Scanner` (what a server's or a notebook's later scans see; same two figures, from "
        "`ScanSummary`); the last column is one cold `technic-scan --executor process` run, "
        "whose first result waits for the pool's processes to start. Peak RSS: the process "
        "and all its children (pool workers, forkserver) together, sampled every "
        f"{SAMPLE_SECONDS * 1000:.0f} ms; RSS per 1,000 symbols is that peak over the size. "
        "Stores hold the same synthetic universe, 504 bars a symbol, built once and cached; "
        "their read generation is read once before the runs, so scans read the page cache. "
        f"Medians of {runs} runs interleaved round by round (one run at {one_run:,} symbols "
        f"and more); the whole benchmark took {wall:.0f} s, load average (1 min) "
        f"{before[0]:.1f} at the start and {after[0]:.1f} at the end, on a 2-core machine "
        "shared with other work: timings are noisy, the process executor's most of all. "
        + ("" if full else "The synthetic universe runs on the process executor below "
           f"{one_run:,} symbols only (each worker generates it again; `--full` runs it "
           "at every size)."),
        "",
        "| source | executor | symbols | runs | first result | full scan | symbols/s "
        "| peak RSS | RSS per 1,000 symbols | process, cold CLI: first / full |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(row(cell, found[cell], cold.get(cell)) for cell in found),
        "",
        "Against the targets (first result flat across sizes, store <= 20 ms at every size, "
        "synthetic <= 100 ms at 100,000; symbols per second within 20% from 5,000 up; peak "
        f"RSS of the {max(sizes):,}-symbol store scan <= 2 GB):",
        "",
        "| source, executor | first result (sizes) | symbols/s spread, 5,000 up | "
        "peak RSS at the largest size | RSS growth per 1,000 symbols, smallest to largest |",
        "|---|---|---|---|---|",
        *verdicts(found),
    ])
    if "--print" in argv:
        print(body)
    else:
        write_section("Scale", body)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), cache_dir(sys.argv))
    else:
        main(sys.argv[1:])
