"""``@blocking``: a protocol says its ``data_received`` does blocking work.

The method then returns the bytes to send back instead of writing them, so
it can run off the loop thread; what each server model does with it is in
``uringio.models.pool``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast


def blocking(method: Callable) -> Callable:
    """Mark ``Protocol.data_received`` as blocking work that returns the
    bytes to send back (or None). It must not use the connection."""
    cast(Any, method).__uringio_blocking__ = True   # a function attribute
    return method


def is_blocking(method: Callable) -> bool:
    return getattr(method, "__uringio_blocking__", False)
