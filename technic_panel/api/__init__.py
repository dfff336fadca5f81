"""The HTTP API: REST, Server-Sent Events and WebSocket endpoints for scans.

``panel serve app.py --plugins technic_panel.api`` mounts :data:`ROUTES`;
``--plugins technic_panel.api.serve`` does too and adds the server's shutdown handling.
"""

from technic_panel.api.base import API_TOKEN_ENV, APIError, APIOptions, error_envelope
from technic_panel.api.rest import ROUTES, make_app, routes

__all__ = ["API_TOKEN_ENV", "ROUTES", "APIError", "APIOptions", "error_envelope", "make_app",
           "routes"]
