"""technic-panel: a streaming stock scanner whose results arrive row by row."""

__version__ = "0.1.0"
