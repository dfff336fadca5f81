"""Remote price providers that fill a :class:`~technic_panel.data.store.BarStore`.

Each provider is an optional extra: its package is imported only when a fetch starts,
and a missing package is a :class:`ProviderError` saying how to install it.
"""

from __future__ import annotations


class ProviderError(RuntimeError):
    """A provider cannot be used at all: its package is missing or its server unreachable.

    The message is one line for people: what failed, why, and what to do.
    """


__all__ = ["ProviderError"]
