"""The Panel user interface: the ScanController model, its dashboard view and charts."""

from technic_panel.ui.controller import ScanController

__all__ = ["ScanController"]
