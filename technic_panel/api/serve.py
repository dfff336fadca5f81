"""The ``panel serve --plugins technic_panel.api.serve`` plugin: the API beside the dashboard.

Panel mounts :data:`ROUTES`; importing this module also sets up what only a server
process wants: the shared worker pools capped by the operator's
:class:`~technic_panel.policy.ServerPolicy`, and SIGTERM / SIGINT handlers that shut
them down (with bounded waits) before the server stops. Notebooks and scripts import
:mod:`technic_panel.api.rest` instead, which leaves signals alone.
"""

from tornado.ioloop import IOLoop

from technic_panel.api.rest import ROUTES
from technic_panel.engine.workers import install_shutdown_handlers, set_process_limit
from technic_panel.policy import ServerPolicy

__all__ = ["ROUTES"]

set_process_limit(ServerPolicy.from_env().max_processes)
install_shutdown_handlers(IOLoop.current().asyncio_loop)
