"""Run a coroutine at once, and make it a task only if it has to wait.

An ASGI app that answers without waiting for anything (a hello, a JSON
document, most of what a framework does per request) needs no task: a
task per request is an allocation, a registration in asyncio's task set,
a handle for its first step and a turn of the loop to run it, a tenth of
a plain request's cost. ``run_eagerly`` steps the coroutine in the
caller's turn, as Python 3.12's eager tasks do, and hands it to a task
only when it suspends.

Code under the app still sees a task: ``asyncio.current_task()`` returns,
from the first step on, the one task object the coroutine will ever run
in (anyio's cancel scopes, which Starlette and FastAPI use, key their
state on it and check it on exit). It is created bare, and initialised
(loop, context, first step) only if the coroutine suspends; the
contextvars context is a copy from the start, as a task's is.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from asyncio.tasks import _enter_task, _leave_task
from collections.abc import Coroutine
from typing import Any

_new_task = asyncio.Task.__new__
_init_task = asyncio.Task.__init__


def run_eagerly(loop: asyncio.AbstractEventLoop, coro: Coroutine) -> asyncio.Task | None:
    """Step ``coro`` now, in a copy of the current context, with its task
    as the current one. None if it finished (its outcome is its own: an
    exception it raises propagates from here); else the task it goes on
    in, scheduled like one from ``loop.create_task``.

    Must not be called from inside a task (one task is current at a time):
    from a protocol callback or a plain loop callback."""
    task = _new_task(asyncio.Task)
    context = contextvars.copy_context()
    _enter_task(loop, task)
    try:
        yielded = context.run(coro.send, None)
    except StopIteration:
        return None
    finally:
        _leave_task(loop, task)
    return adopt(task, loop, resume(coro, yielded), context)


def adopt(task: asyncio.Task, loop: asyncio.AbstractEventLoop, coro: Coroutine,
          context: contextvars.Context) -> asyncio.Task:
    """Make the bare ``task`` a task of ``loop`` running ``coro`` in
    ``context``, scheduled like one from ``loop.create_task``. A cancel
    asked for meanwhile (a cancel scope whose deadline had passed) is asked
    again, since initialising the task resets its state."""
    cancels = task.cancelling()
    _init_task(task, coro, loop=loop, context=context)
    for _ in range(cancels):
        task.cancel()
    return task


@types.coroutine
def resume(coro: Coroutine, yielded: Any):
    """A coroutine of the rest of ``coro``, begun elsewhere, which last
    yielded ``yielded``."""
    # What the task steps: first what the coroutine yielded (a future
    # whose _asyncio_future_blocking it set, or None for a bare yield),
    # then the coroutine itself, each value, exception and close passed on.
    send, throw = coro.send, coro.throw
    while True:
        try:
            value = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # noqa: BLE001 -- passed on to the coroutine
            try:
                yielded = throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = send(value)
            except StopIteration as stop:
                return stop.value
