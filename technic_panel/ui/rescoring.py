"""Re-scoring the rows a dashboard holds when its strategy settings change, without a rescan.

A result carries every indicator its score was computed from, so a new
:class:`~technic_panel.engine.scoring.Scorer` re-scores it exactly as scoring the symbol's
bars again would (``Strategy.rescore``; tests/test_scoring.py proves the equality). The rows
received so far are re-scored at once (:func:`rescore_rows`); the rows still arriving from a
scan started under the old settings are re-scored as they arrive (:func:`rescore_message`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from technic_panel.engine.scoring import Scorer
from technic_panel.streaming.tally import RowChange, ScanTally


def rescore_message(message: Mapping[str, Any], scorer: Scorer) -> Mapping[str, Any]:
    """Return ``message`` with its row re-scored if it is a ``result`` or an ``update``."""
    if message["type"] not in ("result", "update"):
        return message
    data = message["data"]
    return {**message, "data": {**data, **scorer.score(data)}}


def rescore_rows(tally: ScanTally, scorer: Scorer) -> list[RowChange]:
    """Re-score every row of ``tally`` in place, as updates at its current seq.

    The tally's counts (signals, mean rating, best symbol) follow; its seq and progress
    do not move. Returns the row changes, for the table to patch.
    """
    metadata = {"scan_id": tally.scan_id, "seq": tally.last_seq}
    return tally.add_all({"type": "update", "data": {**row, **scorer.score(row)},
                          "metadata": metadata} for row in list(tally.rows.values()))
