"""The Panel user interface: the ScanController model, its dashboard view and charts.

``notebook`` holds the notebook-only workarounds for Panel, guarded by the versions tested.
"""

from technic_panel.ui.controller import ScanController

__all__ = ["ScanController"]
