"""Live scanning: bar feeds, incremental indicators, and the scan that keeps every row current.

A live scan is a scan that does not end with its first pass: a
:class:`~technic_panel.live.feeds.BarFeed` delivers closed and forming bars, each symbol's
:class:`~technic_panel.live.indicators.IndicatorState` advances (closed) or peeks (forming),
and :class:`~technic_panel.live.scan.LiveScan` re-scores the symbol, sends an ``update``
when its row changed and an ``alert`` when, on a closed bar, it entered or left the filter
or changed signal class.
"""
