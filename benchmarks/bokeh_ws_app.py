"""A probe app for bench_bokeh_ws: every 100 ms one row, stamped with the server's clock.

The row is streamed into a ColumnDataSource named ``probe`` as the dashboard streams its
results (``pn.state.add_periodic_callback``, the dashboard's ``update_period``); the page
reads each row's stamp when BokehJS applies the stream. With ``BENCH_NODELAY=1`` the
server's listening sockets get TCP_NODELAY, which Linux copies to the connections they
accept (Bokeh's WebSocket handler never sets it), to compare with Nagle's algorithm on.
"""

import gc
import os
import socket
import time

import panel as pn
from bokeh.models import ColumnDataSource, DataTable, TableColumn

pn.extension()
source = ColumnDataSource({"stamp": [], "n": []}, name="probe")
table = DataTable(source=source, columns=[TableColumn(field="n"), TableColumn(field="stamp")])
count = [0]


def tick() -> None:
    count[0] += 1
    source.stream({"stamp": [time.time() * 1000], "n": [count[0]]}, rollover=50)


def nodelay_on_listeners() -> None:
    for candidate in gc.get_objects():
        if isinstance(candidate, socket.socket) and candidate.fileno() >= 0 and \
                candidate.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            candidate.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


if os.environ.get("BENCH_NODELAY") == "1":
    nodelay_on_listeners()  # the listener exists: this runs once a page opens a session
pn.state.add_periodic_callback(tick, period=100)
pn.pane.Bokeh(table).servable()
