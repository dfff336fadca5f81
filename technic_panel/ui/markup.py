"""HTML the dashboard rewrites on every update, as a Bokeh ``Div`` rather than a Panel pane.

Rewriting a Panel HTML pane's ``object`` sends all its properties again, and in a notebook
rendered with ``pn.extension(inline=True)`` Panel's design then puts back the stylesheets it
had inlined as CDN links (Panel 1.9.4: its ``_preprocess`` inlines first, then re-applies the
design), so the cell requests cdn.holoviz.org on every update. A ``Div``'s ``text`` is one
property: it changes alone, and the page stays offline (tests/test_jupyterlab.py).
"""

from __future__ import annotations

from typing import Any

import panel as pn
from bokeh.models import Div, InlineStyleSheet


class HTMLBox:
    """A block of HTML (set :attr:`text`, escaped by its writer) styled by ``css``.

    Parameters
    ----------
    css
        Stylesheet of the block's content (the Div's shadow root).
    **options
        Layout options of the Panel pane that holds it (``sizing_mode``, ``margin``, ...).
    """

    def __init__(self, css: str, **options: Any) -> None:
        self.div = Div(text="", sizing_mode="stretch_width", visible=False,
                       stylesheets=[InlineStyleSheet(css=css)])
        self.pane = pn.pane.Bokeh(self.div, stylesheets=[css],
                                  **{"sizing_mode": "stretch_width", "margin": (0, 5), **options})
        """What a layout shows (a Panel design replaces the Div's stylesheets by its own plus
        the pane's, hence ``css`` on both)."""

    def __repr__(self) -> str:
        return f"HTMLBox(text={self.div.text[:40]!r})"

    @property
    def text(self) -> str:
        """The HTML shown (none: the block takes no room); set it on the document's thread."""
        return self.div.text

    @text.setter
    def text(self, value: str) -> None:
        if value != self.div.text:
            self.div.update(text=value, visible=bool(value))
