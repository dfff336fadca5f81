"""The streaming core: the message contract, the streamer, termination and the manager."""

from technic_panel.streaming.manager import StreamManager, default_manager
from technic_panel.streaming.streamer import ResultStreamer, Subscription

__all__ = ["ResultStreamer", "StreamManager", "Subscription", "default_manager"]
