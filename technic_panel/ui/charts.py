"""Bokeh charts of a scan: ratings against alpha, results per signal, progress over time.

Everything here builds plain Bokeh models on a controller's ColumnDataSources; nothing
holds state or reads the stream, so the same functions serve the server and notebooks.
The table is in :mod:`~technic_panel.ui.columns`, one symbol's chart in
:mod:`~technic_panel.ui.candles`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from bokeh.models import CDSView, ColumnDataSource, HoverTool, Range1d
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

from technic_panel.ui.colors import SIGNAL_COLORS
from technic_panel.vocabulary import SIGNALS

SCATTER_COLUMNS = ("symbol", "signal", "tech_rating", "alpha_score")
"""The table's columns the rating scatter plots (and the table filter reads)."""


def scatter_data(table: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """Return the rating scatter's data: the :data:`SCATTER_COLUMNS` of the table's source.

    The scatter has a source of its own, refreshed with the stats rather than on every patch
    of the table (a live table is patched ten times a second; see ``ui/pacing.py``). Numbers
    are copied: the table's patches change its arrays in place, and the scatter's must
    hold what was last sent.
    """
    return {name: np.array(table[name], dtype=float) if name in ("tech_rating", "alpha_score")
            else list(table[name]) for name in SCATTER_COLUMNS}


def rating_scatter(cds: ColumnDataSource, view: CDSView) -> figure:
    """Return tech_rating against alpha_score, one dot per row ``view`` shows, by signal.

    ``cds`` holds :func:`scatter_data`.
    """
    plot = figure(title="tech_rating vs alpha_score", x_range=Range1d(0, 100),
                  y_range=Range1d(0, 1), height=300, sizing_mode="stretch_width",
                  x_axis_label="tech_rating", y_axis_label="alpha_score",
                  tools="pan,wheel_zoom,box_zoom,reset")
    plot.scatter("tech_rating", "alpha_score", source=cds, view=view, size=5, alpha=0.7,
                 color=factor_cmap("signal", list(SIGNAL_COLORS.values()), list(SIGNALS)))
    plot.add_tools(HoverTool(tooltips=[("symbol", "@symbol"), ("signal", "@signal"),
                                       ("rating", "@tech_rating{0.0}")]))
    return plot


def signal_bars(counts: ColumnDataSource) -> figure:
    """Return bars of results per signal; ``counts`` has columns signal, count, color."""
    plot = figure(title="Results per signal", x_range=list(SIGNALS), height=300,
                  sizing_mode="stretch_width", tools="")
    plot.vbar(x="signal", top="count", color="color", width=0.8, source=counts)
    plot.y_range.start = 0
    plot.xaxis.major_label_orientation = 0.6
    plot.add_tools(HoverTool(tooltips=[("signal", "@signal"), ("results", "@count")]))
    return plot


def signal_counts_data(counts: Mapping[str, int]) -> dict[str, list]:
    """Return the data of :func:`signal_bars` for these counts."""
    return {"signal": list(SIGNALS), "count": [counts.get(s, 0) for s in SIGNALS],
            "color": list(SIGNAL_COLORS.values())}


def progress_chart(timeline: ColumnDataSource) -> figure:
    """Return symbols processed against seconds elapsed."""
    plot = figure(title="Processed over time", height=300, sizing_mode="stretch_width",
                  x_axis_label="seconds", y_axis_label="symbols", tools="")
    plot.line("elapsed", "processed", source=timeline, line_width=2)
    return plot
