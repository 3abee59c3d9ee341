"""uringio.asgi.eager: a coroutine stepped at once, and a task only if it
has to wait -- with a task's semantics throughout: the same current task
before and after a wait, its own context, cancels that reach it where it
waits, a task that ends for whoever waits on it. The ASGI server starts
every request this way (its C path as eager.py's Python)."""

import asyncio
import contextvars

import anyio

import uringio
from uringio.asgi.eager import run_eagerly

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="default")


def run(backend: str, coro_fn):
    async def bounded():
        return await asyncio.wait_for(coro_fn(), 30)
    return uringio.run(bounded(), backend=backend)


async def eagerly(coro):
    """run_eagerly(coro) from a plain loop callback (it must not run inside
    a task), and what it returned or raised."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def call() -> None:
        try:
            done.set_result(run_eagerly(loop, coro))
        except BaseException as exc:  # noqa: BLE001 -- handed to the test
            done.set_exception(exc)

    loop.call_soon(call)
    return await done


def test_a_coroutine_that_does_not_wait_runs_at_once_in_a_task_of_its_own(backend):
    async def main():
        seen = {}

        async def app():
            task = asyncio.current_task()
            seen.update(task=task, repr=repr(task), coro=task.get_coro(),
                        info=anyio.get_current_task())
            VAR.set("the app's")
            return "result"

        coro = app()
        assert await eagerly(coro) is None
        task = seen["task"]
        assert isinstance(task, asyncio.Task) and task.done()
        assert await task is None   # whoever waits on it is not left waiting
        assert "eagerly" in seen["repr"] and seen["coro"] is coro
        # anyio's view of it, which reads get_coro() and get_name()
        assert seen["info"].name == task.get_name() and task.get_name().startswith("Task-")
        assert VAR.get() == "default"   # its context was a copy
    run(backend, main)


def test_a_coroutine_that_waits_goes_on_in_the_same_task(backend):
    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        async def app():
            before = asyncio.current_task()
            VAR.set("the app's")
            value = await fut
            return before is asyncio.current_task(), value, VAR.get()

        task = await eagerly(app())
        assert isinstance(task, asyncio.Task) and not task.done()
        assert task in asyncio.all_tasks()
        fut.set_result(5)
        assert await task == (True, 5, "the app's")
        assert VAR.get() == "default"
    run(backend, main)


def test_a_task_keeps_its_name_across_the_first_wait(backend):
    # A name is made when first asked for, or set by the coroutine, before
    # the task is a whole one; after the wait it is the same.
    async def main():
        names = {}

        async def named(key, name=None):
            task = asyncio.current_task()
            if name is not None:
                task.set_name(name)
            before = task.get_name()
            await asyncio.sleep(0)
            names[key] = (before, asyncio.current_task().get_name())

        for key, name in (("set", "request-1"), ("made", None)):
            task = await eagerly(named(key, name))
            await task
        assert names["set"] == ("request-1", "request-1")
        made_before, made_after = names["made"]
        assert made_before == made_after and made_before.startswith("Task-")
    run(backend, main)


def test_a_cancel_reaches_the_coroutine_where_it_waits(backend):
    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        async def app():
            try:
                await fut
            except asyncio.CancelledError:
                return "cancelled where it waited"

        task = await eagerly(app())
        await asyncio.sleep(0)
        task.cancel()
        assert await task == "cancelled where it waited"
        assert fut.cancelled()   # what it waited for was cancelled, as a task's is
    run(backend, main)


def test_a_cancel_asked_for_before_the_first_wait_reaches_that_wait(backend):
    async def main():
        async def app():
            asyncio.current_task().cancel()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                return "cancelled at the first wait"
            return "not cancelled"

        task = await eagerly(app())
        assert await task == "cancelled at the first wait"
    run(backend, main)


def test_an_anyio_cancel_scope_across_the_first_wait(backend):
    async def main():
        async def app(seconds):
            with anyio.move_on_after(seconds) as scope:
                await asyncio.sleep(10)
            return scope.cancelled_caught

        for seconds in (0, 0.01):
            task = await eagerly(app(seconds))
            assert await task is True
    run(backend, main)


def test_what_a_coroutine_raises_at_once_is_raised_to_the_caller(backend):
    async def main():
        async def app():
            raise LookupError("at once")

        try:
            await eagerly(app())
        except LookupError as exc:
            assert str(exc) == "at once"
        else:
            raise AssertionError("not raised")
    run(backend, main)
