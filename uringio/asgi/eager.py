"""Run a coroutine at once, and make it a task only if it has to wait.

An ASGI app that answers without waiting for anything (a hello, a JSON
document, most of what a framework does per request) needs no task: a
task per request is an allocation, a registration in asyncio's task set,
a handle for its first step and a turn of the loop to run it, a tenth of
a plain request's cost. ``run_eagerly`` steps the coroutine in the
caller's turn, as Python 3.12's eager tasks do, and hands it to a task
only when it suspends. (``_build/asgi/asgicore.c`` does the same in C for
each request; this is the Python of it, and what both share.)

Code under the app still sees a task: ``asyncio.current_task()`` returns,
from the first step on, the one task object the coroutine will ever run
in (anyio's cancel scopes, which Starlette and FastAPI use, key their
state on it and check it on exit). It is an ``EagerTask``, begun with its
loop only; it becomes a whole task (coroutine, context, first step) if
the coroutine suspends, and is marked done if it does not. The
contextvars context is a copy from the start, as a task's is.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from asyncio.tasks import _enter_task, _leave_task
from collections.abc import Coroutine
from typing import Any

_init_future = asyncio.Future.__init__
_finish = asyncio.Future.set_result   # (Task's own refuses: a task's result is its coroutine's)
_init_task = asyncio.Task.__init__
_name_of = asyncio.Task.get_name   # (the name set, or None: not EagerTask's)
_names = itertools.count(1)


class EagerTask(asyncio.Task):
    """asyncio's Task, running before it is initialised as one: until then
    it has its loop and no coroutine of its own. What reads the coroutine
    (``get_coro``, which crashes 3.11's C task without one, and ``repr``)
    is answered here: ``get_coro`` is the coroutine begun (``_begun``).

    The methods that leave state on a task (a name, a cancel, callbacks for
    its end) mark it ``_touched``. asgicore runs the next request of a
    connection in the same task object when the last one's coroutine
    finished and nothing kept, referenced, weakly referenced or touched
    its task: to the code under the app it is as new as a fresh one, and
    a request saves a task's allocation and initialisation.

    The rules, for whoever changes or subclasses it (asgicore.c relies on
    them; tests/test_contracts.py holds the first two):

    1. Every method of ``asyncio.Task`` that leaves state on the task a
       later request could see is overridden here to set ``_touched``
       first: ``cancel``, ``uncancel``, ``set_name``, ``add_done_callback``,
       ``remove_done_callback``. A method a new Python adds to Task must be
       judged and listed (the test knows the ones that leave nothing).
    2. ``_begun`` and ``_touched`` are slots (C reads them at their offsets).
    3. Nothing else may keep per-request state on the task object."""

    __slots__ = ("_begun", "_touched")
    _begun: Coroutine

    def cancel(self, msg: Any = None) -> bool:
        self._touched = True
        return super().cancel(msg)

    def uncancel(self) -> int:
        self._touched = True
        return super().uncancel()

    def set_name(self, value: object) -> None:
        self._touched = True
        super().set_name(value)

    def add_done_callback(self, fn, *, context=None) -> None:
        self._touched = True
        super().add_done_callback(fn, context=context)

    def remove_done_callback(self, fn) -> int:
        self._touched = True
        return super().remove_done_callback(fn)

    def get_coro(self):
        begun = getattr(self, "_begun", None)
        return begun if begun is not None else self._coro   # type: ignore[attr-defined]

    def get_name(self) -> str:
        # Task.__init__ names a task, and this one has not run it yet: it
        # gets its name when first asked (adopt keeps it).
        name = _name_of(self)
        if name is None:
            name = f"Task-eager-{next(_names)}"
            self.set_name(name)
        return name

    def __repr__(self) -> str:
        if self._coro is None:   # type: ignore[attr-defined]
            return f"<{type(self).__name__} {'done' if self.done() else 'running'}, eagerly>"
        return super().__repr__()


def begin_task(loop: asyncio.AbstractEventLoop, coro: Coroutine) -> EagerTask:
    """A task of ``loop`` to be current while ``coro`` runs eagerly."""
    task = EagerTask.__new__(EagerTask)
    _init_future(task, loop=loop)
    task._begun = coro
    return task


def run_eagerly(loop: asyncio.AbstractEventLoop, coro: Coroutine) -> asyncio.Task | None:
    """Step ``coro`` now, in a copy of the current context, with its task
    as the current one. None if it finished (its outcome is its own: an
    exception it raises propagates from here); else the task it goes on
    in, scheduled like one from ``loop.create_task``.

    Must not be called from inside a task (one task is current at a time):
    from a protocol callback or a plain loop callback."""
    task = begin_task(loop, coro)
    context = contextvars.copy_context()
    _enter_task(loop, task)
    try:
        yielded = context.run(coro.send, None)
    except BaseException as exc:
        _finish(task, None)   # (a task's end, for whoever waits on it)
        if isinstance(exc, StopIteration):
            return None
        raise
    finally:
        _leave_task(loop, task)
    return adopt(task, loop, Resumed(coro, yielded), context)


def adopt(task: asyncio.Task, loop: asyncio.AbstractEventLoop, coro: Coroutine,
          context: contextvars.Context) -> asyncio.Task:
    """Make the begun ``task`` a task of ``loop`` running ``coro`` (a
    Resumed) in ``context``, scheduled like one from ``loop.create_task``.
    Initialising it resets its state, so what was asked of it meanwhile is
    asked again: its name, the callbacks for its end, and a cancel -- once
    its first step has it waiting, so that the cancel reaches what it waits
    for, as a task's does."""
    cancels = task.cancelling()
    message = task._cancel_message   # type: ignore[attr-defined]
    callbacks = task._callbacks or ()
    _init_task(task, coro, loop=loop, context=context, name=_name_of(task))
    for callback, callback_context in callbacks:
        task.add_done_callback(callback, context=callback_context)
    for _ in range(cancels):
        loop.call_soon(task.cancel, message)
    return task


class Resumed(Coroutine):
    """The rest of ``coro``, a coroutine begun elsewhere whose last step
    yielded ``yielded``, as a coroutine a task can step on from there: its
    first ``send`` gives back ``yielded`` (a future whose
    ``_asyncio_future_blocking`` is set, or None for a bare yield), and
    from then on each value, exception and close goes to ``coro`` -- a
    throw even before the first send, since ``coro`` has begun and waits
    where it yielded."""

    __slots__ = ("_coro", "_yielded", "_started")

    def __init__(self, coro: Coroutine, yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded
        self._started = False

    def send(self, value: Any) -> Any:
        if not self._started:
            self._started = True
            yielded, self._yielded = self._yielded, None
            return yielded
        return self._coro.send(value)

    def throw(self, typ, val=None, tb=None):
        self._started = True
        self._yielded = None
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self) -> Any:
        return self.send(None)
