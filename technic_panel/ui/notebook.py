"""Notebook-only workarounds for Panel, each guarded by the Panel versions it was tested with.

:class:`NotebookLayout` overrides Panel's *private* ``Viewable._on_msg(ref, manager, msg)``, the
kernel-side handler of the browser's comm messages. A private method may change in any minor
release, so importing this module checks that the installed Panel is in
:data:`TESTED_PANEL` and raises an :class:`ImportError` that names the range otherwise; the
same range bounds ``panel`` in ``pyproject.toml`` and ``environment.yml``, and
``tests/test_notebook.py`` asserts the installed Panel is inside it. Widening it means running
``tests/test_dashboard.py`` (the notebook-layout tests) and ``tests/test_jupyterlab.py`` on the
new Panel, then moving the bound in all three places.
"""

from __future__ import annotations

import re
from typing import Any

import panel as pn
from bokeh.models import Model

TESTED_PANEL = ((1, 5), (1, 10))
"""Panel minor versions ``[low, high)`` this module's override of ``_on_msg`` is tested with.

1.9.4 is the one the tests run on. 1.5.0, the project's floor, has the same ``_on_msg`` and the
same ``CommManager._document_changed`` (read in its source). 1.10 and later are untested.
"""


def check_panel_version(version: str) -> None:
    """Raise ImportError unless Panel ``version`` is inside :data:`TESTED_PANEL`.

    Parameters
    ----------
    version
        A Panel version string, such as ``panel.__version__`` (``"1.9.4"``, ``"1.10.0rc1"``).

    Raises
    ------
    ImportError
        Outside the range, or not a version: pre-releases count as their release
        (``1.10.0rc1`` is 1.10).
    """
    low, high = TESTED_PANEL
    match = re.match(r"(\d+)\.(\d+)", version)
    minor = tuple(int(part) for part in match.groups()) if match else None
    if minor is None or not low <= minor < high:
        wanted = f"panel>={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
        raise ImportError(
            f"technic_panel.ui.notebook overrides Panel's private Viewable._on_msg and is tested "
            f"with {wanted}, not panel {version}: install {wanted!r} (see the module's docstring "
            f"to test and widen the range)")


check_panel_version(pn.__version__)


class NotebookLayout(pn.Row):
    """The dashboard's root in a notebook: the browser's messages applied safely.

    Upstream behaviour worked around (Panel 1.5 to 1.9): Panel's notebook ``CommManager``
    (``panel/models/comm_manager.ts``, ``_document_changed``) sends every change of the page back
    to the kernel, the changes it has just received from the kernel included: it does not skip
    BokehJS's ``sync: false`` events as Bokeh's own ClientSession does. Applied by Panel's
    ``Viewable._on_msg``, the echo of a ``stream`` appends the same rows again to the Python
    ColumnDataSource. And JupyterLab's default ``commsOverSubshells`` (ipykernel 7) delivers those
    messages on a kernel thread of their own while the periodic callback streams on the main
    thread: the document changed from two threads lost or doubled rows in the page
    (tests/test_jupyterlab.py). So this layout drops the browser's events on the ``owned`` data
    sources, which only Python writes, and applies the others holding ``lock``.

    Parameters
    ----------
    *objects
        The layout's children, as for :class:`panel.Row`.
    owned
        The models only Python writes (data sources): the browser's events on them are echoes.
    lock
        The lock every writer of the document holds (the controller's ``document_lock``).
    **params
        Further :class:`panel.Row` parameters.

    The row wraps (CSS ``flex-wrap``), so its children stack when the cell is too narrow for
    them side by side. (A :class:`panel.FlexBox` would, but SlickGrid cannot lay out a
    DataTable in one: "Cannot find stylesheet".) Panel gives a Row the sum of its children's
    widths as ``min_width``, which kept them side by side past the cell's right edge
    (tests/test_jupyterlab.py at a 1,280-pixel window); the row's CSS ``min-width`` is its
    widest child's instead, all a wrapping row needs.
    """

    def __init__(self, *objects: Any, owned: list[Model], lock: Any, **params: Any) -> None:
        widest = max((obj.width or obj.min_width or 0 for obj in objects), default=0)
        styles = {"flex-wrap": "wrap", "min-width": f"{widest}px", **params.pop("styles", {})}
        super().__init__(*objects, styles=styles, **params)
        self._owned_ids = frozenset(model.id for model in owned)
        self._lock = lock

    def _on_msg(self, ref: str, manager: Any, msg: dict[str, Any]) -> None:
        content = msg.get("content")
        if isinstance(content, dict) and "events" in content:
            content["events"] = [event for event in content["events"]
                                 if (event.get("model") or {}).get("id") not in self._owned_ids]
        with self._lock:
            super()._on_msg(ref, manager, msg)
