"""Serialising a controller's methods on its document lock (the thread rule's one door)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

_Method = TypeVar("_Method", bound=Callable[..., Any])


def serialized(method: _Method) -> _Method:
    """Run ``method`` holding the controller's :attr:`~ScanController.document_lock`."""
    @functools.wraps(method)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.document_lock:
            return method(self, *args, **kwargs)
    return locked  # type: ignore[return-value]
