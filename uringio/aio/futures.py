"""The bridge from a core operation's handler to an asyncio future."""

from __future__ import annotations

import asyncio


def resolve(fut: asyncio.Future, result: object) -> None:
    """A core operation's handler: its result, or the exception, into the
    future -- unless the caller has stopped waiting (the operation kept its
    buffer anyway, until its completion)."""
    if fut.done():
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)
