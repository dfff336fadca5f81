"""The dashboard's colours, defined once: one per signal, the selected row, the trade plan."""

SIGNAL_COLORS = {"STRONG_BUY": "#1a9850", "BUY": "#91cf60", "HOLD": "#9e9e9e",
                 "SELL": "#fc8d59", "STRONG_SELL": "#d73027"}
"""One colour per signal, shared by the table, the scatter and the bars."""

SIGNAL_CELLS_BACKGROUND = {"STRONG_BUY": "#1b7a3e", "BUY": "#c8e6c9", "HOLD": "#e0e0e0",
                           "SELL": "#ffd8c2", "STRONG_SELL": "#b71c1c"}
"""A signal's table cell: strong signals dark, the others light."""

SIGNAL_CELLS_TEXT = {"STRONG_BUY": "#ffffff", "BUY": "#1b4d20", "HOLD": "#303030",
                     "SELL": "#7a2a00", "STRONG_SELL": "#ffffff"}
"""Text on :data:`SIGNAL_CELLS_BACKGROUND`: each pair has a contrast of at least 4.5:1."""

ACCENT = "#00A170"
"""The template's accent (header, buttons)."""

SELECTED_BACKGROUND = "#00603f"
"""A selected table row's background: dark green, in the light and the dark theme alike."""

SELECTED_TEXT = "#ffffff"
"""A selected row's text: white on :data:`SELECTED_BACKGROUND` is 7.7:1 (WCAG AA: 4.5:1)."""

PLAN_COLORS = {"entry": "#1e88e5", "stop": "#e53935", "target": "#43a047"}
"""The chart's trade-plan lines."""

UP, DOWN = "#26a69a", "#ef5350"
"""Candles that closed up (or flat) and down."""
