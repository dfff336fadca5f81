"""`panel serve --setup` script of bench_live.py: live scans deliver closed bars only.

The served feed's default is four ticks a bar (three forming updates, then the close); with
one, 5,000 symbols a bar a second are 5,000 bars a second, the rate the live-scan issue sets.
"""

import technic_panel.live.scan as live_scan

live_scan.FEED_UPDATES = 1
