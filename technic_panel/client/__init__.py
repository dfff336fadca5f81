"""Clients of the HTTP API: :class:`ScanClient` (sync and async) and the SSE parser."""

from technic_panel.client.scan_client import ScanClient

__all__ = ["ScanClient"]
