"""AlertRules: when a live symbol's closed bar is worth telling someone about.

Per symbol the rules remember what was last told (its opening state, then each alert):
its signal and whether it passed the filter. A closed bar fires

- ``entered_filter`` / ``left_filter`` when the symbol now passes / fails the filter;
- ``signal_changed`` when it passes (and passed) and its signal class differs;

at most once per symbol per ``cooldown`` seconds of wall time (the bars' ``feed_time``,
when the feed handed them over, so a reader's alerts of one symbol come at most that
often whatever the bars stand for). A change inside the cooldown is not dropped: the
next closed bar after it fires if the change still holds, naming the signal told last as
``previous_signal``. Signal changes of a symbol that is
outside the filter are not alerts: nobody watches it, so only its signal is followed.
Forming bars never fire: alerts confirm on the close, as a chart's alerts do.

Not thread-safe: the live scan's thread calls it.
"""

from __future__ import annotations

from typing import NamedTuple

from technic_panel.vocabulary import require


class Alert(NamedTuple):
    """What fired: the ``rule`` and the signal told before it."""

    rule: str
    previous_signal: str


class _Told:
    """A symbol's state as last told, and the feed time (ms) of its last alert."""

    __slots__ = ("signal", "in_filter", "alerted_at")

    def __init__(self, signal: str, in_filter: bool) -> None:
        self.signal, self.in_filter = signal, in_filter
        self.alerted_at: int | None = None


class AlertRules:
    """Decide the alerts of closed bars, at most one per symbol per ``cooldown`` s; see the module.

    Raises ``ValueError`` for a ``cooldown`` that is not a number >= 0.
    """

    def __init__(self, cooldown: float) -> None:
        require("AlertRules", "cooldown", cooldown, "a number >= 0",
                isinstance(cooldown, int | float) and not isinstance(cooldown, bool)
                and cooldown >= 0)
        self.cooldown = float(cooldown)
        self._cooldown_ms = self.cooldown * 1000.0
        self._told: dict[str, _Told] = {}

    def __repr__(self) -> str:
        return f"AlertRules(cooldown={self.cooldown}, symbols={len(self._told)})"

    def __len__(self) -> int:
        return len(self._told)

    def start(self, symbol: str, signal: str, in_filter: bool) -> None:
        """Remember a symbol's opening state (its row before the first live bar)."""
        self._told[symbol] = _Told(signal, in_filter)

    def observe(self, symbol: str, signal: str, in_filter: bool, feed_time: int) -> Alert | None:
        """Return the alert a closed bar of ``symbol`` handed over at ``feed_time`` (ms) fires.

        Raises ``KeyError`` for a symbol that was never :meth:`start`-ed.
        """
        told = self._told[symbol]
        if in_filter != told.in_filter:
            rule = "entered_filter" if in_filter else "left_filter"
        elif not in_filter:
            told.signal = signal
            return None
        elif signal != told.signal:
            rule = "signal_changed"
        else:
            return None
        if told.alerted_at is not None and feed_time - told.alerted_at < self._cooldown_ms:
            return None
        alert = Alert(rule, told.signal)
        told.signal, told.in_filter, told.alerted_at = signal, in_filter, feed_time
        return alert
