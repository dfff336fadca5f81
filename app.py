"""`panel serve app.py`: the technic-panel dashboard, one controller and scan per browser tab.

Serve it with the HTTP API beside it (one process, one StreamManager)::

    panel serve app.py --plugins technic_panel.api

The page reads its settings from the URL and keeps the URL in step with the controls,
so a scan can be shared as a link: ``/app?symbols=2000&latency_ms=20&max_signals=10``.
"""

import panel as pn

from technic_panel.controller import ScanController

pn.extension(notifications=True)

ScanController().view().servable(title="technic-panel")
