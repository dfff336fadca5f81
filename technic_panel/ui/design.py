"""The served page's design: Panel's Fast design and the system font, nothing fetched."""

from __future__ import annotations

from panel.io.resources import CDN_DIST
from panel.theme import Fast

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
"""The page's font: the system's own, so nothing is fetched."""


class OfflineFast(Fast):
    """Panel's Fast design without its web font (Google's Open Sans), so the page is offline.

    A Design lists the resources it loads in ``_resources`` (Panel's "Designs and Theming"
    guide); this one keeps Fast's scripts, which Panel serves from its bundle, and drops the
    font. Fast names its own script relative to the design's name, so it is spelled out.
    """

    _resources = {**Fast._resources, "font": {}, "js_modules": {
        **Fast._resources["js_modules"],
        "fast-design": f"{CDN_DIST}bundled/fast/js/fast_design.js"}}
