"""The dashboard's sidebar: one widget per scan setting, in cards, and the scans to watch.

Each widget is linked both ways to the controller's Parameter of the same name (Panel's
``Param.widget``), so the sidebar, the URL and a watched scan's settings stay one state.
:data:`APPLIES` says when a setting has an effect; :class:`Settings` disables the widgets
of the settings that do not, whenever the settings they depend on change.
:func:`scan_label` names a scan in the Watch list by what it runs, not by its id alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import panel as pn
import param

from technic_panel.engine.scoring import STRATEGY_SETTINGS

SETTING_GROUPS = {
    "Universe": ("source", "path", "universe_path", "symbols", "seed", "sectors", "min_price",
                 "min_dollar_volume", "filter"),
    "Strategy": STRATEGY_SETTINGS,
    "Early termination": ("max_signals", "min_rating", "quality_signals", "max_fraction",
                          "timeout"),
    "Live": ("live", "feed", "bar_interval", "speed", "replay_from", "alert_cooldown"),
    "Execution": ("executor", "workers", "scheduler", "latency_ms", "error_rate",
                  "update_period"),
}
"""The sidebar's cards of settings, each a list of the controller's Parameter names."""

WIDGETS: dict[str, type[pn.widgets.Widget]] = {
    "symbols": pn.widgets.IntInput, "seed": pn.widgets.IntInput, "workers": pn.widgets.IntInput,
    "latency_ms": pn.widgets.FloatInput, "max_fraction": pn.widgets.FloatInput,
    "timeout": pn.widgets.FloatInput, "sectors": pn.widgets.MultiChoice,
    "quality_signals": pn.widgets.MultiChoice,
}
"""Inputs rather than sliders where a value is typed or may be None."""


def _synthetic(settings: Any) -> bool:
    return settings.source == "synthetic"


def _files(settings: Any) -> bool:
    return settings.source == "files"


def _counted(settings: Any) -> bool:
    return settings.max_signals is not None


def _live(settings: Any) -> bool:
    return bool(settings.live)


APPLIES: dict[str, Callable[[Any], bool]] = {
    "path": _files, "universe_path": _files,
    "symbols": _synthetic, "seed": _synthetic, "latency_ms": _synthetic,
    "error_rate": _synthetic,
    "scheduler": lambda settings: settings.executor == "dask",
    "min_rating": _counted, "quality_signals": _counted,
    "feed": _live, "alert_cooldown": _live,
    "bar_interval": lambda settings: _live(settings) and settings.feed == "synthetic",
    "speed": lambda settings: _live(settings) and settings.feed == "replay",
    "replay_from": lambda settings: _live(settings) and settings.feed == "replay",
}
"""When a setting has an effect; the others always have one. Its widget is disabled otherwise."""

DEPENDS_ON = ("source", "executor", "max_signals", "live", "feed")
"""The settings :data:`APPLIES` reads."""


class Settings:
    """The widgets of one controller's settings, disabled while they do not apply.

    Parameters
    ----------
    controller
        The Parameterized whose settings the widgets edit (a ScanController).
    groups
        Card title -> setting names, as :data:`SETTING_GROUPS`.
    """

    def __init__(self, controller: param.Parameterized,
                 groups: Mapping[str, tuple[str, ...]] = SETTING_GROUPS) -> None:
        self.groups = dict(groups)
        self.widgets = {name: pn.Param.widget(name, controller, _spec(name))
                        for names in self.groups.values() for name in names}
        self._controller = controller
        controller.param.watch(lambda _: self.refresh(), list(DEPENDS_ON))
        self.refresh()

    def __repr__(self) -> str:
        disabled = sorted(name for name, widget in self.widgets.items() if widget.disabled)
        return f"Settings(widgets={len(self.widgets)}, disabled={disabled})"

    def refresh(self) -> None:
        """Disable the widgets of the settings that do not apply to the current values."""
        for name, applies in APPLIES.items():
            if name in self.widgets:
                self.widgets[name].disabled = not applies(self._controller)

    def cards(self, collapsed: bool) -> list[pn.Card]:
        """Return one card per group; ``collapsed`` folds every card but Universe.

        A strategy change re-scores the rows received at once (the controller's job).
        """
        return [pn.Card(*(self.widgets[name] for name in names), title=title,
                        collapsed=collapsed and title != "Universe", sizing_mode="stretch_width")
                for title, names in self.groups.items()]


def _spec(name: str) -> dict[str, Any]:
    """Return the widget options of setting ``name``; strategy sliders apply on release."""
    spec: dict[str, Any] = {"sizing_mode": "stretch_width"}
    if name in WIDGETS:
        spec["type"] = WIDGETS[name]
    if name in STRATEGY_SETTINGS:
        spec["throttled"] = True
    return spec


def scan_label(scan: Mapping[str, Any]) -> str:
    """Name a running scan by what it runs: id, source and size, executor, progress.

    ``scan`` is a :meth:`StreamManager.list` entry. Shown as text in a Select (not HTML).
    """
    config, progress = scan["config"], scan.get("progress") or {}
    if config["source"] == "synthetic":
        what = f"{config['symbols']:,} synthetic"
    elif config["source"] == "files":
        what = f"files in {str(config.get('path') or '')[-30:]}"
    else:
        what = config["source"]
    workers = f"×{config['workers']}" if config.get("workers") else ""
    total, done = progress.get("total") or 0, progress.get("processed") or 0
    share = f", {done / total:.0%}" if total else ""
    return f"{scan['scan_id'][:13]} · {what} · {config['executor']}{workers}{share}"
