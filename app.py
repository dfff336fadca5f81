"""`panel serve app.py`: the technic-panel dashboard, one controller and scan per browser tab.

Serve it with the HTTP API beside it (one process, one StreamManager) and the dashboard's
token check (:mod:`technic_panel.api.auth`; no login while ``TECHNIC_API_TOKEN`` is unset)::

    panel serve app.py --plugins technic_panel.api.serve --auth-module technic_panel/api/auth.py \
        --exclude-headers=Cookie --exclude-cookies=technic_dashboard

Every scan started here keeps to the operator's :class:`~technic_panel.policy.ServerPolicy`
(the ``TECHNIC_*`` environment variables). The page reads its settings from the URL and keeps
the URL in step with the controls, so a scan can be shared as a link:
``/app?symbols=2000&latency_ms=20&max_signals=10``. With a token, the dashboard's scans
belong to the dashboard: API clients do not see them, nor it theirs.
"""

import panel as pn

from technic_panel.api.auth import DASHBOARD_OWNER
from technic_panel.policy import ServerPolicy
from technic_panel.ui.controller import ScanController
from technic_panel.ui.dashboard import Dashboard

pn.extension()

policy = ServerPolicy.from_env()
owner = DASHBOARD_OWNER if policy.tokens else None
Dashboard(ScanController(policy=policy, owner=owner)).servable(title="technic-panel")
