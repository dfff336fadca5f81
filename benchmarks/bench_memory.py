"""Server memory under repeated large scans: 20 scans of 100,000 symbols, one after another.

Writes the "Server memory" section of BENCHMARKS.md. Run with `make bench`.

The manager is built as the server's (`default_manager`) from the default
ServerPolicy: at most `TECHNIC_MAX_SCANS` scans and `TECHNIC_MAX_HELD_MESSAGES`
messages held, finished scans dropped oldest first. Before the policy, each
finished scan kept its messages and its source's bars until 300 s after the last
poll (0.39 -> 5.2 GB over repeated 100,000-symbol scans).
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import rss_mb, write_section  # noqa: E402

from technic_panel.policy import ServerPolicy  # noqa: E402
from technic_panel.streaming.manager import StreamManager  # noqa: E402

SCANS = 20
SYMBOLS = 100_000
BOUND_MB = 3072
"""The documented bound on resident memory after the 20 scans (README, test_security)."""


def main() -> None:
    policy = ServerPolicy()
    manager = StreamManager(max_concurrent=policy.max_scans,
                            max_held_messages=policy.max_held_messages)
    start = rss_mb()
    after, seconds = [], []
    for seed in range(SCANS):
        began = time.perf_counter()
        record = manager.get(manager.start_stream({"symbols": SYMBOLS, "seed": seed}))
        while record.running:
            time.sleep(0.05)
        seconds.append(time.perf_counter() - began)
        gc.collect()
        after.append(rss_mb())
        print(f"scan {seed + 1}: {seconds[-1]:.1f} s, RSS {after[-1]:.0f} MB", flush=True)
    held_scans = manager.list()
    held = sum(manager.get(scan["scan_id"]).held_messages for scan in held_scans)
    manager.shutdown()
    verdict = "within" if max(after) < BOUND_MB else "OVER"
    write_section("Server memory", f"""
Method: {SCANS} scans of {SYMBOLS:,} synthetic symbols, one after another, in one
`StreamManager` built from the default server policy (`TECHNIC_MAX_SCANS`
{policy.max_scans}, `TECHNIC_MAX_HELD_MESSAGES` {policy.max_held_messages:,}); RSS after
each scan (after `gc.collect()`), one run.

| measure | result |
|---|---|
| RSS before the first scan | {start:.0f} MB |
| RSS after scan 1 / 5 / 20 | {after[0]:.0f} / {after[min(4, SCANS - 1)]:.0f} / {after[-1]:.0f} MB |
| most RSS after any scan | {max(after):.0f} MB ({verdict} the {BOUND_MB} MB bound) |
| messages held at the end | {held:,} in {len(held_scans)} scans |
| median scan time | {sorted(seconds)[SCANS // 2]:.1f} s |
""")


if __name__ == "__main__":
    main()
