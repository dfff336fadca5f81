"""The streaming core: from a scan's events to the messages every reader gets.

``contract`` (message rules) and ``jsonsafe`` (JSON), ``streamer`` (ResultStreamer,
Subscription), ``termination``, ``run`` (a scan's thread body), ``manager`` (every scan
by id) and ``tally`` (what a reader keeps of a stream: rows, counts, rate, ETA).
"""

from technic_panel.streaming.manager import StreamManager, default_manager
from technic_panel.streaming.streamer import ResultStreamer, Subscription

__all__ = ["ResultStreamer", "StreamManager", "Subscription", "default_manager"]
