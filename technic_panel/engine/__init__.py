"""The scan engine: indicators, scores, priorities, filters, executors and the scanner."""

from technic_panel.engine.scanner import ScanEvent, Scanner, ScanSummary
from technic_panel.engine.scoring import Strategy

__all__ = ["ScanEvent", "ScanSummary", "Scanner", "Strategy"]
